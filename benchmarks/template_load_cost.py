"""What one re-synthesis costs to load, per TFLite template scheme, at full size.

Each re-synthesis hands LiteRT a new model, and XNNPACK prepares it again: it packs the
weights, and for the weight-only int8 template (the ``fidelity`` recipe's since session 9) it
first turns every int8 weight back into float. The full-size checkpoint's template is
converted as float32, dynamic range (the fidelity recipe's until session 8) and weight-only
int8, one synthesized coefficient set is written into each, and each model is opened
(interpreter + XNNPACK) and invoked, interleaved over ``--rounds``; medians.

    .venv/bin/python benchmarks/template_load_cost.py --json benchmarks/results/template_load_cost.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bench_utils import write_result  # noqa: E402

SCHEMES = ("float32", "dynamic", "weight_only")


def synthesized_models(ckpt: str, seed: int) -> tuple[dict, dict]:
    """{scheme: synthesized model bytes} and the specialist's input feed."""
    from basisnet_deploy.artifacts.synthesis import synthesize
    from basisnet_deploy.converters.tflite import TFLiteExporter
    from basisnet_deploy.export.pipeline import _graphs, fold_bases
    from basisnet_deploy.model import checkpoint

    net, cfg = checkpoint.load(ckpt)
    a = cfg.architecture
    rng = np.random.default_rng(seed)
    baked = np.full((len(a.nonshared_blocks), a.bases), 1 / a.bases, np.float32)
    coefficients = rng.dirichlet(np.ones(a.bases), size=len(a.nonshared_blocks)).astype(np.float32)
    graph = _graphs(net, cfg, baked)["specialist_presynth"]
    exporter, folded = TFLiteExporter(), fold_bases(net.specialist)
    models = {}
    for scheme in SCHEMES:
        template = exporter.convert(graph, scheme)
        table, bases = exporter.patch_table(template, folded, baked, scheme)
        models[scheme] = synthesize(template, table, bases, coefficients)
    feed = {"image": rng.random((1, a.resolution, a.resolution, 3), np.float32)}
    return models, feed


def time_rounds(models: dict, feed: dict, rounds: int) -> dict:
    """{scheme: {open_ms, invoke_ms}}: medians over interleaved rounds."""
    from basisnet_deploy.runtime.sessions import open_session

    samples = {s: {"open_ms": [], "invoke_ms": []} for s in models}
    for _ in range(rounds):
        for scheme, model in models.items():
            t0 = time.perf_counter()
            session = open_session(Path(f"{scheme}.tflite"), model=model)
            t1 = time.perf_counter()
            session.run(feed)
            session.run(feed)  # warm
            t2 = time.perf_counter()
            session.run(feed)
            t3 = time.perf_counter()
            samples[scheme]["open_ms"].append((t1 - t0) * 1e3)
            samples[scheme]["invoke_ms"].append((t3 - t2) * 1e3)
    return {s: {k: round(statistics.median(v), 2) for k, v in m.items()} for s, m in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="benchmarks/runs/bench-exact/ckpt")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    models, feed = synthesized_models(args.ckpt, args.seed)
    result = {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
              "runtime": "ai-edge-litert interpreter, XNNPACK, 1 thread, batch 1",
              "rounds": args.rounds, "model_bytes": {s: len(m) for s, m in models.items()},
              "median": time_rounds(models, feed, args.rounds),
              "note": "invoke_ms is one invoke per round (the recipe_latency_full.py figures "
                      "are the steadier invoke measure)"}
    write_result(result, args.json_out)


if __name__ == "__main__":
    main()
