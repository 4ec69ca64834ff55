"""Latency of the lightweight model and the pre-synthesized specialist of several exports,
side by side in one run: what a recipe costs on this CPU.

Each export directory's LM and template (synthesized once, for one random coefficient set) is
opened with the product's session (LiteRT with XNNPACK, or onnxruntime's CPU provider; 1
thread, batch 1). Timing is interleaved: each round times every (export, artifact) for
``--runs`` invokes, and the figure is the median over rounds of the per-round medians, so a
change in load falls on all exports alike. Ratios are to the first export given.

    .venv/bin/python benchmarks/export_latency.py NAME=DIR [NAME=DIR ...] [--rounds 5]
        [--runs 30] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARTIFACTS = ("lightweight", "specialist_presynth")


def sessions(directory: Path) -> dict:
    """artifact -> (session, feed) for an export's LM and template."""
    from basisnet_deploy.artifacts.synthesis import synthesize
    from basisnet_deploy.runtime.deployment import Deployment
    from basisnet_deploy.runtime.sessions import open_session

    dep = Deployment(directory)
    rng = np.random.default_rng(0)
    x_light = rng.random((1, dep.light_resolution, dep.light_resolution, 3), np.float32) * 2 - 1
    x = rng.random((1, dep.resolution, dep.resolution, 3), np.float32) * 2 - 1
    p = dep.presynth()
    coeff = rng.dirichlet(np.ones(p.bases[p.table[0].layer].shape[0]),
                          size=1 + max(t.slot for t in p.table)).astype(np.float32)
    return {"lightweight": (open_session(dep.path("lightweight"), model=dep.model("lightweight")),
                            {"image": x_light}),
            "specialist_presynth": (open_session(p.path, model=synthesize(p.template, p.table, p.bases, coeff)),
                                    {"image": x})}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("exports", nargs="+", help="NAME=DIR, the first is the baseline")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    dirs = dict(e.split("=", 1) for e in args.exports)
    opened = {name: sessions(Path(d)) for name, d in dirs.items()}
    rounds = {(n, a): [] for n in opened for a in ARTIFACTS}
    for _ in range(args.rounds):
        for name, arts in opened.items():
            for art, (session, feed) in arts.items():
                session.run(feed)  # warm
                times = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    session.run(feed)
                    times.append((time.perf_counter() - t) * 1e3)
                rounds[(name, art)].append(statistics.median(times))
    base = next(iter(opened))
    ms = {name: {a: round(statistics.median(rounds[(name, a)]), 3) for a in ARTIFACTS} for name in opened}
    out = {"command": " ".join(sys.argv), "machine": platform.processor() or platform.machine(),
           "threads": 1, "rounds": args.rounds, "runs": args.runs, "exports": dirs,
           "quantization": {n: {a: json.loads((Path(d) / "manifest.json").read_text())["artifacts"][a]["quantization"]
                                for a in ARTIFACTS} for n, d in dirs.items()},
           "median_ms": ms,
           f"ratio_to_{base}": {n: {a: round(ms[n][a] / ms[base][a], 2) for a in ARTIFACTS} for n in ms}}
    print(json.dumps(out, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
