"""Probe: exact per-frame BasisNet with two worker processes instead of pipeline threads.

LiteRT holds the GIL while it prepares an interpreter (about 5 ms for each re-synthesized
full-size specialist), so the threaded runner's stages stall one another. This probe asks
what the GIL costs: the LM runs in the main process, and two worker processes each take
every other frame through synthesis, session preparation and the specialist (frame-level
parallelism, no GIL shared). Not a runner mode: a measurement for docs/runtime.md.

    .venv/bin/python benchmarks/process_parallel_probe.py --rounds 2 \\
        --json benchmarks/results/process_parallel_probe.json

Uses the full-size export of ``exact_basisnet.py`` (run that first). Per round and bases kind,
one after another on the same frames: the plain MV3-L alone (frames/s), the threaded
pipelined runner, then the two-process exact BasisNet; each ratio to the plain network.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from pathlib import Path

import numpy as np

EXPORT = Path(__file__).parent / "runs" / "bench-exact" / "tflite-int8"


def worker(export_dir: str, bases: str, conn) -> None:
    """Frames in, logits out: synthesize, open and run the specialist for each."""
    from basisnet_deploy.runtime.backends import make_factory
    from basisnet_deploy.runtime.deployment import Deployment
    from basisnet_deploy.runtime.synthesizer import model_bytes_fn

    dep = Deployment(export_dir)
    presynth = dep.presynth()
    model_bytes = model_bytes_fn(presynth, dep.compact_bases() if bases == "int8" else None)
    factory = make_factory("litert", "xnnpack")
    conn.send("ready")
    while (message := conn.recv()) is not None:
        index, coefficients, image = message
        session = factory(presynth.path, model_bytes(coefficients))
        conn.send((index, np.asarray(session.run({"image": image})["logits"])[0]))


def two_processes(export_dir: Path, frames, bases: str, window: int = 4) -> float:
    """Frames/s of LM (here) + two workers, at most ``window`` frames in flight."""
    from basisnet_deploy.artifacts.manifest import Role
    from basisnet_deploy.runtime.backends import make_factory
    from basisnet_deploy.runtime.deployment import Deployment

    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for _ in range(2):
        here, there = ctx.Pipe()
        procs.append(ctx.Process(target=worker, args=(str(export_dir), bases, there), daemon=True))
        procs[-1].start()
        pipes.append(here)
    for pipe in pipes:
        assert pipe.recv() == "ready"
    lm = Deployment(export_dir).session(make_factory("litert", "xnnpack"), Role.LIGHTWEIGHT)
    in_flight, answered = [], []
    start = time.perf_counter()
    for index, (light, full) in enumerate(frames):
        coefficients = np.asarray(lm.run({"image": light})["coefficients"], np.float32)[0]
        pipes[index % 2].send((index, coefficients, full))
        in_flight.append(index)
        if len(in_flight) >= window:
            oldest = in_flight.pop(0)
            answered.append(pipes[oldest % 2].recv()[0])
    for oldest in in_flight:
        answered.append(pipes[oldest % 2].recv()[0])
    fps = len(frames) / (time.perf_counter() - start)
    for pipe in pipes:
        pipe.send(None)
    for proc in procs:
        proc.join()
    assert answered == list(range(len(frames))), "frames lost or reordered"
    return fps


def threaded_fps(export_dir: Path, frames, bases: str) -> float:
    """The same frames through the threaded pipelined runner (what ``bench`` measures)."""
    from basisnet_deploy.runtime.backends import make_factory
    from basisnet_deploy.runtime.deployment import Deployment
    from basisnet_deploy.runtime.runner import ResynthesisPolicy, RunnerOptions, TwoStageRunner

    factory = make_factory("litert", "xnnpack")
    runner = TwoStageRunner(Deployment(export_dir), factory, factory, RunnerOptions(
        threshold=None, form="presynth", mode="pipelined", bases=bases,
        policy=ResynthesisPolicy(every=1)))
    start = time.perf_counter()
    answered = [result.index for result in runner.run(frames)]
    fps = len(frames) / (time.perf_counter() - start)
    assert answered == list(range(len(frames))), "frames lost or reordered"
    return fps


def plain_fps(export_dir: Path, frames) -> float:
    """The plain network alone over the frames: ``bench``'s own reference rate."""
    from basisnet_deploy.artifacts.manifest import Role
    from basisnet_deploy.report.bench import _baseline_fps
    from basisnet_deploy.runtime.backends import make_factory
    from basisnet_deploy.runtime.deployment import Deployment

    session = Deployment(export_dir).session(make_factory("litert", "xnnpack"), Role.BASELINE_PLAIN)
    return _baseline_fps(session, [{"image": full} for _, full in frames])


def main() -> None:
    from basisnet_deploy.data import digits
    from basisnet_deploy.runtime.deployment import Deployment

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", default=str(EXPORT))
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    export_dir = Path(args.export)
    dep = Deployment(export_dir)
    images = digits().images
    frames = [dep.frame(images[i % len(images)]) for i in range(args.frames)]
    rows = []
    for round_ in range(args.rounds):
        for bases in ("float32", "int8"):
            plain = plain_fps(export_dir, frames)
            threads = threaded_fps(export_dir, frames, bases)
            processes = two_processes(export_dir, frames, bases)
            rows.append({"round": round_, "bases": bases, "plain_fps": round(plain, 1),
                         "threads_fps": round(threads, 1), "two_process_fps": round(processes, 1),
                         "threads_ratio": round(threads / plain, 3),
                         "two_process_ratio": round(processes / plain, 3)})
            print(json.dumps(rows[-1]), flush=True)
    result = {"command": "python benchmarks/process_parallel_probe.py " + " ".join(
                  f"--{k} {v}" for k, v in (("rounds", args.rounds), ("frames", args.frames))),
              "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at end",
              "rows": rows,
              "median_ratio": {f"{b}/{kind}": statistics.median(r[f"{kind}_ratio"] for r in rows
                                                                  if r["bases"] == b)
                               for b in ("float32", "int8") for kind in ("threads", "two_process")}}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median_ratio"]))


if __name__ == "__main__":
    main()
