#!/usr/bin/env python3
"""Benchmark: /health stays fast and memory stays bounded while clients send huge texts.

Starts model-server (one or two binaries, one after the other, same load), then for DURATION:
CLIENTS threads each POST /embed with one TEXT_MB-megabyte text in a loop, while a prober GETs
/health every 50 ms. Prints the CPU, /health latency (p50, p99, max), the /embed answers by
status, and the server's peak RSS (VmHWM). Loopback only, bounded in time.
`--shape many` sends the same bytes as one-letter texts instead (["a","a",...]): a body the
server must refuse (too many texts) without parsing it into strings.

  python3 bench/health_under_huge_texts.py --server target/debug/model-server \
      [--baseline OLD_BINARY] [--duration 20] [--clients 8] [--text-mb 1] [--shape one|many]
"""

import argparse
import collections
import http.client
import json
import os
import platform
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu():
    model, flags = platform.processor() or "unknown", []
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and model in ("", "unknown", platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = [f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "fma"))]
                break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} logical cores); SIMD: {' '.join(sorted(flags))}"


def request(port, method, path, body=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


def wait_ready(port, deadline=120):
    end = time.time() + deadline
    while time.time() < end:
        try:
            if request(port, "GET", "/health", timeout=2) == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("model-server did not become ready")


def peak_rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(binary, port, args):
    env = dict(os.environ, MODEL=os.path.join(ROOT, "models/all-MiniLM-L6-v2"), PORT=str(port),
               HOST="127.0.0.1", PAYLOAD_LIMIT=str(args.text_mb * 1_100_000 + 1000))
    server = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port)
        words = ("the quick brown fox jumps over the lazy dog " * (args.text_mb * 1_000_000 // 44 + 1))
        if args.shape == "many":
            body = json.dumps({"texts": ["a"] * (args.text_mb * 1_000_000 // 5)})
        else:
            body = json.dumps({"texts": [words[: args.text_mb * 1_000_000]]})
        stop = time.time() + args.duration
        statuses = collections.Counter()
        lock = threading.Lock()

        def client():
            while time.time() < stop:
                try:
                    status = request(port, "POST", "/embed", body)
                except OSError as e:
                    status = type(e).__name__
                with lock:
                    statuses[status] += 1

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        latencies = []
        while time.time() < stop:
            started = time.perf_counter()
            request(port, "GET", "/health", timeout=10)
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.05)
        for t in threads:
            t.join()
        latencies.sort()
        q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))]
        return {"p50": q(0.50), "p99": q(0.99), "max": latencies[-1], "probes": len(latencies),
                "embed": dict(statuses), "rss": peak_rss_mib(server.pid)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.path.join(ROOT, "target/debug/model-server"))
    parser.add_argument("--baseline", help="a second model-server binary, run the same way")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--text-mb", type=int, default=1)
    parser.add_argument("--shape", choices=["one", "many"], default="one",
                        help="one text of TEXT_MB, or TEXT_MB of one-letter texts")
    args = parser.parse_args()
    print(f"CPU: {cpu()}")
    what = (f"one {args.text_mb} MB text" if args.shape == "one"
            else f"{args.text_mb * 200_000} one-letter texts ({args.text_mb} MB)")
    print(f"load: {args.clients} clients, {what} per POST /embed, "
          f"{args.duration:.0f} s; GET /health every 50 ms")
    rows = [("new", args.server)] + ([("baseline", args.baseline)] if args.baseline else [])
    print(f"{'':10} {'health p50':>11} {'p99':>9} {'max':>9} {'probes':>7} {'peak RSS':>10}  /embed answers")
    for i, (name, binary) in enumerate(rows):
        r = run(binary, 18700 + i, args)
        print(f"{name:10} {r['p50']:8.1f} ms {r['p99']:6.1f} ms {r['max']:6.1f} ms {r['probes']:7d} "
              f"{r['rss']:6.0f} MiB  {r['embed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
