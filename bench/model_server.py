#!/usr/bin/env python3
"""Benchmark: model-server against the Python tutorial stack, side by side on this machine.

Prints ratios (model-server / tutorial) for: embeddings/s at saturation, p50/p95 at 10 and 50
concurrent users with the tutorial's traffic mix, cold start to ready, RSS idle and peak; and
in-process sentences/s at batch 1/8/32 of candle against sentence-transformers on PyTorch.

Usage: bench/model_server.py [--seconds 20] [--reuse-tutorial]
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
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


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


def inprocess(seconds: float) -> dict:
    out = {}
    candle = subprocess.run(
        [str(ROOT / "target/release/examples/inprocess"), str(MODEL), str(seconds)],
        check=True, capture_output=True, text=True,
    ).stdout
    torch = subprocess.run(
        [str(VENV_PY), "-c", TORCH_INPROCESS, str(MODEL), str(seconds)], check=True, capture_output=True, text=True
    ).stdout
    for line in (candle + torch).splitlines():
        row = json.loads(line)
        out[(row["engine"], row["batch"])] = row["sentences_per_s"]
    return out


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per load level")
    parser.add_argument("--inprocess-seconds", type=float, default=4.0)
    parser.add_argument("--reuse-tutorial", action="store_true",
                        help="take the tutorial stack's numbers from the last run (bench/out) instead of measuring it again")
    args = parser.parse_args()
    previous = BENCH / "out" / "model_server.json"

    subprocess.run(["cargo", "build", "--release", "--locked", "--workspace", "--bins", "--examples"], cwd=ROOT, check=True)
    rust = measure_server(
        "model-server",
        [str(ROOT / "target/release/model-server"), "--model", str(MODEL), "--host", "127.0.0.1", "--port", "8302"],
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


if __name__ == "__main__":
    main()
