"""A small closed-loop HTTP load generator for the model-server benchmark (stdlib only).

Each virtual user keeps one keep-alive connection (TCP_NODELAY) and loops over the tutorial's task
mix: single embed (1-2 texts) weight 8, batch embed (8-32 texts) weight 2, GET /health weight 1,
with texts drawn from a seeded corpus of varied lengths. It reports requests/s, embeddings/s,
latency percentiles per task and in total, and failures (non-2xx, connection errors).

This is benchmark tooling for issue 2, driving both servers identically; loadgate's real load
engine is the `loadrunner` crate.
"""
import asyncio
import json
import random
import socket
import time

WORDS = (
    "model latency throughput kubernetes cluster rollout canary endpoint embedding vector batch "
    "token sentence semantic search query document index retrieval ranking relevance service "
    "request response queue worker thread memory cache network packet storage replica deployment "
    "pod node scheduler controller operator metric alert budget percentile error rate traffic "
    "spike ramp sustained user session payload json http server client timeout retry backoff"
).split()


# Words per text: "varied" is the classic mix (up to ~80 tokens); "short" is the tutorial's own
# one-sentence texts (8-16 words, ~10-20 tokens).
CORPUS_WORDS = {"varied": [4, 8, 12, 16, 24, 40, 60], "short": [8, 10, 12, 14, 16]}


def make_corpus(seed: int, size: int = 512, kind: str = "varied") -> list[str]:
    rng = random.Random(seed)
    corpus = []
    for _ in range(size):
        n = rng.choice(CORPUS_WORDS[kind])
        corpus.append(" ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + ".")
    return corpus


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


async def _request(reader, writer, method: str, path: str, body: bytes | None) -> int:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    writer.write(head.encode() + b"\r\n" + (body or b""))
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length = 0
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return status


async def _user(host, port, deadline, rng, corpus, samples, think=None):
    reader = writer = None
    while time.perf_counter() < deadline:
        if think is not None:
            await asyncio.sleep(rng.uniform(*think))
            if time.perf_counter() >= deadline:
                break
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
                writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                samples.append(("connect", 0.0, 0, False))
                await asyncio.sleep(0.05)
                continue
        task = rng.choices(["single", "batch", "health"], weights=[8, 2, 1])[0]
        if task == "health":
            method, path, body, n = "GET", "/health", None, 0
        else:
            n = rng.randint(1, 2) if task == "single" else rng.randint(8, 32)
            body = json.dumps({"texts": rng.sample(corpus, n)}).encode()
            method, path = "POST", "/embed"
        started = time.perf_counter()
        try:
            status = await _request(reader, writer, method, path, body)
            ok = 200 <= status < 300
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            ok = False
            writer.close()
            writer = None
        samples.append((task, time.perf_counter() - started, n if ok else 0, ok))
    if writer is not None:
        writer.close()


def run(port: int, users: int, seconds: float, seed: int = 7, host: str = "127.0.0.1",
        think: tuple[float, float] | None = None, corpus_kind: str = "varied") -> dict:
    """Runs `users` closed-loop users for `seconds`, each waiting a uniform `think` (min, max)
    seconds before every request if given (Locust's `wait_time = between(min, max)`); returns a
    summary dict."""
    corpus = make_corpus(seed, kind=corpus_kind)
    samples: list = []

    async def main():
        deadline = time.perf_counter() + seconds
        await asyncio.gather(
            *(_user(host, port, deadline, random.Random(seed * 1000 + i), corpus, samples, think)
              for i in range(users))
        )

    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    ok = [s for s in samples if s[3]]
    lat = sorted(s[1] * 1000 for s in ok)
    embed_lat = sorted(s[1] * 1000 for s in ok if s[0] != "health")
    health_lat = sorted(s[1] * 1000 for s in ok if s[0] == "health")
    single_lat = sorted(s[1] * 1000 for s in ok if s[0] == "single")
    batch_lat = sorted(s[1] * 1000 for s in ok if s[0] == "batch")
    return {
        "users": users,
        "seconds": round(wall, 2),
        "requests": len(samples),
        "failures": len(samples) - len(ok),
        "rps": round(len(ok) / wall, 1),
        "embeddings_per_s": round(sum(s[2] for s in ok) / wall, 1),
        "p50_ms": round(percentile(lat, 50), 1),
        "p95_ms": round(percentile(lat, 95), 1),
        "p99_ms": round(percentile(lat, 99), 1),
        "embed_p95_ms": round(percentile(embed_lat, 95), 1),
        "single_p95_ms": round(percentile(single_lat, 95), 1),
        "batch_p95_ms": round(percentile(batch_lat, 95), 1),
        "health_p99_ms": round(percentile(health_lat, 99), 1),
        "loadgen_cpu_s": round(cpu, 2),
    }


if __name__ == "__main__":
    import sys

    print(json.dumps(run(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))))
