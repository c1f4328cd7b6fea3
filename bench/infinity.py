#!/usr/bin/env python3
"""A real OpenAI-compatible server no one here wrote, loaded through `api: openai`: infinity
(`infinity-emb` from PyPI, `--engine torch`) serving the same all-MiniLM-L6-v2 from models/, and
loadgate's own model-server, each alone on this machine, each asked the same question by the
same LoadTest in local mode: a capacity search (open model, a step more every 10 s: 20 req/s for
model-server, 5 for infinity; requests of 1-2 texts in OpenAI's shape, every answer's vectors
checked) against p95 < 200 ms and < 1% errors.
Prints the CPU, both capacity answers side by side and their ratio; writes bench/out/infinity.json.

Usage: bench/infinity.py [--step-seconds 10] [--step-rps 20]
Installs infinity-emb[torch,server] into target/infinity-venv (PyPI's torch wheel: a large
download once). Needs release binaries (it builds them) and models/all-MiniLM-L6-v2.
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

from machine import cpu

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "infinity-venv"
MODEL = ROOT / "models" / "all-MiniLM-L6-v2"
PORT = 18500


def ensure_infinity() -> None:
    if (VENV / "bin" / "infinity_emb").exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "infinity-emb[torch,server]"], check=True)


def wait_ready(url: str, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds} s")


def load_test(name: str, path: str, model: str, step_s: int, step_rps: int) -> str:
    return f"""apiVersion: loadgate.dev/v1alpha1
kind: LoadTest
metadata: {{name: {name}}}
spec:
  target: {{url: "http://127.0.0.1:{PORT}"}}
  tasks:
    - name: embed
      weight: 1
      request:
        embed: {{path: {path}, api: openai, model: "{model}", minTexts: 1, maxTexts: 2}}
  runner: {{seed: 7}}
  profiles:
    - name: search
      users: 64
      search: {{startRps: {step_rps}, stepRps: {step_rps}, stepDuration: {step_s}s, maxRps: {24 * step_rps}}}
  thresholds: {{p95Ms: 200, maxErrorRate: 0.01}}
  timeout: 30m
"""


def capacity(name: str, ready_path: str, path: str, model: str, step_s: int, step_rps: int, server: list[str],
             env: dict) -> dict:
    out = ROOT / "target" / "bench-infinity"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.yaml").write_text(load_test(name, path, model, step_s, step_rps))
    log = open(out / f"{name}-server.log", "w")
    proc = subprocess.Popen(server, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=ROOT)
    try:
        wait_ready(f"http://127.0.0.1:{PORT}{ready_path}")
        subprocess.run([str(ROOT / "target/release/loadgate"), "local", "-f", str(out / f"{name}.yaml"),
                        "--results", str(out / "results")], cwd=ROOT,
                       env={**os.environ, "LOADRUNNER_THREADS": "1"}, stdout=subprocess.DEVNULL)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    status = json.loads(subprocess.run(
        [sys.executable, "-c", "import json,sys,yaml;print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
         str(out / "results" / name / "status.yaml")], capture_output=True, text=True, check=True).stdout)["status"]
    cap = status.get("capacity") or {}
    profile = status["profiles"][0]
    return {"maxRpsWithinBudget": cap.get("maxRpsWithinBudget"), "message": cap.get("message"),
            "requests": profile.get("results", {}).get("requests"),
            "failures": profile.get("results", {}).get("failures")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--step-seconds", type=int, default=10)
    parser.add_argument("--step-rps", type=int, default=20, help="model-server's step (infinity's is a quarter)")
    args = parser.parse_args()
    ensure_infinity()
    subprocess.run(["cargo", "build", "--release", "--locked", "--bins"], cwd=ROOT, check=True)
    threads = str(os.cpu_count() or 2)
    results = {
        "model-server": capacity(
            "model-server", "/health", "/v1/embeddings", "all-MiniLM-L6-v2", args.step_seconds, args.step_rps,
            [str(ROOT / "target/release/model-server"), "--model", str(MODEL), "--port", str(PORT),
             "--host", "127.0.0.1"], {}),
        "infinity (torch)": capacity(
            "infinity", "/health", "/embeddings", str(MODEL), args.step_seconds, max(1, args.step_rps // 4),
            [str(VENV / "bin/infinity_emb"), "v2", "--model-id", str(MODEL), "--engine", "torch",
             "--device", "cpu", "--port", str(PORT), "--host", "127.0.0.1"],
            {"OMP_NUM_THREADS": threads, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}),
    }
    print(f"\nCPU: {cpu()}")
    print("Capacity search, OpenAI shape (1-2 texts per request), p95 < 200 ms and < 1% errors:")
    for name, r in results.items():
        print(f"  {name:<18} {r['maxRpsWithinBudget']} req/s  ({r['message']})")
    a, b = results["model-server"]["maxRpsWithinBudget"], results["infinity (torch)"]["maxRpsWithinBudget"]
    if a and b:
        print(f"  model-server / infinity: {a / b:.2f}x")
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    (ROOT / "bench" / "out" / "infinity.json").write_text(json.dumps({"cpu": cpu(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
