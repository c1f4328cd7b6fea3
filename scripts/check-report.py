#!/usr/bin/env python3
"""Opens each HTML report given in a real browser (headless Chromium) and fails on a blank or
broken page: the page must load with no console error or uncaught exception, its DOM must hold
the report's parts (title, the latency charts as SVG with drawn lines, the tables), and a
screenshot of it must show a real page (enough non-background pixels, several colours).

Usage: scripts/check-report.py REPORT.html... (screenshots are written beside each report as
REPORT.png, to look at).
"""
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("check-report: no Chromium (Debian: apt-get install chromium)")


def run_browser(args: list[str]) -> subprocess.CompletedProcess:
    base = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run",
            "--enable-logging=stderr", "--v=0"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=120)


def png_pixels(path: Path) -> tuple[int, int, list[bytes], int]:
    """Width, height and RGB(A) rows of an 8-bit RGB or RGBA PNG (what Chromium writes)."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    at, idat, width, height, channels = 8, b"", 0, 0, 0
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            if depth != 8 or colour not in (2, 6):
                raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}")
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = previous[x]
            c = previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r) for r in rows], channels


def check(report: Path) -> list[str]:
    problems = []
    url = report.resolve().as_uri()
    dom = run_browser(["--virtual-time-budget=3000", "--dump-dom", url])
    html = dom.stdout
    console = [line for line in dom.stderr.splitlines()
               if "CONSOLE" in line and ("Uncaught" in line or ":ERROR" in line or "error" in line.lower())]
    if dom.returncode != 0:
        problems.append(f"Chromium exited {dom.returncode}: {dom.stderr[-500:]}")
    problems += [f"console: {line.strip()}" for line in console]
    for what, pattern in [
        ("a title", r"<title>[^<]+</title>"),
        ("a chart drawn as SVG", r"<svg[^>]*>.*?<(polyline|path)[^>]+>"),
        ("a table with rows", r"<table.*?<tr.*?<td"),
    ]:
        if not re.search(pattern, html, re.S):
            problems.append(f"the rendered page lacks {what}")
    shot = report.with_suffix(".png")
    taken = run_browser(["--window-size=1000,1400", f"--screenshot={shot}", url])
    if taken.returncode != 0 or not shot.exists():
        return problems + [f"no screenshot: {taken.stderr[-500:]}"]
    width, height, rows, channels = png_pixels(shot)
    background = rows[0][:channels]
    colours, drawn, total = set(), 0, 0
    for row in rows[::4]:
        for x in range(0, width * channels, channels * 4):
            pixel = row[x:x + channels]
            total += 1
            if pixel != background:
                drawn += 1
                colours.add(pixel)
    share = drawn / max(total, 1)
    print(f"check-report: {report.name}: {width}x{height} screenshot, {share:.1%} drawn, "
          f"{len(colours)} colours -> {shot}")
    if share < 0.01:
        problems.append(f"the screenshot is blank: {share:.1%} of it differs from the background")
    if len(colours) < 8:
        problems.append(f"the screenshot has {len(colours)} colours: text and charts are missing")
    return problems


def main() -> None:
    reports = [Path(p) for p in sys.argv[1:]]
    if not reports:
        sys.exit(__doc__)
    failed = False
    for report in reports:
        for problem in check(report):
            failed = True
            print(f"check-report: {report}: {problem}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
