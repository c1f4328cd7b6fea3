#!/usr/bin/env python3
"""An OpenAI-compatible LLM server whose timings are known by construction, for tests and
benches on loopback: every answer's first content token comes TTFT ms after the request
arrived, then one token every ITL ms, TOKENS in all, then a `usage` chunk and `data: [DONE]`
(`stream: true`), or the whole answer after TTFT + (TOKENS - 1) x ITL (`stream: false`).
`GET /v1/models` answers 200 (the readiness path of a chat task).

    known_timings.py PORT [--ttft MS] [--itl MS] [--tokens N] [--slots N]

With --slots N at most N answers are under way at once; the rest wait for a slot, and their
first token comes TTFT ms after they got one (so the capacity is N / (TTFT + (TOKENS - 1) x ITL)
answers a second, known in advance).

Bound to 127.0.0.1 only; one thread per connection (keep-alive), so answers overlap freely.
"""
import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--ttft", type=float, default=150.0, help="ms to the first token")
    parser.add_argument("--itl", type=float, default=10.0, help="ms between tokens")
    parser.add_argument("--tokens", type=int, default=20, help="tokens per answer")
    parser.add_argument("--slots", type=int, default=0, help="answers at once (0: no limit)")
    args = parser.parse_args()
    slots = threading.BoundedSemaphore(args.slots) if args.slots > 0 else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def send(self, status, body, content_type="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/v1/models":
                self.send(200, json.dumps({"object": "list", "data": [{"id": "known-timings"}]}).encode())
            else:
                self.send(404, b'{"error":"not found"}')

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length) or b"{}")
            if slots is None:
                self.answer(request, time.monotonic())
                return
            with slots:
                self.answer(request, time.monotonic())

        def answer(self, request, arrived):
            if self.path not in ("/v1/chat/completions", "/v1/completions"):
                self.send(404, b'{"error":"not found"}')
                return
            chat = self.path == "/v1/chat/completions"
            prompt_tokens = len(json.dumps(request.get("messages") or request.get("prompt", "")).split())
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": args.tokens}
            if not request.get("stream"):
                time.sleep((args.ttft + (args.tokens - 1) * args.itl) / 1000)
                text = " ".join(f"t{i}" for i in range(args.tokens))
                choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
                self.send(200, json.dumps({"choices": [choice], "usage": usage}).encode())
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def event(payload):
                data = f"data: {payload}\n\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            try:
                for i in range(args.tokens):
                    due = arrived + (args.ttft + i * args.itl) / 1000
                    time.sleep(max(0.0, due - time.monotonic()))
                    piece = f" t{i}"
                    choice = {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
                    event(json.dumps({"choices": [choice]}))
                event(json.dumps({"choices": [], "usage": usage}))
                event("[DONE]")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
