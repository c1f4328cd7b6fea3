#!/usr/bin/env python3
"""Benchmark: model-server against the Python tutorial stack and ONNX Runtime, side by side.

Prints the CPU and its SIMD flags, then ratios (model-server / tutorial) for: embeddings/s at
saturation, p50/p95 at 10 and 50 concurrent users with the tutorial's traffic mix, cold start to
ready, RSS idle and peak; in-process sentences/s at batch 1/8/32 of candle against
sentence-transformers on PyTorch and against ONNX Runtime (the same checkpoint exported with
torch.onnx, fp32, graph optimisations on, 2 intra-op threads: what TEI's CPU image, infinity and
fastembed run), and the same with `--dtype int8` against ORT's dynamic int8 quantization; and a lone HTTP client's sentences/s at 1/8/32 texts per request against ORT's
in-process rate.

With --capacity: the highest number of users, each thinking 0.1-0.5 s between requests of the
tutorial's mix with its short one-sentence texts, that either server holds at p95 < 500 ms with < 1% failures (stepping users up
until a level breaks), and at that level the p95 of 1-2-text requests against 8-32-text ones.

Usage: bench/model_server.py [--seconds 20] [--reuse-tutorial] [--engines-only | --capacity] [--dtype int8]
Needs bench/.venv (bench/setup-python.sh) and the model (scripts/fetch-model.sh).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
MODEL = ROOT / "models" / "all-MiniLM-L6-v2"
VENV_PY = BENCH / ".venv" / "bin" / "python"
sys.path.insert(0, str(BENCH))
import loadgen  # noqa: E402


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tree_rss_mb(pid: int, field: str = "VmRSS") -> float:
    """RSS of a process plus its children (uvicorn may fork)."""
    total = rss_mb(pid, field)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            total += tree_rss_mb(int(child), field)
    return total


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.01)
    raise TimeoutError(f"server on {port} not ready after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def measure_server(name: str, cmd: list[str], port: int, env: dict, seconds: float) -> dict:
    print(f"--- {name}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        result = {"cold_start_s": round(time.perf_counter() - t0, 2)}
        time.sleep(1)
        result["rss_idle_mb"] = round(tree_rss_mb(proc.pid), 1)
        for users in (10, 50):
            run = loadgen.run(port, users, seconds)
            print(f"    {users} users: {run}", flush=True)
            result[f"u{users}"] = run
        sat = loadgen.run(port, 100, seconds)
        print(f"    100 users (saturation): {sat}", flush=True)
        result["saturation"] = sat
        result["rss_peak_mb"] = round(tree_rss_mb(proc.pid, "VmHWM"), 1)
        return result
    finally:
        stop(proc)


TORCH_INPROCESS = r"""
import json, sys, time, torch
from sentence_transformers import SentenceTransformer
torch.set_num_threads(2)
m = SentenceTransformer(sys.argv[1], device="cpu")
s = "The quick brown fox jumps over the lazy dog near the river bank."
for b in (1, 8, 32):
    batch = [s] * b
    for _ in range(3): m.encode(batch, batch_size=b)
    lat = []; t0 = time.perf_counter()
    while time.perf_counter() - t0 < float(sys.argv[2]):
        t = time.perf_counter(); m.encode(batch, batch_size=b); lat.append(time.perf_counter() - t)
    total = time.perf_counter() - t0; lat.sort()
    print(json.dumps({"engine": "torch", "batch": b, "sentences_per_s": round(len(lat) * b / total, 1), "p50_ms": round(lat[len(lat)//2]*1000, 2)}))
"""


# Mean pooling and L2 normalisation go inside the exported graph, so ORT's output is the
# sentence vector, as model-server's is.
ORT_INPROCESS = r"""
import json, os, sys, time, torch
import numpy as np, onnxruntime as ort
from sentence_transformers import SentenceTransformer
model_dir, seconds, onnx_path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
st = SentenceTransformer(model_dir, device="cpu")
tok = st.tokenizer
class Pooled(torch.nn.Module):
    def __init__(self, bert):
        super().__init__(); self.bert = bert
    def forward(self, input_ids, attention_mask, token_type_ids):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(v, p=2, dim=1)
if not os.path.exists(onnx_path):
    enc = tok(["hello world"] * 2, return_tensors="pt", padding=True)
    torch.onnx.export(Pooled(st[0].auto_model).eval(), (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]),
        onnx_path, input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["embedding"],
        dynamic_axes={n: {0: "batch", 1: "seq"} for n in ["input_ids", "attention_mask", "token_type_ids"]}, opset_version=17, dynamo=False)
int8_path = onnx_path.replace(".onnx", ".int8.onnx")
if not os.path.exists(int8_path):
    # ORT's dynamic quantization: int8 weights per tensor, u8 activations quantized at run time.
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(onnx_path, int8_path, weight_type=QuantType.QInt8)
opts = ort.SessionOptions(); opts.intra_op_num_threads = 2; opts.inter_op_num_threads = 1
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
s = "The quick brown fox jumps over the lazy dog near the river bank."
ref = st.encode([s], normalize_embeddings=True)[0]
for engine, path in (("ort", onnx_path), ("ort-int8", int8_path)):
  sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
  for b in (1, 8, 32):
    enc = tok([s] * b, return_tensors="np", padding=True)
    feed = {k: enc[k].astype(np.int64) for k in ["input_ids", "attention_mask", "token_type_ids"]}
    out = sess.run(None, feed)[0]
    cos = float(np.dot(out[0], ref) / np.linalg.norm(out[0]) / np.linalg.norm(ref))
    for _ in range(3): sess.run(None, feed)
    lat = []; t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        t = time.perf_counter(); tok([s] * b, return_tensors="np", padding=True); sess.run(None, feed); lat.append(time.perf_counter() - t)
    total = time.perf_counter() - t0; lat.sort()
    print(json.dumps({"engine": engine, "batch": b, "sentences_per_s": round(len(lat) * b / total, 1), "p50_ms": round(lat[len(lat)//2]*1000, 2), "cosine_to_st": round(cos, 6)}))
"""


def inprocess(seconds: float) -> dict:
    out = {}
    candle = ""
    for dtype in ("f32", "int8"):
        # int8 needs AVX512-VNNI; elsewhere the example refuses it and the row stays empty.
        run = subprocess.run(
            [str(ROOT / "target/release/examples/inprocess"), str(MODEL), str(seconds)],
            capture_output=True, text=True, env={**os.environ, "DTYPE": dtype},
        )
        if run.returncode != 0:
            print(f"    candle --dtype {dtype}: {run.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        candle += run.stdout.replace('"engine":"candle"', '"engine":"candle-int8"') if dtype == "int8" else run.stdout
    torch = subprocess.run(
        [str(VENV_PY), "-c", TORCH_INPROCESS, str(MODEL), str(seconds)], check=True, capture_output=True, text=True
    ).stdout
    (BENCH / "out").mkdir(exist_ok=True)
    onnx = subprocess.run(
        [str(VENV_PY), "-c", ORT_INPROCESS, str(MODEL), str(seconds), str(BENCH / "out" / "all-MiniLM-L6-v2.onnx")],
        check=True, capture_output=True, text=True,
    ).stdout
    for line in (candle + torch + onnx).splitlines():
        row = json.loads(line)
        out[(row["engine"], row["batch"])] = row["sentences_per_s"]
        print(f"    {row}", flush=True)
    return out


def cpu() -> str:
    model, flags = "unknown", []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and model == "unknown":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "fma", "amx")))
            break
    return f"{model}, {os.cpu_count()} logical cores; SIMD: {' '.join(flags)}"


def lone_client(port: int, seconds: float) -> dict:
    """One client, one request at a time: sentences/s at 1, 8 and 32 texts per request."""
    import http.client
    s = "The quick brown fox jumps over the lazy dog near the river bank."
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = {}
    for n in (1, 8, 32):
        body = json.dumps({"texts": [s] * n})
        send = lambda: (conn.request("POST", "/embed", body, {"Content-Type": "application/json"}), conn.getresponse().read())
        for _ in range(3):
            send()
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            send()
            done += 1
        out[n] = round(done * n / (time.perf_counter() - t0), 1)
    return out


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per load level")
    parser.add_argument("--inprocess-seconds", type=float, default=4.0)
    parser.add_argument("--reuse-tutorial", action="store_true",
                        help="take the tutorial stack's numbers from the last run (bench/out) instead of measuring it again")
    parser.add_argument("--engines-only", action="store_true",
                        help="only the in-process engines and the lone HTTP client (no tutorial stack, no load levels)")
    parser.add_argument("--capacity", action="store_true",
                        help="only the capacity search (users at p95 < 500 ms, < 1%% failures) on both servers")
    parser.add_argument("--dtype", choices=("f32", "int8"), default="f32",
                        help="model-server's --dtype for the server measurements (int8 needs AVX512-VNNI)")
    args = parser.parse_args()
    RUST_CMD.extend(["--dtype", args.dtype])
    previous = BENCH / "out" / "model_server.json"

    print(f"CPU: {cpu()}", flush=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "--workspace", "--bins", "--examples"], cwd=ROOT, check=True)
    if args.engines_only:
        engines_only(args.inprocess_seconds, args.dtype)
        return
    if args.capacity:
        capacity_side_by_side(args.seconds)
        return
    rust = measure_server(
        f"model-server --dtype {args.dtype}",
        [str(ROOT / "target/release/model-server"), "--model", str(MODEL), "--host", "127.0.0.1", "--port", "8302",
         "--dtype", args.dtype],
        8302, {"RUST_LOG": "warn"}, args.seconds,
    )
    python = json.loads(previous.read_text())["tutorial"] if args.reuse_tutorial else measure_server(
        "tutorial (FastAPI + sentence-transformers, uvicorn --workers 1)",
        [str(BENCH / ".venv/bin/uvicorn"), "tutorial_app:app", "--app-dir", str(BENCH), "--workers", "1",
         "--host", "127.0.0.1", "--port", "8301", "--log-level", "warning"],
        8301, {"MODEL_DIR": str(MODEL)}, args.seconds,
    )
    inp = inprocess(args.inprocess_seconds)

    rows = [
        ("embeddings/s at saturation (100 users)", rust["saturation"]["embeddings_per_s"], python["saturation"]["embeddings_per_s"], "higher"),
        ("p50 ms at 10 users", rust["u10"]["p50_ms"], python["u10"]["p50_ms"], "lower"),
        ("p95 ms at 10 users", rust["u10"]["p95_ms"], python["u10"]["p95_ms"], "lower"),
        ("p50 ms at 50 users", rust["u50"]["p50_ms"], python["u50"]["p50_ms"], "lower"),
        ("p95 ms at 50 users", rust["u50"]["p95_ms"], python["u50"]["p95_ms"], "lower"),
        ("health p99 ms at 100 users", rust["saturation"]["health_p99_ms"], python["saturation"]["health_p99_ms"], "lower"),
        ("failures at 100 users", rust["saturation"]["failures"], python["saturation"]["failures"], "lower"),
        ("cold start to ready, s", rust["cold_start_s"], python["cold_start_s"], "lower"),
        ("RSS idle, MB", rust["rss_idle_mb"], python["rss_idle_mb"], "lower"),
        ("RSS peak, MB", rust["rss_peak_mb"], python["rss_peak_mb"], "lower"),
    ] + [
        (f"in-process sentences/s, batch {b}", inp[("candle", b)], inp[("torch", b)], "higher") for b in (1, 8, 32)
    ]
    print()
    print(f"{'metric':<42} {'model-server':>13} {'tutorial':>10} {'ratio':>8}")
    for name, r, p, better in rows:
        print(f"{name:<42} {r:>13} {p:>10} {ratio(r, p):>8}  ({better} is better)")
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    (out / "model_server.json").write_text(json.dumps({"model_server": rust, "tutorial": python,
        "inprocess": {f"{k[0]}_b{k[1]}": v for k, v in inp.items()}}, indent=2))


RUST_CMD = [str(ROOT / "target/release/model-server"), "--model", str(MODEL), "--host", "127.0.0.1", "--port", "8304"]
TUTORIAL_CMD = [str(BENCH / ".venv/bin/uvicorn"), "tutorial_app:app", "--app-dir", str(BENCH), "--workers", "1",
                "--host", "127.0.0.1", "--port", "8305", "--log-level", "warning"]
CAPACITY_LEVELS = (5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200)
THINK = (0.1, 0.5)


def capacity(name: str, cmd: list[str], port: int, env: dict, seconds: float) -> dict:
    """Steps users up until p95 >= 500 ms or failures >= 1%; the last level that held is the capacity."""
    print(f"--- {name}: {' '.join(cmd)}", flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        held = None
        for users in CAPACITY_LEVELS:
            run = loadgen.run(port, users, seconds, think=THINK, corpus_kind="short")
            ok = run["p95_ms"] < 500 and run["failures"] < 0.01 * max(run["requests"], 1)
            print(f"    {users} users: {'holds' if ok else 'breaks'} {run}", flush=True)
            if not ok:
                return {"capacity_users": held["users"] if held else 0, "held": held, "broke": run}
            held = run
        return {"capacity_users": held["users"], "held": held, "broke": None}
    finally:
        stop(proc)


def capacity_side_by_side(seconds: float) -> None:
    rust = capacity(f"model-server {' '.join(RUST_CMD[-2:])}", RUST_CMD, 8304, {"RUST_LOG": "warn"}, seconds)
    tutorial = capacity("tutorial (FastAPI + sentence-transformers, uvicorn --workers 1)", TUTORIAL_CMD, 8305,
                        {"MODEL_DIR": str(MODEL)}, seconds)
    print()
    print(f"capacity: users held at p95 < 500 ms, < 1% failures, think time {THINK[0]}-{THINK[1]} s, short texts")
    print(f"{'':<38} {'model-server':>13} {'tutorial':>10} {'ratio':>8}")
    r, t = rust["capacity_users"], tutorial["capacity_users"]
    print(f"{'users held':<38} {r:>13} {t:>10} {ratio(r, t):>8}")
    for key, label in (("rps", "requests/s at that level"), ("p95_ms", "p95 ms at that level"),
                       ("single_p95_ms", "1-2-text p95 ms at that level"), ("batch_p95_ms", "8-32-text p95 ms at that level")):
        rv = rust["held"][key] if rust["held"] else float("nan")
        tv = tutorial["held"][key] if tutorial["held"] else float("nan")
        print(f"{label:<38} {rv:>13} {tv:>10}")
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    (out / "capacity.json").write_text(json.dumps({"model_server": rust, "tutorial": tutorial}, indent=2))


def engines_only(seconds: float, dtype: str) -> None:
    inp = inprocess(seconds)
    proc = subprocess.Popen(
        [str(ROOT / "target/release/model-server"), "--model", str(MODEL), "--host", "127.0.0.1", "--port", "8303",
         "--dtype", dtype],
        env={**os.environ, "RUST_LOG": "warn"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(8303, proc)
        lone = lone_client(8303, seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    print()
    print(f"{'sentences/s':<34} {'candle':>8} {'torch':>8} {'ORT':>8} {'candle/torch':>13} {'candle/ORT':>11}")
    for b in (1, 8, 32):
        c, t, o = inp[("candle", b)], inp[("torch", b)], inp[("ort", b)]
        print(f"{f'in process, batch {b}':<34} {c:>8} {t:>8} {o:>8} {ratio(c, t):>13} {ratio(c, o):>11}")
    print()
    print(f"{'sentences/s, reduced precision':<34} {'candle':>8} {'':>8} {'ORT':>8} {'':>13} {'candle/ORT':>11}")
    for b in (1, 8, 32):
        c, o = inp.get(("candle-int8", b)), inp[("ort-int8", b)]
        label = f"int8, batch {b}"
        print(f"{label:<34} {c or '-':>8} {'':>8} {o:>8} {'':>13} {ratio(c, o) if c else 'n/a':>11}")
    peer = "ort" if dtype == "f32" else "ort-int8"
    for n in (1, 8, 32):
        o = inp[(peer, n)]
        label = f"HTTP lone client {dtype}, {n} texts"
        print(f"{label:<34} {lone[n]:>8} {'':>8} {o:>8} {'':>13} {ratio(lone[n], o):>11}")


if __name__ == "__main__":
    main()
