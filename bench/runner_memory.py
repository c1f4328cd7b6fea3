#!/usr/bin/env python3
"""Benchmark: the runner's memory stays flat over a long run (issue 11, task A).

Starts the trivial_server example on 127.0.0.1 (one server thread, `GET /health` answers at
once), runs the release `loadrunner run` against it in the open model at --rate requests/s
(default 2,000; at least 1,000) for --duration (default 10m), samples each runner's resident set
(VmRSS in /proc/PID/status) every --interval seconds, and prints the CPU model and SIMD flags,
the RSS series, and the verdict: "flat within 8 MiB after the first minute: yes/no" (the spread
of the samples from 60 s on), with the slope after the first minute and the request rate each
runner really reached (from its JSON summary).

With --baseline PATH a second runner binary (e.g. one built from the previous commit) runs at
the same time against the same server, and the two series print side by side.

All traffic goes to 127.0.0.1; every process is bounded by --duration (plus a grace period) and
is stopped when the script ends.

Usage:
  bench/runner_memory.py                       # 10 minutes
  bench/runner_memory.py --duration 90s        # a quick check
  bench/runner_memory.py --duration 2m --baseline /tmp/old/loadrunner
Exit code: 0 when every runner is flat and reached 1,000 req/s, 1 otherwise, 2 on bad usage.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAT_MIB = 8.0
SETTLE_S = 60.0
MIN_RATE = 1000.0
SIMD = re.compile(r"^(sse\d?(_\d)?|ssse3|sse4a|avx\w*|fma\w*|f16c|bmi\d|aes|vaes|pclmulqdq|vpclmulqdq|sha\w*|"
                  r"amx\w*|neon|asimd\w*|sve\w*|i8mm|bf16|dotprod)$")


def parse_duration(text: str) -> float:
    """'90s', '2m', '1h30m', or plain seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"{text!r}: write e.g. 90s, 2m, 10m, 1h30m")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def cpu_info() -> tuple[str, list[str]]:
    model, flags = "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "cpu model") and model == "unknown":
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = sorted(f for f in value.split() if SIMD.match(f))
    except OSError:
        pass
    return model, flags


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def verdict(series: list[tuple[float, int]]) -> dict:
    """Spread and slope of the samples from SETTLE_S on."""
    late = [(t, kib / 1024) for t, kib in series if t >= SETTLE_S]
    if len(late) < 2:
        return {"flat": None, "reason": f"fewer than 2 samples after {SETTLE_S:.0f} s; run longer"}
    values = [m for _, m in late]
    n = len(late)
    mean_t = sum(t for t, _ in late) / n
    mean_m = sum(values) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in late)
    slope = sum((t - mean_t) * (m - mean_m) for t, m in late) / var_t if var_t else 0.0
    spread = max(values) - min(values)
    return {"flat": spread <= FLAT_MIB, "spread": spread, "min": min(values), "max": max(values),
            "first": series[0][1] / 1024, "at_settle": late[0][1], "last": late[-1][1],
            "slope_mib_per_min": slope * 60, "samples": n}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=parse_duration, default=600.0,
                        help="how long the runner runs (90s, 2m, 10m; default 10m)")
    parser.add_argument("--rate", type=float, default=2000.0,
                        help="open-model arrival rate, requests/s (default 2000, at least 1000)")
    parser.add_argument("--users", type=int, default=32, help="most requests in flight (default 32)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    parser.add_argument("--loadrunner", type=Path, default=ROOT / "target/release/loadrunner",
                        help="runner binary under test (default: the release build)")
    parser.add_argument("--baseline", type=Path, help="a second runner binary to run side by side")
    parser.add_argument("--server", type=Path, default=ROOT / "target/release/examples/trivial_server")
    parser.add_argument("--no-build", action="store_true",
                        help="do not run `cargo build --release -p loadrunner` first")
    args = parser.parse_args()
    if args.rate < MIN_RATE:
        parser.error(f"--rate must be at least {MIN_RATE:.0f}")
    if args.duration <= 0 or args.interval <= 0:
        parser.error("--duration and --interval must be positive")

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "loadrunner", "--bin", "loadrunner",
                        "--example", "trivial_server"], cwd=ROOT, check=True)
    runners = [("new", args.loadrunner)] + ([("baseline", args.baseline)] if args.baseline else [])
    for name, path in runners + [("server", args.server)]:
        if not path.is_file():
            print(f"{name}: {path} not found", file=sys.stderr)
            return 2

    model, flags = cpu_info()
    print(f"CPU: {model} ({os.cpu_count()} logical cores)")
    print(f"SIMD flags: {' '.join(flags) if flags else 'none reported'}")
    print(f"load: open model, {args.rate:.0f} req/s, up to {args.users} in flight, GET /health on "
          f"127.0.0.1, {args.duration:.0f} s per runner; RSS every {args.interval:g} s")

    port = free_port()
    host = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(args.server), str(port)], stdout=subprocess.DEVNULL)
    procs: list[tuple[str, subprocess.Popen, Path]] = []
    series: dict[str, list[tuple[float, int]]] = {name: [] for name, _ in runners}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(host + "/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                print("the trivial server did not come up", file=sys.stderr)
                return 1
            tasks = Path(tmp) / "tasks.json"
            tasks.write_text(json.dumps([{"name": "health", "weight": 1, "request": {"get": {"path": "/health"}}}]))
            for name, path in runners:
                summary = Path(tmp) / f"{name}.json"
                cmd = [str(path), "run", "-H", host, "-u", str(args.users), "-r", "10000",
                       "--arrival-rate", str(args.rate), "-t", f"{int(round(args.duration))}s",
                       "--tasks", str(tasks), "--json", str(summary), "--ready-timeout", "10s"]
                with open(Path(tmp) / f"{name}.stderr", "w") as err:
                    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                            env={**os.environ, "RUST_LOG": "warn"})
                procs.append((name, proc, summary))
            started = time.monotonic()
            deadline = started + args.duration + 60  # ready wait + drain + report grace
            header = "  t (s)" + "".join(f"  {name + ' RSS (MiB)':>20}" for name, _ in runners)
            print(header)
            next_sample = started + args.interval  # t = 0 would catch the exec
            while any(p.poll() is None for _, p, _ in procs):
                if time.monotonic() > deadline:
                    print("a runner overran its duration; stopping it", file=sys.stderr)
                    break
                now = time.monotonic()
                if now >= next_sample:
                    t = now - started
                    cells = []
                    for name, proc, _ in procs:
                        kib = rss_kib(proc.pid) if proc.poll() is None else None
                        if kib is not None:
                            series[name].append((t, kib))
                        cells.append(f"{kib / 1024:>20.1f}" if kib is not None else f"{'-':>20}")
                    print(f"{t:7.1f}" + "".join(f"  {c}" for c in cells), flush=True)
                    next_sample += args.interval
                time.sleep(min(0.2, max(0.0, next_sample - time.monotonic())))
        finally:
            for _, proc, _ in procs:
                stop(proc)
            stop(server)

        # The exit code judges the runner under test; a baseline is printed for comparison.
        ok = True
        print()
        for name, proc, summary in procs:
            stderr = (Path(tmp) / f"{name}.stderr").read_text(errors="replace")
            rate = None
            if summary.is_file():
                s = json.loads(summary.read_text())
                rate = s["total"]["requests"] / s["durationSeconds"] if s["durationSeconds"] else 0.0
                print(f"{name}: {s['total']['requests']} requests in {s['durationSeconds']:.1f} s = "
                      f"{rate:.0f} req/s, {s['total']['failures']} failures, exit {proc.returncode}")
            else:
                print(f"{name}: no summary (exit {proc.returncode}): {stderr.strip()[-500:]}")
            v = verdict(series[name])
            if v["flat"] is None:
                print(f"{name}: flat within {FLAT_MIB:.0f} MiB after the first minute: n/a ({v['reason']})")
                ok &= name != "new"
                continue
            print(f"{name}: RSS {v['first']:.1f} MiB at start, {v['at_settle']:.1f} MiB at {SETTLE_S:.0f} s, "
                  f"{v['last']:.1f} MiB at the end; after the first minute min {v['min']:.1f}, "
                  f"max {v['max']:.1f}, spread {v['spread']:.2f} MiB over {v['samples']} samples, "
                  f"slope {v['slope_mib_per_min']:+.2f} MiB/min")
            print(f"{name}: flat within {FLAT_MIB:.0f} MiB after the first minute: "
                  f"{'yes' if v['flat'] else 'no'} (spread {v['spread']:.2f} MiB)")
            if name == "new":
                ok &= bool(v["flat"]) and rate is not None and rate >= MIN_RATE
            if rate is not None and rate < MIN_RATE:
                print(f"{name}: only {rate:.0f} req/s, below the {MIN_RATE:.0f} req/s this check needs")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
