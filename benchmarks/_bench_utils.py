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


def write_result(result: dict, json_out: str | None) -> None:
    """Print the result as JSON and, with ``json_out``, write the same text there."""
    import json
    from pathlib import Path

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
