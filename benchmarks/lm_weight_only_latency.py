"""Issue #10: what the ``fidelity-int8-lm`` recipe's weight-only int8 lightweight model costs
in latency at full size, against the float32 LM of ``fidelity``, side by side in one run.

The full-size LM (MV3-Small 1.0x128 of the default ArchConfig; random init with BN set from
real images, as export_full_size.py: timing only) is converted four times: TFLite float32 and
weight-only int8 (ai-edge-quantizer, what the recipe writes) and ONNX float32 and weight-only
int8. Weight tuning changes int8 values, not ops or dtypes, so nearest rounding is timed.
Each model runs 1 thread, batch 1 (LiteRT with XNNPACK; onnxruntime's CPU provider).
Timing is interleaved: each round times every model once for ``--runs`` invokes; the figure
is the median over rounds of the per-round medians.

    .venv/bin/python benchmarks/lm_weight_only_latency.py --json benchmarks/results/lm_weight_only_latency.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bench_utils import median_ms, write_result  # noqa: E402

MODELS = (("tflite", "float32"), ("tflite", "weight_only"), ("onnx", "float32"), ("onnx", "weight_only"))


def lm_graph():
    """The full-size LM graph, BN statistics from real images."""
    from export_full_size import _normalize

    from basisnet_deploy.data import Preprocessing
    from basisnet_deploy.export.pipeline import _graphs
    from basisnet_deploy.model.config import ArchConfig, BasisNetConfig
    from basisnet_deploy.model.network import BasisNet

    arch = ArchConfig()
    net = BasisNet(arch)
    _normalize(net, arch)
    cfg = BasisNetConfig(arch, Preprocessing(resize="squash"), tuple(f"c{i}" for i in range(1000)), {})
    baked = np.full((len(arch.nonshared_blocks), arch.bases), 1 / arch.bases, np.float32)
    return _graphs(net, cfg, baked)["lightweight"], arch.light_resolution


def main() -> None:
    from basisnet_deploy.converters import get_exporter
    from basisnet_deploy.runtime.sessions import open_session

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    graph, r = lm_graph()
    image = np.random.default_rng(0).uniform(-1, 1, (1, r, r, 3)).astype(np.float32)
    sessions, sizes = {}, {}
    for target, scheme in MODELS:
        ex = get_exporter(target)
        model = ex.convert(graph, scheme)
        sizes[f"{target} {scheme}"] = len(model)
        sessions[f"{target} {scheme}"] = open_session(f"lm{ex.suffix}", model=model)
    per_round = {name: [] for name in sessions}
    for _ in range(args.rounds):
        for name, session in sessions.items():
            per_round[name].append(median_ms(lambda: session.run({"image": image}), 5, args.runs))
    ms = {name: round(statistics.median(v), 3) for name, v in per_round.items()}
    write_result({"command": " ".join(sys.argv), "machine": platform.processor() or platform.machine(),
                  "cpus": os.cpu_count(), "rounds": args.rounds, "runs": args.runs,
                  "median_ms": ms, "bytes": sizes,
                  "float_over_weight_only": {t: round(ms[f"{t} float32"] / ms[f"{t} weight_only"], 3)
                                             for t in ("tflite", "onnx")}}, args.json_out)


if __name__ == "__main__":
    main()
