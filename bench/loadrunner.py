#!/usr/bin/env python3
"""Benchmark: loadrunner against Locust (HttpUser, FastHttpUser) and wrk, side by side.

1. Efficiency: each tool, on one thread (`wrk -t1`, `loadrunner --threads 1`, Locust is single-
   threaded), drives a trivial endpoint (`GET /health` on the trivial_server example,
   one server thread) with 32 connections/users for --seconds; we count the requests each
   completed and the CPU time the load generator used (user + system, children rusage), and print
   requests per CPU-second and the ratios loadrunner / Locust and loadrunner / wrk.
   The same on https: loadrunner and wrk against nginx terminating TLS (HTTP/1.1, so both speak
   the same protocol; a CA made here) and answering `GET /health` itself, 32 connections each.
2. Accuracy: each tool drives `GET /sleep/20` with 8 connections while the server times each
   request itself (the server-side truth, from /truth); we print p50 / p99 (and p95 where the
   tool reports it) and loadrunner's difference to wrk's and to the server's own numbers.

Usage: bench/loadrunner.py [--seconds 10]
Installs what it needs: wrk (Debian) and locust (into bench/.venv); needs nginx and openssl.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV = BENCH / ".venv"
PORT = 8400
HOST = f"http://127.0.0.1:{PORT}"

LOCUSTFILE = """
from locust import HttpUser, task, constant
from locust.contrib.fasthttp import FastHttpUser
import os
PATH = os.environ.get("BENCH_PATH", "/health")
class Slow(HttpUser):
    wait_time = constant(0)
    @task
    def hit(self):
        self.client.get(PATH)
class Fast(FastHttpUser):
    wait_time = constant(0)
    @task
    def hit(self):
        self.client.get(PATH)
"""


def ensure_tools() -> None:
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    if not (VENV / "bin" / "locust").exists():
        if not (VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "locust"], check=True)


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], env: dict | None = None) -> tuple[str, float, float]:
    """Runs cmd; returns (stdout+stderr, wall seconds, CPU seconds of the process)."""
    cpu0, t0 = child_cpu(), time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    return out.stdout + out.stderr, time.perf_counter() - t0, child_cpu() - cpu0


def run_loadrunner(path: str, conns: int, seconds: float, tmp: Path) -> dict:
    tasks = tmp / "tasks.json"
    tasks.write_text(json.dumps([{"name": path, "weight": 1, "request": {"get": {"path": path}}}]))
    summary = tmp / "lr.json"
    _, wall, cpu = timed([str(ROOT / "target/release/loadrunner"), "run", "-H", HOST, "-u", str(conns), "-r", "10000",
                          "-t", f"{int(seconds)}s", "--tasks", str(tasks), "--json", str(summary), "--no-wait-ready",
                          "--threads", "1"],
                         {"RUST_LOG": "warn"})
    s = json.loads(summary.read_text())["total"]
    return {"requests": s["requests"], "failures": s["failures"], "cpu_s": cpu, "wall_s": wall,
            "p50": s["p50Ms"], "p95": s["p95Ms"], "p99": s["p99Ms"]}


def run_locust(user_class: str, path: str, conns: int, seconds: float, tmp: Path) -> dict:
    locustfile = tmp / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    prefix = tmp / f"locust_{user_class}"
    _, wall, cpu = timed([str(VENV / "bin/locust"), "-f", str(locustfile), user_class, "--headless", "-u", str(conns),
                          "-r", str(conns), "-t", f"{int(seconds)}s", "--host", HOST, "--csv", str(prefix),
                          "--only-summary", "--loglevel", "WARNING"], {"BENCH_PATH": path})
    rows = (Path(str(prefix) + "_stats.csv")).read_text().splitlines()
    header = rows[0].split(",")
    agg = next(r.split(",") for r in rows[1:] if r.split(",")[1] == "Aggregated")
    col = lambda name: float(agg[header.index(name)])
    return {"requests": int(col("Request Count")), "failures": int(col("Failure Count")), "cpu_s": cpu, "wall_s": wall,
            "p50": col("50%"), "p95": col("95%"), "p99": col("99%")}


def run_wrk(path: str, conns: int, seconds: float) -> dict:
    out, wall, cpu = timed(["wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", "--latency", HOST + path])
    requests = int(re.search(r"(\d+) requests in", out).group(1))

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"requests": requests, "failures": 0, "cpu_s": cpu, "wall_s": wall, "p50": pct("50"), "p95": None, "p99": pct("99")}


HTTPS_PORT = 8443


def start_tls_gateway(tmp: Path) -> subprocess.Popen:
    """nginx on 127.0.0.1:HTTPS_PORT: TLS with a certificate from a CA made here, HTTP/1.1,
    answering /health itself; connections live as long as the client keeps them."""
    run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=bench CA",
        "-keyout", str(tmp / "ca.key"), "-out", str(tmp / "ca.crt"))
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(tmp / "tls.key"), "-out", str(tmp / "tls.csr"))
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", str(tmp / "tls.csr"), "-CA", str(tmp / "ca.crt"), "-CAkey", str(tmp / "ca.key"),
        "-CAcreateserial", "-days", "1", "-extfile", str(tmp / "san.ext"), "-out", str(tmp / "tls.crt"))
    (tmp / "nginx.conf").write_text(f"""
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{}}
http {{
  access_log off;
  keepalive_requests 100000000;
  server {{
    listen 127.0.0.1:{HTTPS_PORT} ssl;
    ssl_certificate {tmp}/tls.crt;
    ssl_certificate_key {tmp}/tls.key;
    location = /health {{ return 200 "ok"; }}
  }}
}}
""")
    gateway = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"])
    time.sleep(0.5)
    return gateway


def run_loadrunner_https(conns: int, seconds: float, tmp: Path) -> dict:
    spec = {"target": f"https://127.0.0.1:{HTTPS_PORT}", "readiness": {"wait": False},
            "tls": {"caFile": str(tmp / "ca.crt")},
            "profile": {"name": "https", "users": conns, "spawnRate": 10000, "duration": f"{int(seconds)}s"},
            "tasks": [{"name": "/health", "weight": 1, "request": {"get": {"path": "/health"}}}]}
    summary = tmp / "lr-https.json"
    _, wall, cpu = timed([str(ROOT / "target/release/loadrunner"), "run", "--spec", json.dumps(spec),
                          "--json", str(summary), "--threads", "1"], {"RUST_LOG": "warn"})
    full = json.loads(summary.read_text())
    s = full["total"]
    return {"requests": s["requests"], "failures": s["failures"], "cpu_s": cpu, "wall_s": wall,
            "p50": s["p50Ms"], "p95": s["p95Ms"], "p99": s["p99Ms"], "connections": full.get("connections")}


def run_wrk_https(conns: int, seconds: float) -> dict:
    out, wall, cpu = timed(["wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", f"https://127.0.0.1:{HTTPS_PORT}/health"])
    return {"requests": int(re.search(r"(\d+) requests in", out).group(1)), "failures": 0, "cpu_s": cpu, "wall_s": wall}


def efficiency_table(title: str, runs: dict) -> None:
    """Prints requests per CPU-second of each tool and loadrunner's ratio to it."""
    print(f"\n{title}")
    print(f"{'tool':<22} {'requests':>9} {'req/s':>9} {'gen CPU s':>10} {'req/CPU-s':>10} {'loadrunner ratio':>17}")
    lr = runs["loadrunner"]["requests"] / max(runs["loadrunner"]["cpu_s"], 1e-9)
    for name, r in runs.items():
        per_cpu = r["requests"] / max(r["cpu_s"], 1e-9)
        print(f"{name:<22} {r['requests']:>9} {r['requests'] / r['wall_s']:>9.0f} {r['cpu_s']:>10.2f} {per_cpu:>10.0f} {lr / per_cpu:>16.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    ensure_tools()
    subprocess.run(["cargo", "build", "--release", "--locked", "--workspace", "--bins", "--examples"], cwd=ROOT, check=True)
    server = subprocess.Popen([str(ROOT / "target/release/examples/trivial_server"), str(PORT)])
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(HOST + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            eff = {
                "loadrunner": run_loadrunner("/health", 32, args.seconds, tmp),
                "locust HttpUser": run_locust("Slow", "/health", 32, args.seconds, tmp),
                "locust FastHttpUser": run_locust("Fast", "/health", 32, args.seconds, tmp),
                "wrk": run_wrk("/health", 32, args.seconds),
            }
            acc, truth = {}, {}
            for name, run in (
                ("loadrunner", lambda: run_loadrunner("/sleep/20", 8, args.seconds, tmp)),
                ("locust FastHttpUser", lambda: run_locust("Fast", "/sleep/20", 8, args.seconds, tmp)),
                ("wrk", lambda: run_wrk("/sleep/20", 8, args.seconds)),
            ):
                urllib.request.urlopen(urllib.request.Request(HOST + "/truth/reset", method="POST"), timeout=5)
                acc[name] = run()
                truth[name] = json.loads(urllib.request.urlopen(HOST + "/truth", timeout=5).read())
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        gateway = start_tls_gateway(tmp)
        try:
            https = {
                "loadrunner": run_loadrunner_https(32, args.seconds, tmp),
                "wrk": run_wrk_https(32, args.seconds),
            }
        finally:
            gateway.send_signal(signal.SIGQUIT)
            gateway.wait(timeout=10)

    efficiency_table("Efficiency: GET /health, 32 connections, requests per CPU-second of the load generator", eff)
    efficiency_table("Efficiency on https: GET /health through nginx's TLS (HTTP/1.1 for both), 32 connections", https)
    c = https["loadrunner"].get("connections") or {}
    print(f"loadrunner's connections: {c.get('opened')} over {c.get('protocol')}, TLS handshake p50 {c.get('tlsP50Ms')} ms, p95 {c.get('tlsP95Ms')} ms")
    print("\nAccuracy: GET /sleep/20, 8 connections, latency in ms; 'server' = the server's own timing in the same run")
    print(f"{'tool':<22} {'p50':>8} {'p95':>8} {'p99':>8} {'server p50':>11} {'server p99':>11}")
    for name, r in acc.items():
        p95 = f"{r['p95']:.2f}" if r["p95"] is not None else "n/a"
        t = truth[name]
        print(f"{name:<22} {r['p50']:>8.2f} {p95:>8} {r['p99']:>8.2f} {t['p50_ms']:>11.2f} {t['p99_ms']:>11.2f}")
    lr, wrk, t = acc["loadrunner"], acc["wrk"], truth["loadrunner"]
    for p in ("p50", "p99"):
        server = t[f"{p}_ms"]
        print(f"loadrunner {p}: vs wrk {100 * (lr[p] - wrk[p]) / wrk[p]:+.1f}% ({lr[p] - wrk[p]:+.2f} ms); "
              f"vs server-side truth {100 * (lr[p] - server) / server:+.1f}% ({lr[p] - server:+.2f} ms)")
    (BENCH / "out").mkdir(exist_ok=True)
    (BENCH / "out" / "loadrunner.json").write_text(json.dumps({"efficiency": eff, "https_efficiency": https, "accuracy": acc, "server_truth": truth}, indent=2))


if __name__ == "__main__":
    main()
