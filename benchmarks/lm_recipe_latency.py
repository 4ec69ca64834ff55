"""Issue #10: latency of the full-size LM (MV3-Small 1.0x128) under each TFLite recipe.

Random init with BN set from real images (_random_init.py; timing only), converted float32,
int8 (what export did), dynamic range (int8 weights, float activations), int16x8 and
int8 with float heads; LiteRT 2.3 interpreter, XNNPACK, 1 thread, batch 1, median of --runs.

    .venv/bin/python benchmarks/lm_recipe_latency.py [--runs 100] [--recipes ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np

from _bench_utils import median_ms

OUT = Path(__file__).parent / "results" / "lm_recipe_latency.json"


def _endpoint(model):
    """A graph function with only ``image`` as argument (ExportArchive traces its signature)."""
    def fn(image):
        out = model(image, training=False)
        return {"logits": out["logits"], "coefficients": out["coefficients"]}
    return fn


def main():
    import tensorflow as tf

    from _random_init import normalize_bn

    from basisnet_deploy.calibration.reader import FeedReader
    from basisnet_deploy.model.config import ArchConfig
    from basisnet_deploy.data import Preprocessing
    from basisnet_deploy.converters.base import Graph
    from basisnet_deploy.converters.tflite import TFLiteExporter
    from basisnet_deploy.data import digits, preprocess
    from basisnet_deploy.model.layers import hard_swish_decomposed
    from basisnet_deploy.model import build_lightweight
    from basisnet_deploy.runtime.sessions import LiteRTSession

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--recipes", default="float32,int8,dynamic,int16x8,int8_float_head")
    args = ap.parse_args()
    arch = ArchConfig()
    pre = Preprocessing(resize="squash")
    images = np.stack([preprocess(im, arch.light_resolution, pre) for im in digits().images[:64]])
    feeds = FeedReader([{"image": x[None]} for x in images])
    float_lm = build_lightweight(arch)
    normalize_bn(float_lm, images[:16])
    # as export builds int8 graphs (XNNPACK int8 hard-swish)
    int8_lm = build_lightweight(arch, hard_swish=hard_swish_decomposed)
    int8_lm.set_weights(float_lm.get_weights())
    spec = [tf.TensorSpec([1, arch.light_resolution, arch.light_resolution, 3], tf.float32, name="image")]
    x = images[:1]
    results = {"model": "MV3-Small 1.0x128 LM, random init (BN from digits)",
               "machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "runtime": "ai-edge-litert interpreter, XNNPACK, 1 thread", "runs": args.runs,
               "latency_ms_median": {}, "bytes": {}}
    from _research_schemes import convert as research_convert

    for recipe in args.recipes.split(","):
        m = float_lm if recipe == "float32" else int8_lm
        graph = Graph("lightweight", m, _endpoint(m), spec, ["logits", "coefficients"])
        data = research_convert(TFLiteExporter(), graph, recipe,
                                feeds if recipe not in ("float32", "dynamic") else None)
        s = LiteRTSession(data)
        results["latency_ms_median"][recipe] = round(median_ms(lambda: s.run({"image": x}), args.warmup, args.runs), 3)
        results["bytes"][recipe] = len(data)
        print(recipe, results["latency_ms_median"][recipe], flush=True)
    base = results["latency_ms_median"].get("float32")
    if base:
        results["float_over_recipe"] = {k: round(base / v, 3) for k, v in results["latency_ms_median"].items()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
