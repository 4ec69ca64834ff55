"""Helpers the benchmark scripts share."""

from __future__ import annotations

import statistics
import time


def median_ms(fn, warmup: int, runs: int) -> float:
    """Median wall time of ``fn()`` in ms over ``runs`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def logits_endpoint(model):
    """A Graph function for a plain classifier: image -> {"logits": ...}."""
    return lambda image: {"logits": model(image, training=False)}


def recorded() -> dict:
    """Where and when a result was measured: UTC date, the command line, the machine, the
    CPU's model and SIMD flags (scripts/gen_benchmark_pages.py shows them beside each figure)
    and the load average when this is called (1, 5, 15 minutes; it counts the benchmark's own
    process too, so on 2 cores a single-threaded benchmark alone reads about 1; left out where
    the platform has none)."""
    import datetime
    import os
    import platform
    import sys

    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    simd = [f for f in ("sse4_2", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]
    try:
        load = {"load_average": [round(x, 2) for x in os.getloadavg()]}
    except (AttributeError, OSError):  # no getloadavg (Windows) or none readable
        load = {}
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "command": " ".join(["python", *sys.argv]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "cpu": f"{cpu}; flags: {' '.join(simd) or 'no SSE4.2, AVX2 or AVX-512'}", **load}


def write_result(result: dict, json_out: str | None) -> None:
    """Print the result as JSON and, with ``json_out``, write the same text there, with a
    ``recorded`` block (``recorded()``) unless the result has one."""
    import json
    from pathlib import Path

    result = {**result, "recorded": result.get("recorded") or recorded()}
    text = json.dumps(result, indent=2)
    if json_out:
        Path(json_out).write_text(text + "\n")
    print(text)


def run_child(cmd: list[str]) -> tuple[str, float, float]:
    """Run ``cmd`` in a child process: its stdout, peak RSS in MB (``os.wait4``'s
    ru_maxrss) and wall seconds. A non-zero exit stops the benchmark, naming the command."""
    import os
    import subprocess

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"failed (status {status}): {' '.join(cmd)}")
    return stdout, round(usage.ru_maxrss / 1024, 1), round(time.perf_counter() - start, 1)
