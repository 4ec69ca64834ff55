"""Quantization schemes the benchmarks compare but no recipe uses (experiments, not product).

- TFLite ``int16x8``: the TF converter's int16 activations + int8 weights mode, every op;
- TFLite ``int8_float_head``: full int8 except :data:`FLOAT_HEAD_OPS`, which run in float
  between a dequantize and a quantize (selective quantization through TF's
  QuantizationDebugger, the converter's documented route to a denylist);
- ONNX ``int8_float_head``: QDQ int8 with the LM's Dense heads (MatMul/Gemm and their bias
  Add) and the softmax left in float;
- TFLite int8 template calibrated on per-image synthesized kernels (_template_calibration.py).

Every function takes the product's converters' public pieces and adds the experiment.
"""

from __future__ import annotations

import tempfile

from basisnet_deploy.converters.base import ExportError, Graph

# Ops "int8_float_head" keeps in float: the LM's two Dense heads and the softmax. The trunk
# has no FULLY_CONNECTED (its SE blocks are 1x1 convs), so only the heads change.
FLOAT_HEAD_OPS = ["FULLY_CONNECTED", "SOFTMAX"]
ONNX_FLOAT_HEAD_OPS = ("MatMul", "Gemm", "Softmax")
RESEARCH_SCHEMES = ("int16x8", "int8_float_head")


def convert(exporter, graph: Graph, scheme: str, calibration=None, **onnx_options) -> bytes:
    """``exporter.convert`` for the product's schemes, the experiment for RESEARCH_SCHEMES
    (``onnx_options``: extra quantize_static arguments of an ONNX experiment)."""
    if scheme not in RESEARCH_SCHEMES and not onnx_options:
        return exporter.convert(graph, scheme, calibration)
    if calibration is None:
        raise ExportError(f"{graph.name}: {scheme} needs calibration data")
    if exporter.target.name == "onnx":
        return _onnx_static(graph, calibration, scheme, **onnx_options)
    return _tflite_mixed(graph, scheme, calibration)


def _tflite_mixed(graph: Graph, scheme: str, calibration) -> bytes:
    import tensorflow as tf

    from basisnet_deploy.converters.tflite import saved_model_converter

    with tempfile.TemporaryDirectory(prefix="basisnet-savedmodel-") as tmp:
        conv = saved_model_converter(graph, tmp)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = calibration
        try:
            if scheme == "int16x8":
                conv.target_spec.supported_ops = [
                    tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
                return conv.convert()
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                              tf.lite.OpsSet.TFLITE_BUILTINS]
            options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=FLOAT_HEAD_OPS)
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=conv, debug_dataset=_as_lists(calibration, graph), debug_options=options)
            return debugger.get_nondebug_quantized_model()
        except Exception as e:
            raise ExportError(f"{graph.name}: TFLite {scheme} conversion failed: "
                              f"{str(e).strip().splitlines()[0]}") from e


def _as_lists(calibration, graph: Graph):
    """The debugger wants each sample as a list in input order, not a dict by name."""
    names = [spec.name for spec in graph.inputs]
    return lambda: ([feed[n] for n in names] for feed in calibration())


def _onnx_static(graph: Graph, calibration, scheme: str, **options) -> bytes:
    import tensorflow as tf
    import tf2onnx

    from basisnet_deploy.converters.onnx import OPSET, quantize_static_qdq

    fn = tf.function(graph.fn, input_signature=graph.inputs)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=graph.inputs, opset=OPSET)
    exclude = (lambda model: head_nodes(model, ONNX_FLOAT_HEAD_OPS)) if scheme == "int8_float_head" else None
    return quantize_static_qdq(proto, graph, calibration, exclude=exclude, **options)


def head_nodes(model, exclude_ops) -> list[str]:
    """Names of the nodes of ``exclude_ops`` types plus the Add that biases a MatMul."""
    producers = {out: n for n in model.graph.node for out in n.output}
    names = []
    for n in model.graph.node:
        fed_by_matmul = any(producers.get(i) is not None and producers[i].op_type == "MatMul"
                            for i in n.input)
        if n.op_type in exclude_ops or (n.op_type == "Add" and fed_by_matmul and "MatMul" in exclude_ops):
            names.append(n.name)
    return names


def convert_presynth_int8(graph: Graph, calibration, folded, baked, coefficients):
    """(int8 template, report): activation ranges cover each calibration image's own
    synthesized kernels, not only the baked ones (_template_calibration.py)."""
    import tensorflow as tf

    from _template_calibration import convert_template
    from basisnet_deploy.converters.tflite import saved_model_converter, unshare_buffers

    with tempfile.TemporaryDirectory(prefix="basisnet-savedmodel-") as tmp:
        conv = saved_model_converter(graph, tmp)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = calibration
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        model, report = convert_template(conv, graph, calibration, folded, baked, coefficients)
        return unshare_buffers(model), report
