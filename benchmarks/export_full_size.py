"""Issue 3 speed targets on a full-size BasisNet-MV3, measured side by side in one run.

Model: MV3-Small 1.0x128 LM, 16 bases of MV3-Large 1.0x224, L8-L15 non-shared, 1000
classes, random init (timing only; accuracy figures from this model mean nothing), with BN
statistics set from real images so activations have trained-like scales (_random_init.py).
Latency: LiteRT 2.3.0 interpreter, XNNPACK, 1 thread, batch 1, median of --runs invokes
after --warmup. Writes benchmarks/results/export_full_size.json.

    .venv/bin/python benchmarks/export_full_size.py [--runs 50] [--warmup 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from basisnet_deploy.model import checkpoint
from basisnet_deploy.model.config import ArchConfig, BasisNetConfig
from basisnet_deploy.data import Preprocessing
from basisnet_deploy.converters.base import Graph
from basisnet_deploy.converters.tflite import TFLiteExporter
from basisnet_deploy.runtime.deployment import Deployment
from basisnet_deploy.export.pipeline import ExportOptions, export
from basisnet_deploy.model.network import BasisNet, build_plain
from basisnet_deploy.runtime.sessions import LiteRTSession
from basisnet_deploy.artifacts.synthesis import synthesize

from _bench_utils import logits_endpoint, median_ms

OUT = Path(__file__).parent / "results" / "export_full_size.json"


def _normalize(net, arch):
    """Trained-like activation scales for the random-init net (see _random_init.py)."""
    from _random_init import normalize_bn

    from basisnet_deploy.data import digits, preprocess

    images = digits().images[:16]
    pre = Preprocessing(resize="squash")
    normalize_bn(net.lightweight, np.stack([preprocess(im, arch.light_resolution, pre) for im in images]))
    coeff = np.full((len(images), len(arch.nonshared_blocks), arch.bases), 1.0 / arch.bases, np.float32)
    normalize_bn(net.specialist, [np.stack([preprocess(im, arch.resolution, pre) for im in images]), coeff])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--calibration-size", type=int, default=100)
    ap.add_argument("--work", default="runs/bench-full",
                    help="where the checkpoint and exports are kept (pipelining bench reuses them)")
    args = ap.parse_args()
    arch = ArchConfig()  # the paper's BasisNet-MV3 preset
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    net = BasisNet(arch)
    _normalize(net, arch)
    cfg = BasisNetConfig(arch, Preprocessing(resize="squash"), tuple(f"c{i}" for i in range(1000)),
                         {"note": "random init, for timing only"})
    ckpt = checkpoint.save(work / "ckpt", net, cfg)

    results = {"model": "BasisNet-MV3: MV3-S 1.0x128 LM, MV3-L 1.0x224 specialist, K=16, L8-L15",
               "machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "runtime": "ai-edge-litert interpreter, XNNPACK, 1 thread", "runs": args.runs}
    manifests = {}
    for target in ("tflite", "onnx"):
        t = time.perf_counter()
        manifests[target] = export(ckpt, work / f"{target}-int8", ExportOptions(min_agreement=0.0,  # random init: timing only
            target=target, calibration="digits", calibration_size=args.calibration_size,
            verify_images=8, images="digits")).to_json()
        results[f"export_seconds_{target}_int8"] = round(time.perf_counter() - t, 1)
    results["export_seconds_both_int8"] = round(
        results["export_seconds_tflite_int8"] + results["export_seconds_onnx_int8"], 1)
    t = time.perf_counter()
    export(ckpt, work / "tflite-f32", ExportOptions(min_agreement=0.0, target="tflite", verify_images=8, images="digits"))
    results["export_seconds_tflite_float"] = round(time.perf_counter() - t, 1)

    # Plain MV3-Large of the specialist's shape, int8 with the same calibration images.
    from basisnet_deploy.calibration.images import calibration_images
    from basisnet_deploy.calibration.reader import FeedReader
    from basisnet_deploy.data import preprocess
    import tensorflow as tf

    from _random_init import normalize_bn

    from basisnet_deploy.model.layers import hard_swish_decomposed

    cal = calibration_images("digits", args.calibration_size)
    feeds = [{"image": preprocess(im, 224, cfg.preprocessing)[None]} for im in cal.images]
    plain_models = {}
    for q, decomposed in (("float", False), ("int8", True)):  # as export treats each
        plain = build_plain("mv3-large", 1.0, 224, 1000,
                            hard_swish=hard_swish_decomposed if decomposed else None)
        if q == "int8":
            plain.set_weights(plain_models["float"].get_weights())
        else:
            normalize_bn(plain, np.concatenate([f["image"] for f in feeds[:16]]))
        plain_models[q] = plain
    graphs = {q: Graph("plain", m, logits_endpoint(m), [tf.TensorSpec([1, 224, 224, 3], tf.float32, name="image")],
                       ["logits"]) for q, m in plain_models.items()}
    plain_int8 = TFLiteExporter().convert(graphs["int8"], "int8", FeedReader(feeds))
    plain_f32 = TFLiteExporter().convert(graphs["float"], "float32")

    rng = np.random.default_rng(0)
    x224 = rng.random((1, 224, 224, 3), np.float32) * 2 - 1
    x128 = rng.random((1, 128, 128, 3), np.float32) * 2 - 1
    coeff = rng.dirichlet(np.ones(16), size=8).astype(np.float32)
    lat = {}

    for q, d in (("int8", work / "tflite-int8"), ("float", work / "tflite-f32")):
        lm = LiteRTSession(d / "lightweight.tflite")
        lat[f"lightweight_{q}"] = median_ms(lambda: lm.run({"image": x128}), args.warmup, args.runs)
        co = LiteRTSession(d / "specialist_coefficient.tflite")
        lat[f"specialist_coefficient_{q}"] = median_ms(
            lambda: co.run({"image": x224, "coefficients": coeff[None]}), args.warmup, args.runs)
        p = Deployment(d).presynth()
        template, table, bases = p.template, p.table, p.bases
        model = synthesize(template, table, bases, coeff)
        ps = LiteRTSession(model)
        lat[f"specialist_presynth_{q}"] = median_ms(lambda: ps.run({"image": x224}), args.warmup, args.runs)
        if q == "int8":
            lat["synthesize_int8"] = median_ms(lambda: synthesize(template, table, bases, coeff),
                                               2, max(5, args.runs // 5))
            lat["synthesize_plus_recreate_int8"] = median_ms(
                lambda: LiteRTSession(synthesize(template, table, bases, coeff)), 2, max(5, args.runs // 5))
    for q, data in (("int8", plain_int8), ("float", plain_f32)):
        s = LiteRTSession(data)
        lat[f"plain_mv3_large_{q}"] = median_ms(lambda: s.run({"image": x224}), args.warmup, args.runs)
    results["latency_ms_median"] = {k: round(v, 3) for k, v in lat.items()}
    results["ratios"] = {
        "presynth_int8_vs_plain_int8 (target <= 1.10)":
            lat["specialist_presynth_int8"] / lat["plain_mv3_large_int8"],
        "synthesize_plus_recreate_vs_invoke_int8 (target <= 1.0)":
            lat["synthesize_plus_recreate_int8"] / lat["specialist_presynth_int8"],
        "coefficient_vs_presynth_float (target <= 1.5)":
            lat["specialist_coefficient_float"] / lat["specialist_presynth_float"],
        **{f"float_over_int8_{a} (target >= 1.3)": lat[f"{a}_float"] / lat[f"{a}_int8"]
           for a in ("lightweight", "specialist_presynth", "specialist_coefficient", "plain_mv3_large")},
    }
    results["ratios"] = {k: round(v, 3) for k, v in results["ratios"].items()}
    results["target_full_export_both_int8_seconds"] = 180
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
