#!/usr/bin/env python3
"""Benchmark: a rerank pass (1 query x 32 passages) on model-server against sentence-transformers'
CrossEncoder on PyTorch and the same checkpoint on ONNX Runtime, side by side on this CPU.

The checkpoint has the shape of cross-encoder/ms-marco-MiniLM-L-6-v2 (BERT, 6 layers, hidden
384, 12 heads, one label): all-MiniLM-L6-v2's encoder (scripts/fetch-model.sh) with a seeded
classifier head, saved as sentence-transformers saves a CrossEncoder (no model hub here; the
cost of a pass is the shape's, not the weights'). The 32 passages are 2-4 sentences of the
calibration corpus each (18-153 tokens with the query, median 55), the length RAG retrieval hands
a reranker. PyTorch and ONNX Runtime pad the batch to its longest pair, as CrossEncoder.predict
and TEI's ONNX path do; model-server runs the pairs back to back without padding, which is part
of what the ratio measures.

Each engine scores the same 32 pairs per pass, tokenization included:
- model-server: `POST /rerank` from one client over loopback (release build, its defaults: one
  worker per core), f32 and, on AVX512-VNNI CPUs, `--dtype int8`;
- torch: `CrossEncoder.predict(pairs, batch_size=32)`, 2 threads;
- ort: the exported graph (torch.onnx, opset 17, graph optimisations all, 2 intra-op threads) on
  the tokenizer's padded batch: what TEI's CPU image, infinity and fastembed run.
Rounds alternate the engines; the medians of the rounds are compared. Scores are checked
against torch's (f32: within 1e-4; int8: within 0.02).

Usage: bench/rerank.py [--seconds 8] [--rounds 3]
Needs bench/.venv (bench/setup-python.sh), the model (scripts/fetch-model.sh) and
`cargo build --release -p model-server`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_PY = BENCH / ".venv" / "bin" / "python"
MINILM = ROOT / "models" / "all-MiniLM-L6-v2"
OUT = ROOT / "target" / "bench-rerank"
MODEL = OUT / "minilm-cross-encoder"
SERVER = ROOT / "target" / "release" / "model-server"
sys.path.insert(0, str(BENCH))
from machine import cpu  # noqa: E402

QUERY = "how do teams roll out a new model without breaking search?"


def passages() -> list[str]:
    lines = [l for l in (ROOT / "model-server/src/backend/calibration.txt").read_text().splitlines() if l.strip()]
    out, i = [], 0
    while len(out) < 32:
        take = 2 + len(out) % 3
        out.append(" ".join(lines[(i + k) % len(lines)] for k in range(take)))
        i += take
    return out


# Builds the checkpoint and the ONNX export, then measures torch and ORT; prints JSON lines.
PYTHON_ENGINES = r"""
import json, os, sys, time, torch
import numpy as np
from transformers import BertForSequenceClassification, AutoTokenizer
from sentence_transformers import CrossEncoder
minilm, model_dir, onnx_path, seconds, engine = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
query, docs = json.loads(sys.stdin.read())
pairs = [(query, d) for d in docs]
torch.set_num_threads(2)
if not os.path.exists(os.path.join(model_dir, "config.json")):
    torch.manual_seed(0)
    hf = model_dir + "-hf"
    model = BertForSequenceClassification.from_pretrained(minilm, num_labels=1)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.3)
    model.save_pretrained(hf); AutoTokenizer.from_pretrained(minilm).save_pretrained(hf)
    CrossEncoder(hf, max_length=512, device="cpu").save(model_dir)
ce = CrossEncoder(model_dir, device="cpu")
scores = ce.predict(pairs, batch_size=32)
if engine == "prepare":
    tok = ce.tokenizer
    enc = tok([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation=True, return_tensors="pt")
    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__(); self.m = m
        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
    if not os.path.exists(onnx_path):
        torch.onnx.export(Logits(ce.model).eval(), (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]),
            onnx_path, input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["logits"],
            dynamic_axes={n: {0: "batch", 1: "seq"} for n in ["input_ids", "attention_mask", "token_type_ids"]},
            opset_version=17, dynamo=False)
    lengths = enc["attention_mask"].sum(1).tolist()
    print(json.dumps({"scores": scores.tolist(), "tokens": lengths}))
    sys.exit(0)
if engine == "torch":
    run = lambda: ce.predict(pairs, batch_size=32)
else:
    import onnxruntime as ort
    opts = ort.SessionOptions(); opts.intra_op_num_threads = 2; opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    tok = ce.tokenizer
    def run():
        enc = tok([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation=True, return_tensors="np")
        feed = {k: enc[k].astype(np.int64) for k in ["input_ids", "attention_mask", "token_type_ids"]}
        logits = sess.run(None, feed)[0][:, 0]
        return 1 / (1 + np.exp(-logits))
got = run()
for _ in range(2): run()
lat = []; t0 = time.perf_counter()
while time.perf_counter() - t0 < seconds:
    t = time.perf_counter(); run(); lat.append(time.perf_counter() - t)
total = time.perf_counter() - t0; lat.sort()
print(json.dumps({"pairs_per_s": len(lat) * len(pairs) / total, "p50_ms": lat[len(lat) // 2] * 1000,
                  "scores": [float(s) for s in got]}))
"""


def python_engine(engine: str, seconds: float, docs: list[str]) -> dict:
    run = subprocess.run(
        [str(VENV_PY), "-c", PYTHON_ENGINES, str(MINILM), str(MODEL), str(OUT / "cross-encoder.onnx"), str(seconds), engine],
        input=json.dumps([QUERY, docs]), capture_output=True, text=True,
    )
    if run.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def model_server(dtype: str, seconds: float, docs: list[str]) -> dict:
    port = 18097
    proc = subprocess.Popen(
        [str(SERVER), "--model", str(MODEL), "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                return {"error": proc.stderr.read().strip().splitlines()[-1]}
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("model-server did not turn ready")
            time.sleep(0.05)
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        body = json.dumps({"query": QUERY, "texts": docs})

        def send() -> list:
            conn.request("POST", "/rerank", body, {"Content-Type": "application/json"})
            return json.loads(conn.getresponse().read())

        ranks = send()
        scores = [0.0] * len(docs)
        for rank in ranks:
            scores[rank["index"]] = rank["score"]
        for _ in range(2):
            send()
        lat, t0 = [], time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            t = time.perf_counter()
            send()
            lat.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
        lat.sort()
        return {"pairs_per_s": len(lat) * len(docs) / total, "p50_ms": lat[len(lat) // 2] * 1000, "scores": scores}
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per engine per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"CPU: {cpu()}")
    OUT.mkdir(parents=True, exist_ok=True)
    docs = passages()
    prepared = python_engine("prepare", 0, docs)
    reference = prepared["scores"]
    tokens = sorted(prepared["tokens"])
    print(f"pass: 1 query x {len(docs)} passages, {tokens[0]}-{tokens[-1]} tokens per pair "
          f"(median {tokens[len(tokens) // 2]}); checkpoint {MODEL.relative_to(ROOT)}")
    engines = {
        "model-server f32": lambda: model_server("f32", args.seconds, docs),
        "model-server int8": lambda: model_server("int8", args.seconds, docs),
        "torch (CrossEncoder)": lambda: python_engine("torch", args.seconds, docs),
        "ort fp32": lambda: python_engine("ort", args.seconds, docs),
    }
    rounds: dict[str, list[dict]] = {name: [] for name in engines}
    for r in range(args.rounds):
        for name, measure in engines.items():
            result = measure()
            if "error" in result:
                print(f"  round {r + 1} {name}: {result['error']}")
                continue
            diff = max(abs(a - b) for a, b in zip(result["scores"], reference))
            tolerance = 0.02 if "int8" in name else 1e-4
            assert diff <= tolerance, f"{name}: scores differ from CrossEncoder's by {diff}"
            result["max_score_diff"] = diff
            rounds[name].append(result)
            print(f"  round {r + 1} {name}: {result['pairs_per_s']:.1f} pairs/s, p50 {result['p50_ms']:.1f} ms "
                  f"per pass, max |score - CrossEncoder's| {diff:.1e}", flush=True)
    median = {name: statistics.median(r["pairs_per_s"] for r in results)
              for name, results in rounds.items() if results}
    p50 = {name: statistics.median(r["p50_ms"] for r in results) for name, results in rounds.items() if results}
    print("\nmedian of rounds (pairs/s; p50 ms per 1x32 pass):")
    for name in median:
        print(f"  {name:22} {median[name]:8.1f}  {p50[name]:7.1f} ms")
    base = median["model-server f32"]
    print(f"model-server f32 / torch: {base / median['torch (CrossEncoder)']:.2f}x; "
          f"/ ort fp32: {base / median['ort fp32']:.2f}x")
    if "model-server int8" in median:
        print(f"model-server int8 / ort fp32: {median['model-server int8'] / median['ort fp32']:.2f}x")
    (OUT / "rerank.json").write_text(json.dumps({"cpu": cpu(), "median_pairs_per_s": median, "p50_ms": p50}, indent=1))


if __name__ == "__main__":
    main()
