"""Issue 4 targets, measured side by side in one run: pipelined vs sequential throughput,
early termination, and a 20,000-frame soak. Writes benchmarks/results/runner_pipelining.json.

Needs `make demo` (runs/demo/export-tflite, threshold calibrated) and
benchmarks/export_full_size.py (runs/bench-full/tflite-int8).

    .venv/bin/python benchmarks/runner_pipelining.py [--frames 300] [--soak 20000]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from basisnet_deploy.runtime.backends import make_factory
from basisnet_deploy.common.jsonable import jsonable
from basisnet_deploy.report.bench import BenchOptions, bench
from basisnet_deploy.data import digits
from basisnet_deploy.runtime.deployment import Deployment
from basisnet_deploy.runtime.runner import ResynthesisPolicy, RunnerOptions, TwoStageRunner

OUT = Path(__file__).parent / "results" / "runner_pipelining.json"


def rss_mb() -> float:
    # Current RSS from /proc (ru_maxrss is a peak and cannot show growth).
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--soak", type=int, default=20000)
    args = ap.parse_args()
    results = {"runtime": "ai-edge-litert interpreter, XNNPACK, 1 thread per stage"}

    # 1. Pipelining with no early exit, so both stages work on every frame.
    # The "shared" row gives the pre-synthesized form a tolerance of 1 (every softmax
    # coefficient set is within 1 of every other), so one synthesized model serves all frames:
    # pure pipelining, without the per-frame synthesis that tolerance 0 pays.
    runs = [("demo", "runs/demo/export-tflite", "presynth", None),
            ("demo", "runs/demo/export-tflite", "coefficient", None),
            ("full_size", "runs/bench-full/tflite-int8", "presynth", None),
            ("full_size", "runs/bench-full/tflite-int8", "presynth_shared", ResynthesisPolicy(1.0)),
            ("full_size", "runs/bench-full/tflite-int8", "coefficient", None)]
    for name, directory, form, policy in runs:
        r = jsonable(bench(directory, BenchOptions(
            form=form.split("_")[0], threshold=2.0, frames=args.frames, warmup=20,
            policy=policy or ResynthesisPolicy())))
        seq, pipe = r["runners"]["sequential"], r["runners"]["pipelined"]
        results[f"{name}_{form}_no_exit"] = {
            "light_p50_ms": r["stages"]["lightweight"]["latency_ms"]["p50"],
            "specialist_p50_ms": r["stages"]["specialist"]["latency_ms"]["p50"],
            "stage_bound_fps": r["stage_bound_fps"],
            "sequential_fps": seq["throughput_fps"], "pipelined_fps": pipe["throughput_fps"],
            "pipelined_over_stage_bound (target >= 0.9)": round(pipe["throughput_fps"] / r["stage_bound_fps"], 3),
            "pipelined_over_sequential (target >= 1.3)": r["pipelined_vs_sequential"],
            "resyntheses": pipe["resyntheses"]}

    # 2. Early termination with the calibrated threshold (demo, held-out digits).
    manifest = json.loads(Path("runs/demo/export-tflite/manifest.json").read_text())
    results["early_exit_calibrated"] = manifest["early_exit"]

    # 3. Soak: 20,000 frames through the pipelined runner, RSS after warm-up vs at the end.
    dep = Deployment("runs/demo/export-tflite")
    imgs = digits().images
    frames = [dep.frame(im) for im in imgs[:500]]
    f = make_factory("litert", "xnnpack")
    runner = TwoStageRunner(dep, f, f, RunnerOptions(threshold=dep.threshold, form="presynth", mode="pipelined"))
    rss, expected, lost, reordered = {}, 0, 0, 0
    t = time.perf_counter()
    for r in runner.run(frames[i % len(frames)] for i in range(args.soak)):
        if r.index != expected:
            reordered += 1
        expected = r.index + 1
        if r.index == 1000:
            rss["after_warmup_mb"] = round(rss_mb(), 1)
    lost = args.soak - expected
    rss["end_mb"] = round(rss_mb(), 1)
    results["soak"] = {"frames": args.soak, "seconds": round(time.perf_counter() - t, 1),
                       "lost": lost, "reordered": reordered, **rss,
                       "rss_growth (target < 0.05)": round(rss["end_mb"] / rss["after_warmup_mb"] - 1, 4),
                       "resyntheses": runner.resyntheses}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
