"""Issue #10: what each int8 recipe costs in latency, at full size, side by side in one run.

The full-size BasisNet-MV3 checkpoint (MV3-Small 1.0x128 LM, MV3-L 1.0x224 specialist, K=16,
L8-L15; random init with BN set from real images, so timing only) is exported to TFLite three
times: float32, ``--int8-recipe full`` (static int8) and ``--int8-recipe fidelity`` (float32
LM, weight-only int8 template, dynamic-range coefficient-input specialist). Each artifact is then timed with the LiteRT interpreter (XNNPACK, 1
thread, batch 1): LM, pre-synthesized specialist (synthesized once), coefficient-input
specialist. Timing is interleaved: each round times every (recipe, artifact) once for
``--runs`` invokes, and the figure is the median over rounds of the per-round medians, so a
change in load falls on all recipes alike.

    .venv/bin/python benchmarks/recipe_latency_full.py --ckpt benchmarks/runs/bench-exact/ckpt \
        --json benchmarks/results/recipe_latency_full.json

``--target onnx`` does the same for ONNX exports in onnxruntime (CPU execution provider, 1
intra-op thread): float32, QDQ int8 (``full``) and the ``fidelity`` recipe (float32 LM,
``quantize_dynamic`` bases in the coefficient-input specialist, weight-only int8 template)
(``results/recipe_latency_full_onnx.json``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bench_utils import median_ms, write_result  # noqa: E402

RECIPES = {"float32": {"quantize": "float32"},
           "int8 full": {"calibration": "digits", "int8_recipe": "full"},
           "int8 fidelity": {"calibration": "digits", "int8_recipe": "fidelity"}}
ARTIFACTS = ("lightweight", "specialist_presynth", "specialist_coefficient")


def export_all(ckpt: Path, work: Path, target: str, reuse: bool) -> dict[str, Path]:
    """One export per recipe (min_agreement 0: a random-init model, timing only); with
    ``reuse``, an export this script already wrote under ``work`` is kept."""
    import shutil

    from basisnet_deploy.export.pipeline import ExportOptions, export

    out = {}
    for name, options in RECIPES.items():
        directory = work / f"{target}-{name.replace(' ', '-')}"
        if reuse and (directory / "manifest.json").is_file():
            out[name] = directory
            continue
        shutil.rmtree(directory, ignore_errors=True)
        t = time.perf_counter()
        export(ckpt, directory, ExportOptions(target=target, calibration_size=100, verify_images=8,
                                              images="digits", min_agreement=0.0, **options))
        print(f"exported {name} in {time.perf_counter() - t:.0f} s", flush=True)
        out[name] = directory
    return out


def sessions(directory: Path) -> dict:
    """name -> (session, feed) for the three artifacts of one export."""
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
    model = synthesize(p.template, p.table, p.bases, coeff)
    return {"lightweight": (open_session(dep.path("lightweight"), model=dep.model("lightweight")), {"image": x_light}),
            "specialist_presynth": (open_session(p.path, model=model), {"image": x}),
            "specialist_coefficient": (open_session(dep.path("specialist_coefficient"),
                                                       model=dep.model("specialist_coefficient")),
                                       {"image": x, "coefficients": coeff[None]})}


def exports_made(dirs: dict[str, Path]) -> dict:
    """What each timed export holds, from its manifest: every artifact's quantization and
    hard-swish form (so a --reuse'd export made by another recipe shows)."""
    import json

    out = {}
    for name, directory in dirs.items():
        m = json.loads((directory / "manifest.json").read_text())
        forms = m.get("hard_swish")  # one string for the whole export before session 8
        out[name] = {role: {"quantization": entry["quantization"],
                            "hard_swish": forms.get(role) if isinstance(forms, dict) else forms}
                     for role, entry in m["artifacts"].items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="benchmarks/runs/bench-exact/ckpt")
    ap.add_argument("--work", default="benchmarks/runs/recipe-latency")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--target", choices=("tflite", "onnx"), default="tflite")
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("--reuse", action="store_true", help="keep exports already under --work")
    args = ap.parse_args()
    dirs = export_all(Path(args.ckpt), Path(args.work), args.target, args.reuse)
    runs = {name: sessions(d) for name, d in dirs.items()}
    per_round = {(r, a): [] for r in RECIPES for a in ARTIFACTS}
    for _ in range(args.rounds):
        for artifact in ARTIFACTS:
            for recipe in RECIPES:
                session, feed = runs[recipe][artifact]
                per_round[recipe, artifact].append(median_ms(lambda: session.run(feed), 3, args.runs))
    median = {k: round(statistics.median(v), 3) for k, v in per_round.items()}
    table = {a: {r: median[r, a] for r in RECIPES} for a in ARTIFACTS}
    speedup = {a: {r: round(median["float32", a] / median[r, a], 3) for r in RECIPES if r != "float32"}
               for a in ARTIFACTS}
    result = {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
              "runtime": {"tflite": "ai-edge-litert interpreter, XNNPACK, 1 thread, batch 1",
                          "onnx": "onnxruntime, CPUExecutionProvider, 1 intra-op thread, batch 1"}[args.target],
              "model": "BasisNet-MV3 (random init, timing only)", "rounds": args.rounds,
              "runs_per_round": args.runs, "median_ms": table, "float_over_recipe": speedup,
              "load_after": round(os.getloadavg()[0], 1), "exports": exports_made(dirs)}
    write_result(result, args.json_out)


if __name__ == "__main__":
    main()
