"""TFLite/LiteRT exporter: Keras -> SavedModel (ExportArchive) -> TFLiteConverter.

``TFLiteConverter.from_keras_model`` and ``from_concrete_functions`` are fragile with
Keras 3 (variables stay VAR_HANDLE ops and read as NaN), so the documented route is used:
``keras.export.ExportArchive`` writes a SavedModel with one named endpoint, and
``from_saved_model`` converts that signature. Static input shapes (batch 1) keep SHAPE,
STRIDED_SLICE and PACK out of the graph, so XNNPACK takes all of it.
"""

from __future__ import annotations

import copy
import tempfile

from basisnet_deploy.common.quiet import quiet_native
from basisnet_deploy.converters.base import ExportError, Graph

ENDPOINT = "serve"


class TFLiteExporter:
    target = "tflite"
    suffix = ".tflite"

    def __init__(self, input_type: str = "float32"):
        self.input_type = input_type  # float32, int8 or uint8 for full-int8 models

    def convert(self, graph: Graph, quantize: str, calibration=None) -> bytes:
        import tensorflow as tf

        with tempfile.TemporaryDirectory(prefix="basisnet-savedmodel-") as tmp:
            conv = _saved_model_converter(graph, tmp)
            if quantize == "float16":
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.target_spec.supported_types = [tf.float16]
            elif quantize == "int8":
                if calibration is None:
                    raise ExportError(f"{graph.name}: int8 needs calibration data")
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.representative_dataset = calibration
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                if self.input_type != "float32":
                    conv.inference_input_type = tf.as_dtype(self.input_type)
            elif quantize in ("int16x8", "int8_float_head"):
                if calibration is None:
                    raise ExportError(f"{graph.name}: {quantize} needs calibration data")
                return _convert_mixed(conv, graph, quantize, calibration)
            elif quantize == "dynamic":  # int8 weights, float activations
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
            elif quantize not in ("float32", "weight_only"):
                raise ExportError(f"unknown quantization {quantize!r}")
            try:
                with quiet_native():  # the converter's MLIR notes and C++ logs
                    model = conv.convert()
            except Exception as e:  # ConverterError carries MLIR diagnostics
                raise ExportError(f"{graph.name}: TFLite conversion failed: "
                                  f"{str(e).strip().splitlines()[0]}") from e
        if quantize == "weight_only":
            model = _weight_only(model, graph)
        return _unshare_buffers(model) if graph.patchable else model

    def convert_presynth_int8(self, graph: Graph, calibration, folded, baked, coefficients):
        """(int8 template, report): activation ranges cover each calibration image's own
        synthesized kernels, not only the baked ones (tflite_template_calibration.py)."""
        import tensorflow as tf

        from basisnet_deploy.converters.tflite_template_calibration import convert_template

        with tempfile.TemporaryDirectory(prefix="basisnet-savedmodel-") as tmp:
            conv = _saved_model_converter(graph, tmp)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = calibration
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            model, report = convert_template(conv, graph, calibration, folded, baked, coefficients)
            return _unshare_buffers(model), report

    def decompose_hard_swish(self, quantize: str) -> bool:
        # XNNPACK has no int8 HARD_SWISH: each one splits the graph (benchmarks/int8_hardswish.py).
        return quantize == "int8"

    def patch_table(self, template: bytes, folded: dict, baked, quantize: str):
        from basisnet_deploy.converters.tflite_patch import locate
        from basisnet_deploy.artifacts.synthesis import mix

        expected = {layer: (kind, slot, mix(bases, baked[slot]))
                    for layer, (kind, slot, bases, _, _) in folded.items()}
        arrays, biases = {}, {}
        for layer, (_, _, bases, bias, _) in folded.items():
            arrays[layer] = bases  # fold_bases already gives TFLite's layout
            arrays[layer + "/bias"] = biases[layer] = bias
        return locate(template, expected, biases), arrays


# Ops the "int8_float_head" recipe keeps in float: the LM's two Dense heads and the softmax.
# The trunk has no FULLY_CONNECTED (its SE blocks are 1x1 convs), so only the heads change.
FLOAT_HEAD_OPS = ["FULLY_CONNECTED", "SOFTMAX"]


def _saved_model_converter(graph: Graph, tmp: str):
    """The TF converter for ``graph`` exported as a SavedModel into ``tmp`` (one endpoint)."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(graph.model)
    archive.add_endpoint(name=ENDPOINT, fn=graph.fn, input_signature=graph.inputs)
    archive.write_out(tmp, verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[ENDPOINT])


def _convert_mixed(conv, graph: Graph, quantize: str, calibration) -> bytes:
    """Higher-precision recipes for graphs whose int8 costs agreement.

    - ``int16x8``: the TF converter's int16 activations + int8 weights mode, every op;
    - ``int8_float_head``: full int8 except :data:`FLOAT_HEAD_OPS`, which run in float
      between a dequantize and a quantize (selective quantization through TF's
      QuantizationDebugger, the converter's documented route to a denylist).
    """
    import tensorflow as tf

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = calibration
    try:
        if quantize == "int16x8":
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
        raise ExportError(f"{graph.name}: TFLite {quantize} conversion failed: "
                          f"{str(e).strip().splitlines()[0]}") from e


def _weight_only(float_model: bytes, graph: Graph) -> bytes:
    """Int8 weights, float activations and arithmetic: ai-edge-quantizer's
    ``weight_only_wi8_afp32`` recipe on the float model.

    Each constant weight becomes a per-channel int8 tensor behind a DEQUANTIZE op. XNNPACK
    folds those DEQUANTIZEs when it loads the model and takes the template as one partition,
    so it runs at float speed (9.65 against 9.79 ms at full size, where a dynamic-range
    template runs at 0.64x: benchmarks/README.md), and it agrees with float on
    99.58% of held-out photos (benchmarks/results/fidelity_photos.md). The patch table finds
    each kernel behind its DEQUANTIZE (tflite_patch.py), and synthesize() rewrites the kernel
    and its scales per frame.
    """
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError as e:
        raise ExportError(f"{graph.name}: weight_only needs ai-edge-quantizer, which the "
                          f"[convert] extra installs: pip install 'basisnet-deploy[convert]' ({e})") from e
    try:
        with quiet_native():
            result = quantizer.Quantizer(float_model, recipe.weight_only_wi8_afp32()).quantize(
                enable_progress_bar=False, enable_progress_report=False)
            return bytes(result.quantized_model)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"{graph.name}: ai-edge-quantizer weight-only quantization failed: {reason}") from e


def _as_lists(calibration, graph: Graph):
    """The debugger wants each sample as a list in input order, not a dict by name."""
    names = [spec.name for spec in graph.inputs]
    return lambda: ([feed[n] for n in names] for feed in calibration())


def _unshare_buffers(model: bytes) -> bytes:
    """Give every constant tensor of a patchable template its own buffer.

    The converter lets tensors share one buffer when their bytes are equal: MLIR folds equal
    constants into one, and the Python converter deduplicates read-only buffers. In a template
    the usual case is all-zero biases (zero BN statistics): several convs then read one
    buffer, and patching one layer would rewrite the others. Each sharing tensor gets a copy,
    using TF's own flatbuffer object API; this happens once, at export, not per synthesis.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    seen = set()
    copied = 0
    for graph in obj.subgraphs:
        for tensor in graph.tensors:
            buf = obj.buffers[tensor.buffer]
            if tensor.buffer == 0 or buf.data is None or len(buf.data) == 0:
                continue
            if tensor.buffer in seen:
                obj.buffers.append(copy.deepcopy(buf))
                tensor.buffer = len(obj.buffers) - 1
                copied += 1
            seen.add(tensor.buffer)
    if not copied:
        return model
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))

