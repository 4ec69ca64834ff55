"""Why is int8 slower than float here? The HARD_SWISH experiment (issue 3).

Plain MobileNetV3-Large 1.0x224 (1000 classes, random init with BN statistics set from real
images so activations have trained-like scales, see _random_init.py), exported to float32 and to full
int8 (calibrated on 100 digits images) three ways that differ only in the nonlinearity:

- ``hard_swish``: as the architecture says; the converter emits HARD_SWISH ops;
- ``relu``: every HS replaced by ReLU (a control: a different network, same shapes);
- ``hs_min_max``: ``x * min(max(x + 3, 0), 6) / 6``: the converter fuses it back into HARD_SWISH;
- ``hs_decomposed``: ``(x / 6) * relu6(x + 3)`` (``layers.hard_swish_decomposed``, what
  ``export`` now uses for TFLite int8): ADD, MUL, MUL, not fused.

For each it counts the XNNPACK partitions (DELEGATE nodes) and times one invoke (median,
LiteRT interpreter, XNNPACK, 1 thread), float and int8 side by side in one run.

    .venv/bin/python benchmarks/int8_hardswish.py --runs 40
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from _bench_utils import logits_endpoint, median_ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results/int8_hardswish.json")
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    from basisnet_deploy.model import layers
    from basisnet_deploy.model.network import network as model
    from basisnet_deploy.calibration.images import calibration_images
    from basisnet_deploy.calibration.reader import FeedReader
    from basisnet_deploy.data import Preprocessing
    from basisnet_deploy.converters.base import Graph
    from basisnet_deploy.converters.tflite import TFLiteExporter
    from basisnet_deploy.data import preprocess
    from basisnet_deploy.runtime.sessions import LiteRTSession
    from _random_init import normalize_bn

    def hs_min_max(x):
        return x * keras.ops.minimum(keras.ops.maximum(x + 3.0, 0.0), 6.0) * (1.0 / 6.0)

    variants = {"hard_swish": keras.activations.hard_swish, "relu": keras.activations.relu,
                "hs_min_max": hs_min_max, "hs_decomposed": layers.hard_swish_decomposed}
    cal = calibration_images("digits", 100)
    feeds = [{"image": preprocess(im, 224, Preprocessing())[None]} for im in cal.images]
    x = (np.random.default_rng(0).random((1, 224, 224, 3), np.float32) * 2 - 1)
    original = layers.activation
    results = {"model": "plain MobileNetV3-Large 1.0x224, 1000 classes, random init with BN "
                        "statistics from real images (_random_init.py)",
               "machine": f"{platform.machine()}, 2 cores",
               "runtime": "ai-edge-litert interpreter, XNNPACK, 1 thread", "runs": args.runs,
               "variants": {}}
    for name, fn in variants.items():
        model.activation = lambda code, fn=fn: fn if code == "HS" else original(code)
        keras.utils.set_random_seed(0)
        net = model.build_plain("mv3-large", 1.0, 224, 1000)
        model.activation = original
        normalize_bn(net, np.concatenate([f["image"] for f in feeds[:16]]))
        graph = Graph(name, net, logits_endpoint(net),
                      [tf.TensorSpec([1, 224, 224, 3], tf.float32, name="image")], ["logits"])
        row = {}
        for q, data in (("float", TFLiteExporter().convert(graph, "float32")),
                        ("int8", TFLiteExporter().convert(graph, "int8", FeedReader(feeds)))):
            s = LiteRTSession(data)
            ms = median_ms(lambda: s.run({"image": x}), args.warmup, args.runs)
            ops = [o["op_name"] for o in s.interpreter._get_ops_details()]  # delegated by now
            row[q] = {"ms": round(ms, 3), "xnnpack_partitions": ops.count("DELEGATE"),
                      "hard_swish_ops": ops.count("HARD_SWISH")}
        row["float_over_int8"] = round(row["float"]["ms"] / row["int8"]["ms"], 3)
        results["variants"][name] = row
        print(name, json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
