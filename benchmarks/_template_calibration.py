"""Experiment (benchmarks only, not a recipe): an int8 template whose activation ranges cover
the kernels synthesized per image.

The pre-synthesized specialist is one static-weight template; on a device synthesize()
writes a new kernel set for every coefficient set, but the template's activation scales are
fixed at export. Calibrating the template with one kernel set (the mean coefficients) gives
ranges that per-image kernels exceed, and int8 clips them. Here the TF converter's own two
steps are split open:

1. calibrate only (``_experimental_calibrate_only``): the float template with the
   converter's min/max per tensor, from the mean-coefficient kernels over all images;
2. for each calibration image, its own coefficients' kernels are synthesized into that
   float model (the float patch table, found by content as for any template) and the model
   is run on that image with every tensor kept; each tensor's min/max widens to cover it;
3. the widened ranges are written back and the converter's quantizer (``mlir_quantize``,
   what ``convert()`` calls after calibrating) quantizes the model with them.

The weights quantized in step 3 are the mean-coefficient kernels, which synthesize()
replaces anyway; only the activation ranges matter.
"""

from __future__ import annotations

import numpy as np

from basisnet_deploy.converters.base import ExportError


def observed_ranges(model: bytes, feeds, kernel_sets, table, bases) -> dict[int, tuple[float, float]]:
    """tensor index -> (min, max) over every feed run with its own synthesized kernels."""
    from ai_edge_litert.interpreter import Interpreter

    from basisnet_deploy.artifacts.synthesis import synthesize

    lo: dict[int, float] = {}
    hi: dict[int, float] = {}
    for feed, coeff in zip(feeds, kernel_sets):
        it = Interpreter(model_content=synthesize(model, table, bases, coeff),
                         experimental_preserve_all_tensors=True)
        it.allocate_tensors()
        for d in it.get_input_details():
            it.set_tensor(d["index"], next(v for k, v in feed.items() if k in d["name"]))
        it.invoke()
        for d in it.get_tensor_details():
            if d["dtype"] != np.float32:
                continue
            try:
                v = it.get_tensor(d["index"])
            except ValueError:
                continue
            if v is None or v.size == 0:
                continue
            i = d["index"]
            lo[i] = min(lo.get(i, np.inf), float(v.min()))
            hi[i] = max(hi.get(i, -np.inf), float(v.max()))
    return lo and {i: (lo[i], hi[i]) for i in lo}


def widen_ranges(calibrated: bytes, ranges: dict[int, tuple[float, float]]) -> tuple[bytes, int]:
    """The calibrated model with each recorded min/max widened by ``ranges``; (model, widened)."""
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    widened = 0
    for index, tensor in enumerate(obj.subgraphs[0].tensors):
        q = tensor.quantization
        if q is None or q.min is None or q.max is None or len(q.min) != 1 or index not in ranges:
            continue  # constants and tensors the calibrator did not record
        lo, hi = ranges[index]
        new_lo, new_hi = min(float(q.min[0]), lo), max(float(q.max[0]), hi)
        if new_lo < q.min[0] or new_hi > q.max[0]:
            widened += 1
        q.min, q.max = [new_lo], [new_hi]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj)), widened


def convert_template(conv, graph, calibration, folded, baked, coefficients) -> tuple[bytes, dict]:
    """(int8 template, report) for ``conv`` set up as an int8 conversion of ``graph``.

    ``calibration`` is the representative dataset (feeds by name) and ``coefficients`` [N, L, K]
    the LM's coefficients of the same N images, in the same order.
    """
    from tensorflow.lite.python.convert import mlir_quantize

    from basisnet_deploy.converters.tflite import unshare_buffers as _unshare_buffers
    from basisnet_deploy.converters.tflite_patch import locate
    from basisnet_deploy.artifacts.synthesis import mix

    conv._experimental_calibrate_only = True
    try:
        calibrated = _unshare_buffers(conv.convert())
    except Exception as e:
        raise ExportError(f"{graph.name}: TFLite calibration failed: {str(e).strip().splitlines()[0]}") from e
    expected = {name: (f.kind, f.slot, mix(f.bases, baked[f.slot])) for name, f in folded.items()}
    table = locate(calibrated, expected)
    bases = {name: f.bases for name, f in folded.items()}
    feeds = list(calibration())
    if len(feeds) != len(coefficients):
        raise ExportError(f"{graph.name}: {len(feeds)} calibration feeds, {len(coefficients)} coefficient sets")
    ranges = observed_ranges(calibrated, feeds, coefficients, table, bases)
    widened_model, widened = widen_ranges(calibrated, ranges)
    model = mlir_quantize(widened_model, False)
    return model, {"activation_ranges": "per-image synthesized kernels",
                   "images": len(feeds), "tensors_widened": widened}
