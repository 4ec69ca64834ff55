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

from basisnet_deploy.common.errors import first_line
from basisnet_deploy.common.quiet import quiet_native
from basisnet_deploy.converters.base import ExportError, FoldedLayer, Graph
from basisnet_deploy.targets import registry
from basisnet_deploy.targets.kinds import Quantization
from basisnet_deploy.targets.registry import Target

ENDPOINT = "serve"


class TFLiteExporter:
    def __init__(self, target: Target = registry.TFLITE, input_type: str = "float32"):
        self.target = target
        self.input_type = input_type  # float32, int8 or uint8 for full-int8 models

    @property
    def suffix(self) -> str:
        return self.target.suffix

    def convert(self, graph: Graph, scheme: Quantization, calibration=None) -> bytes:
        import tensorflow as tf

        scheme = Quantization(scheme)
        with tempfile.TemporaryDirectory(prefix="basisnet-savedmodel-") as tmp:
            conv = saved_model_converter(graph, tmp)
            if scheme is Quantization.FLOAT16:
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.target_spec.supported_types = [tf.float16]
            elif scheme is Quantization.INT8:
                if calibration is None:
                    raise ExportError(f"{graph.name}: int8 needs calibration data")
                if getattr(calibration, "margin", 1.0) != 1.0:
                    raise ExportError(f"{graph.name}: the TF converter's int8 sets its own activation "
                                      "ranges; an activation range margin applies to int16x8 only")
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.representative_dataset = calibration
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                if self.input_type != "float32":
                    conv.inference_input_type = tf.as_dtype(self.input_type)
            elif scheme is Quantization.DYNAMIC:  # int8 weights, float activations
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
            try:
                with quiet_native():  # the converter's MLIR notes and C++ logs
                    model = conv.convert()
            except Exception as e:  # ConverterError carries MLIR diagnostics
                raise ExportError(f"{graph.name}: TFLite conversion failed: "
                                  f"{first_line(e)}") from e
        if scheme is Quantization.WEIGHT_ONLY:
            model = _weight_only(model, graph)
        elif scheme is Quantization.INT16X8:
            model = _int16x8(model, graph, calibration)
        return unshare_buffers(model) if graph.patchable else model

    def patch_table(self, template: bytes, folded: dict[str, FoldedLayer], baked, scheme: Quantization):
        from basisnet_deploy.artifacts.synthesis import mix
        from basisnet_deploy.converters.tflite_patch import locate

        expected = {name: (layer.kind, layer.slot, mix(layer.bases, baked[layer.slot]))
                    for name, layer in folded.items()}
        arrays, biases = {}, {}
        for name, layer in folded.items():
            arrays[name] = layer.bases  # fold_bases already gives TFLite's layout
            arrays[name + "/bias"] = biases[name] = layer.bias
        return locate(template, expected, biases), arrays


def saved_model_converter(graph: Graph, tmp: str):
    """The TF converter for ``graph`` exported as a SavedModel into ``tmp`` (one endpoint)."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(graph.model)
    archive.add_endpoint(name=ENDPOINT, fn=graph.fn, input_signature=graph.inputs)
    archive.write_out(tmp, verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[ENDPOINT])


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
    quantizer, recipe = _ai_edge_quantizer(graph, "weight_only")
    try:
        with quiet_native():
            result = quantizer.Quantizer(float_model, recipe.weight_only_wi8_afp32()).quantize(
                enable_progress_bar=False, enable_progress_report=False)
            return bytes(result.quantized_model)
    except Exception as e:
        raise ExportError(f"{graph.name}: ai-edge-quantizer weight-only quantization failed: {first_line(e)}") from e


def _ai_edge_quantizer(graph: Graph, scheme: str):
    """ai-edge-quantizer's (quantizer, recipe) modules, or an ExportError naming the extra."""
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError as e:
        raise ExportError(f"{graph.name}: {scheme} needs ai-edge-quantizer, which the [convert] "
                          f"extra installs: pip install 'basisnet-deploy[convert]' ({e})") from e
    return quantizer, recipe


def _int16x8(float_model: bytes, graph: Graph, calibration) -> bytes:
    """Full-integer with int8 weights (symmetric per channel) and int16 activations
    (symmetric per tensor): ai-edge-quantizer's ``static_wi8_ai16`` recipe on the float model,
    calibrated on ``calibration``'s feeds, each range then scaled by its ``margin``. The model's
    input and output stay float32 (a QUANTIZE after the input, a DEQUANTIZE before each
    output), as the TF converter's int8 models are, so every runtime feeds it the same way.

    The TF converter's own 16x8 mode (``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_
    WEIGHTS_INT8``) takes its calibrated ranges as they are; ai-edge-quantizer hands them over
    to be widened. It does not quantize HARD_SWISH to int16, so these graphs spell hard-swish
    out (the target's ``decomposed_hard_swish``); a model it leaves any float op in is refused.
    """
    if calibration is None:
        raise ExportError(f"{graph.name}: int16x8 needs calibration data")
    quantizer, recipe = _ai_edge_quantizer(graph, "int16x8")
    try:
        with quiet_native():
            qt = quantizer.Quantizer(float_model, recipe.static_wi8_ai16())
            for end in (recipe.TFLOperationName.INPUT, recipe.TFLOperationName.OUTPUT):
                qt.update_quantization_recipe(regex=".*", operation_name=end,
                                              algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
            if getattr(calibration, "models", None) is not None:  # a template: each feed's own kernels
                per_feed = calibration.models(unshare_buffers(float_model))
                ranges = _calibrated_ranges(
                    lambda model: quantizer.Quantizer(model, recipe.static_wi8_ai16()),
                    calibration.feeds, per_feed)
            else:
                ranges = _calibrated_ranges(lambda model: qt, calibration.feeds)
            for tensor in ranges.values():  # symmetric int16: the scale follows max |range|
                tensor["min"] = tensor["min"] * calibration.margin
                tensor["max"] = tensor["max"] * calibration.margin
            model = bytes(qt.quantize(ranges, enable_progress_bar=False,
                                      enable_progress_report=False).quantized_model)
    except Exception as e:
        raise ExportError(f"{graph.name}: ai-edge-quantizer int16x8 quantization failed: {first_line(e)}") from e
    obj = _parsed(model)  # one parse for both checks
    floating = _float_ops(obj)
    if floating:
        raise ExportError(f"{graph.name}: int16x8 left ops in float ({', '.join(sorted(floating))}); "
                          "this model cannot be made full-integer")
    _check_int16_adds(obj, graph)
    return model


def _parsed(model: bytes):
    """The model as TF's flatbuffer object tree (schema_py_generated's ModelT)."""
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(model))


def _check_int16_adds(obj, graph: Graph) -> None:
    """Refuse an int16 ADD or SUB that LiteRT cannot prepare. Its general int16 kernel
    rescales the inputs to twice their larger scale and the sum back through 2^15, and
    ``QuantizeMultiplierSmallerThanOneExp`` aborts the process (no error to catch) unless
    ``2 * max(input scales) / (2^15 * output scale) < 1``: an output range more than 16,384x
    smaller than an input's, as activations calibrated to absurd ranges give (a random-init
    template run with each basis alone reaches 1e16). Its power-of-two path refuses such an op
    too. A tensor without exactly one scale, which LiteRT reads as scale 0 and aborts on as
    well, is refused; an op whose first input has no quantization is LiteRT's plain integer
    add and is left alone. The message names the first op refused."""
    from tensorflow.lite.python import schema_py_generated as schema

    wanted = {schema.BuiltinOperator.ADD, schema.BuiltinOperator.SUB}
    for sub in obj.subgraphs:
        for op in sub.operators:
            code = obj.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) not in wanted:
                continue
            tensors = [sub.tensors[i] for i in (*op.inputs, *op.outputs)]
            if any(t.type != schema.TensorType.INT16 for t in tensors):
                continue
            scale_lists = [list(getattr(t.quantization, "scale", None) or []) for t in tensors]
            if not scale_lists[0]:
                continue  # LiteRT's unquantized int16 add
            name = tensors[2].name.decode(errors="replace").split(";")[0]
            if any(len(s) != 1 or not s[0] > 0 for s in scale_lists):
                raise ExportError(f"{graph.name}: int16x8 gave the ADD/SUB '{name}' a tensor without one "
                                  "positive scale; LiteRT aborts on such a model")
            scales = [float(s[0]) for s in scale_lists]
            ratio = 2 * max(scales[:2]) / (2**15 * scales[2])
            if not ratio < 1 - 2**-31:  # at 1 - 2^-31 and above the multiplier rounds up to 1
                raise ExportError(
                    f"{graph.name}: int16x8 gave the ADD/SUB '{name}' an output range "
                    f"{32767 * scales[2]:.3g} against an input range of {32767 * max(scales[:2]):.3g}, "
                    "more than 16,384x wider; LiteRT's int16 kernel cannot rescale that and aborts on "
                    "such a model. Its activations calibrated out of scale: check the checkpoint's "
                    "outputs on the calibration images")


def _calibrated_ranges(quantizer_for, feeds, models=None) -> dict:
    """Each tensor's min and max over all ``feeds``, each run on its own entry of ``models``
    (None: on one model) through ``quantizer_for(model)``. ai-edge-quantizer's own calibration
    keeps a moving average (0.95) of each feed's min and max, narrower than the feeds'
    extremes (the LM's input range came out 0.68 of the images' on 200 photos, and its held-out
    agreement 93.8% against 100%: benchmarks/results/full_integer_a16w8/): calibrated one feed
    at a time, the extremes are taken here."""
    import numpy as np

    merged: dict = {}
    for feed, model in zip(feeds, models if models is not None else [None] * len(feeds)):
        for name, qsv in quantizer_for(model).calibrate({ENDPOINT: [feed]}).items():
            have = merged.get(name)
            merged[name] = dict(qsv) if have is None else {
                **have, "min": np.minimum(have["min"], qsv["min"]), "max": np.maximum(have["max"], qsv["max"])}
    return merged


def float_ops(model: bytes) -> set[str]:
    """The op types of ``model`` that read or write a float32 tensor, other than the QUANTIZE
    of a float input and the DEQUANTIZE of a float output."""
    return _float_ops(_parsed(model))


def _float_ops(obj) -> set[str]:
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    found = set()
    for graph in obj.subgraphs:
        ends = set(graph.inputs) | set(graph.outputs)
        for op in graph.operators:
            code = obj.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode))
            tensors = [t for t in list(op.inputs) + list(op.outputs) if t >= 0 and t not in ends]
            if any(graph.tensors[t].type == schema.TensorType.FLOAT32 for t in tensors):
                found.add(name)
    return found


def unshare_buffers(model: bytes) -> bytes:
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

