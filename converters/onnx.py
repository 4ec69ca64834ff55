"""ONNX exporter: tf2onnx (explicit input signature) + onnxruntime.quantization for int8.

- Float: ``tf2onnx.convert.from_function`` at opset 17; input and output names are the
  graph's ("image", "coefficients", "logits"). Every model passes ``onnx.checker``.
- Int8: ``quantize_static`` in QDQ format with a ``CalibrationDataReader``, per-channel for
  weights that are initializers. The coefficient-input specialist's synthesized W is a
  runtime tensor, so it gets per-tensor QDQ (QLinearConv tolerates its non-zero zero point).
- Pre-synthesis: tf2onnx folds BN into each conv initializer and stores it as raw bytes, so
  the patch table holds byte offsets into the serialized file and :func:`synthesize` works
  unchanged (no protobuf rebuild). Only float templates are patchable: int8 QDQ templates
  would need their weight, scale and bias initializers re-quantized, which is not built.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from basisnet_deploy.converters.base import ExportError, Graph
from basisnet_deploy.synthesis import Patch

OPSET = 17
# TFLite layout (what fold_bases gives) -> ONNX layout, per basis [K, ...].
TO_ONNX = {"conv": (0, 1, 4, 2, 3),  # [K, O, H, W, I] -> [K, O, I, H, W]
           "depthwise": (0, 4, 1, 2, 3)}  # [K, 1, H, W, C] -> [K, C, 1, H, W]


class OnnxExporter:
    target = "onnx"
    suffix = ".onnx"

    def __init__(self, input_type: str = "float32"):
        if input_type != "float32":  # a user mistake, reported before any work starts
            from basisnet_deploy.errors import UserError

            raise UserError("--input-type applies to TFLite; ONNX models take float32 input")

    def convert(self, graph: Graph, quantize: str, calibration=None) -> bytes:
        import onnx
        import tensorflow as tf
        import tf2onnx

        # tf2onnx logs every optional optimizer pass that does not apply, with a traceback,
        # as a warning; they are not failures and would bury the real output.
        logging.getLogger("tf2onnx").setLevel(logging.ERROR)
        # The graph functions have no Python control flow: skip autograph (and its warnings).
        fn = tf.function(tf.autograph.experimental.do_not_convert(graph.fn),
                         input_signature=graph.inputs)
        try:
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=graph.inputs, opset=OPSET)
        except Exception as e:
            raise ExportError(f"{graph.name}: tf2onnx failed: {str(e).strip().splitlines()[0]}") from e
        onnx.checker.check_model(proto)
        if quantize == "float32":
            return proto.SerializeToString()
        if quantize == "float16":
            raise ExportError("float16 is offered for TFLite only; use --quantize float32 or int8")
        if quantize != "int8":
            raise ExportError(f"unknown quantization {quantize!r}")
        return _quantize(proto, graph, calibration)


def _quantize(proto, graph: Graph, calibration) -> bytes:
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration is None:
        raise ExportError(f"{graph.name}: int8 needs calibration data")
    with tempfile.TemporaryDirectory(prefix="basisnet-onnx-") as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("float.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(proto, src)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        calibration.rewind()
        quantize_static(str(pre), str(dst), calibration, quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8)
        model = onnx.load(dst)
        onnx.checker.check_model(model)
        return model.SerializeToString()


def locate_initializers(model_bytes: bytes, folded: dict, baked: np.ndarray):
    """(patches, bases in ONNX layout) for a float template; see module docstring."""
    import onnx
    from onnx import numpy_helper

    from basisnet_deploy.synthesis import mix

    model = onnx.load_from_string(model_bytes)
    inits = [(i, numpy_helper.to_array(i)) for i in model.graph.initializer]
    patches, arrays, used = [], {}, set()
    for layer, (kind, slot, bases, bias, scale) in folded.items():
        folded_onnx = np.ascontiguousarray(np.transpose(bases, TO_ONNX[kind]))
        # tf2onnx folds BN into 1x1 convs but keeps a Mul after depthwise convs, whose
        # initializer is then the unfolded kernel: try both.
        unfolded_onnx = folded_onnx / scale.reshape(1, -1, 1, 1, 1)
        found = None
        for onnx_bases in (folded_onnx, unfolded_onnx):
            want = mix(onnx_bases, baked[slot])
            tol = 1e-3 * max(float(np.abs(want).max()), 1e-6)
            for init, value in inits:
                if init.name in used or value.shape != want.shape or value.dtype != np.float32:
                    continue
                if np.max(np.abs(value - want)) <= tol:
                    found = init
                    break
            if found is not None:
                break
        if found is None or not found.raw_data:
            raise ExportError(f"ONNX template: no raw-data initializer matches the synthesized "
                              f"kernel of {layer}; pre-synthesis cannot patch this model")
        offset = model_bytes.find(found.raw_data)
        if offset < 0 or model_bytes.find(found.raw_data, offset + 1) >= 0:
            raise ExportError(f"ONNX template: the bytes of {layer} are not unique in the file")
        used.add(found.name)
        patches.append(Patch(layer, slot, kind, tuple(int(s) for s in want.shape), "float32", offset))
        arrays[layer] = onnx_bases
        arrays[layer + "/bias"] = bias
    return patches, arrays
