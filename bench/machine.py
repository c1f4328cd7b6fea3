"""What a bench prints first: the CPU it ran on, with the SIMD flags that decide its speed (a
figure from another machine proves nothing)."""
import os
import re
from pathlib import Path


def cpu() -> str:
    """`AMD EPYC (2 cores; avx2 avx512f avx512_vnni)`."""
    info = Path("/proc/cpuinfo").read_text()
    name = re.search(r"model name\s*:\s*(.*)", info).group(1)
    flags = set(re.search(r"flags\s*:\s*(.*)", info).group(1).split())
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f in flags]
    return f"{name} ({os.cpu_count()} cores; {' '.join(simd)})"
