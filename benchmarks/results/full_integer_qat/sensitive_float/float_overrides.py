"""Experiment: the static int8 LM (the `full` recipe's) with the N ops that add the most error
on the calibration images kept in float (TF's QuantizationDebugger denylist, by tensor name),
scored on the held-out photos.

    .venv/bin/python benchmarks/results/full_integer_qat/sensitive_float/float_overrides.py \
        CKPT PHOTOS [--counts 0,2,4,8,16] [--tuned] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import fidelity_photos as fp  # noqa: E402


def with_float_nodes(graph, names, calibration, feeds_for_debugger) -> bytes:
    import tensorflow as tf

    from basisnet_deploy.converters.tflite import saved_model_converter

    with tempfile.TemporaryDirectory() as tmp:
        conv = saved_model_converter(graph, tmp)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = calibration
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        if not names:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            return conv.convert()
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(names))
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=conv, debug_dataset=feeds_for_debugger, debug_options=options)
        return debugger.get_nondebug_quantized_model()


def float_op_count(model: bytes) -> int:
    """Ops that read or write a float32 tensor (the model's own float input and outputs aside)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    count = 0
    for graph in obj.subgraphs:
        ends = set(graph.inputs) | set(graph.outputs)
        for op in graph.operators:
            tensors = [t for t in list(op.inputs) + list(op.outputs) if t >= 0 and t not in ends]
            count += any(graph.tensors[t].type == schema.TensorType.FLOAT32 for t in tensors)
    return count


def _block_order(block: str):
    return (0, 0) if block == "stem" else (1, int(block[1:])) if block[1:].isdigit() else (2, block)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("photos")
    ap.add_argument("--counts", default="0,2,4,8,16")
    ap.add_argument("--tuned", action="store_true", help="the LM's int8 weights tuned first")
    ap.add_argument("--report-images", type=int, default=64)
    ap.add_argument("--blocks", action="store_true",
                    help="instead of the top N: each block's tensors in float, one block at a time")
    ap.add_argument("--json")
    args = ap.parse_args()

    from basisnet_deploy.converters import get_exporter
    from basisnet_deploy.converters.tflite import float_ops
    from basisnet_deploy.export.layer_report import layer_errors

    s = fp.Setup(args.ckpt, args.photos, 200, decompose=True)
    ex = get_exporter("tflite")
    graph = fp.tuned_lm_graph(s) if args.tuned else s.graph("lightweight", "int8")
    # the float twin of the graph that is quantized (same tensor names): with --tuned, the
    # tuned weights in float, so the report ranks what the int8 activations add
    float_model = ex.convert(graph, "float32")
    int8_model = ex.convert(graph, "int8", fp.reader(s.lm_feeds()))
    rows = layer_errors(float_model, int8_model, s.lm_feeds()[:args.report_images])
    ranked = [r["tensor"] for r in sorted(rows, key=lambda r: -r["added"])]
    names = [spec.name for spec in graph.inputs]
    debug_feeds = lambda: ([f[n] for n in names] for f in s.lm_feeds())  # noqa: E731
    out = {"args": vars(args), "heldout_images": len(s.labels), "ranked": rows, "runs": []}
    if args.blocks:  # lm_stem, lm_L1_, ..., lm_head0_: each block's tensors together
        blocks = sorted({name.split("/")[1].split("_")[1] for name in ranked if name.count("/") > 1
                         and name.split("/")[1].startswith("lm_")}, key=_block_order)
        selections = [(b, [n for n in ranked if n.count("/") > 1 and n.split("/")[1].split("_")[1] == b])
                      for b in blocks]
    else:
        selections = [(str(n), ranked[:n]) for n in (int(c) for c in args.counts.split(","))]
    for label, chosen in selections:
        t = time.perf_counter()
        model = with_float_nodes(graph, chosen, fp.reader(s.lm_feeds()), debug_feeds)
        row, _ = fp.run_lm(s, model, ".tflite")
        row.update(selection=label, float_nodes=len(chosen), names=chosen, float_op_types=sorted(float_ops(model)), float_op_count=float_op_count(model),
                   seconds=round(time.perf_counter() - t, 1))
        print(json.dumps({k: v for k, v in row.items() if k != "names"}), flush=True)
        out["runs"].append(row)
    from _bench_utils import recorded

    out["recorded"] = recorded()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
