"""ONNX exporter: tf2onnx (explicit input signature) + onnxruntime.quantization for int8.

- Float: ``tf2onnx.convert.from_function`` at opset 17; input and output names are the
  graph's ("image", "coefficients", "logits"). Every model passes ``onnx.checker``.
- Int8: ``quantize_static`` in QDQ format with a ``CalibrationDataReader``, per-channel for
  weights that are initializers. The coefficient-input specialist's synthesized W is a
  runtime tensor, so it gets per-tensor QDQ (QLinearConv tolerates its non-zero zero point).
- Pre-synthesis: initializers are stored as raw bytes, so the patch table holds byte offsets
  of their ``raw_data`` in the serialized file (found by walking the protobuf wire format)
  and :func:`synthesize` works unchanged (no protobuf rebuild).
  - float: the patched initializer is the conv kernel (BN folded into 1x1 convs; tf2onnx
    keeps a Mul/Add after depthwise convs, whose kernel is then the unfolded one);
  - int8 (QDQ): the kernel's int8 initializer, its per-channel scales (axis 0, zero point 0),
    and, where the conv has one, the int32 bias and its scales, re-quantized per synthesis
    exactly as for TFLite (``bias_scale = input_scale * weight_scale``);
  - dynamic (``quantize_dynamic``): each ConvInteger's int8 kernel and its one float32 scale
    (onnxruntime scales ConvInteger weights per tensor); the float bias Add after it does not
    depend on the coefficients and is left alone (``Patch.per_tensor``);
  - weight_only (the ``fidelity`` recipe's template): each Conv's int8 kernel and its
    per-channel scales, which a Cast and a Mul turn back into the float kernel the Conv
    computes with; the Conv's float bias does not depend on the coefficients.
- Weight-only int8 (:func:`_weight_only`): int8 weights stored, float compute. No
  onnxruntime.quantization mode stores Conv weights only (each quantizes the activations
  too), so the nodes are written here.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from basisnet_deploy.common.errors import first_line
from basisnet_deploy.common.quiet import quiet_native
from basisnet_deploy.artifacts.synthesis import Patch
from basisnet_deploy.converters.base import ExportError, FoldedLayer, Graph, is_folded_bias
from basisnet_deploy.targets import registry
from basisnet_deploy.targets.kinds import Quantization
from basisnet_deploy.targets.registry import Target

OPSET = 17
# TFLite layout (what fold_bases gives) -> ONNX layout, per basis [K, ...].
TO_ONNX = {"conv": (0, 1, 4, 2, 3),  # [K, O, H, W, I] -> [K, O, I, H, W]
           "depthwise": (0, 4, 1, 2, 3)}  # [K, 1, H, W, C] -> [K, C, 1, H, W]


class OnnxExporter:
    opset = OPSET

    def __init__(self, target: Target = registry.ONNX, input_type: str = "float32"):
        self.target = target
        self.input_type = input_type  # float32 only (the target's input_types)

    @property
    def suffix(self) -> str:
        return self.target.suffix

    def convert(self, graph: Graph, scheme: Quantization, calibration=None) -> bytes:
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
            with quiet_native():
                proto, _ = tf2onnx.convert.from_function(fn, input_signature=graph.inputs,
                                                         opset=self.opset)
        except Exception as e:
            raise ExportError(f"{graph.name}: tf2onnx failed: {first_line(e)}") from e
        onnx.checker.check_model(proto)
        scheme = Quantization(scheme)
        if scheme is Quantization.FLOAT32:
            return proto.SerializeToString()
        quantizers = {Quantization.DYNAMIC: _quantize_dynamic,  # activations quantized per frame
                      Quantization.WEIGHT_ONLY: _weight_only,  # float activations and arithmetic
                      Quantization.INT8: lambda p, g: quantize_static_qdq(p, g, calibration),
                      Quantization.INT16X8: lambda p, g: _quantize_int16x8(p, g, calibration)}
        if scheme not in quantizers:  # the target's descriptor offers only these
            raise ExportError(f"{graph.name}: the ONNX converter has no {scheme.value} scheme")
        data = quantizers[scheme](proto, graph)
        return _raw_initializers(data) if graph.patchable else data

    def patch_table(self, template: bytes, folded: dict[str, FoldedLayer], baked, scheme: Quantization):
        return locate_initializers(template, folded, baked, Quantization(scheme))


def _raw_initializers(model_bytes: bytes) -> bytes:
    """Every initializer stored as ``raw_data``, so a patch table can address its bytes.

    quantize_static writes some (the per-channel scales) as typed ``float_data``, which have no
    fixed byte image in the file. Done once, at export.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    for i, init in enumerate(model.graph.initializer):
        if not init.HasField("raw_data"):
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init), init.name))
    onnx.checker.check_model(model)
    return model.SerializeToString()


@contextmanager
def _pre_processed(proto, graph: Graph):
    """A scratch directory holding ``pre.onnx``: ``proto`` after onnxruntime's quantization
    pre-processing (its graph optimizations: BN folded into each conv's bias), which every
    quantization scheme here starts from."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="basisnet-onnx-") as tmp:
        src, pre = Path(tmp) / "float.onnx", Path(tmp) / "pre.onnx"
        onnx.save(proto, src)
        try:
            with quiet_native():
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception as e:
            raise ExportError(f"{graph.name}: onnxruntime's pre-processing failed: {e}") from e
        yield Path(tmp)


def quantize_static_qdq(proto, graph: Graph, calibration, exclude=None, **options) -> bytes:
    """onnxruntime's ``quantize_static`` in QDQ format, int8 activations and per-channel int8
    weights; ``options`` override its arguments and ``exclude(pre-processed model)`` names
    nodes to leave in float."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if calibration is None:
        raise ExportError(f"{graph.name}: int8 needs calibration data")
    with _pre_processed(proto, graph) as tmp:
        pre, dst = tmp / "pre.onnx", tmp / "int8.onnx"
        with quiet_native():
            calibration.rewind()
            excluded = exclude(onnx.load(pre)) if exclude else []
            kwargs = dict(quant_format=QuantFormat.QDQ, per_channel=True,
                          activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
            quantize_static(str(pre), str(dst), calibration, nodes_to_exclude=excluded,
                            **{**kwargs, **options})
        model = onnx.load(dst)
        onnx.checker.check_model(model)
        return model.SerializeToString()


def _quantize_int16x8(proto, graph: Graph, calibration) -> bytes:
    """QDQ with int16 activations and per-channel int8 weights, every range calibrated on
    ``calibration`` (min/max; a template's on each feed's own kernels where ``calibration``
    has ``models``) and then scaled by its ``margin`` (:func:`_widened`)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import TensorsData, load_tensors_data, save_tensors_data

    if calibration is None:
        raise ExportError(f"{graph.name}: int16x8 needs calibration data")
    options = dict(activation_type=QuantType.QInt16, weight_type=QuantType.QInt8, per_channel=True)
    with tempfile.TemporaryDirectory(prefix="basisnet-onnx-ranges-") as tmp:
        cache = Path(tmp) / "ranges.json"  # quantize_static reads the ranges from here
        if getattr(calibration, "models", None) is not None:
            save_tensors_data(_own_kernel_ranges(proto, graph, calibration), cache)
        else:  # quantize_static calibrates and writes the ranges there
            model = quantize_static_qdq(proto, graph, calibration, calibration_cache_path=str(cache), **options)
            if calibration.margin == 1.0:
                return model
        ranges, bounds = load_tensors_data(cache), _activation_bounds(proto)
        save_tensors_data(TensorsData(ranges.calibration_method, {
            name: _widened(r, calibration.margin, bounds.get(name)) for name, r in ranges.data.items()}), cache)
        return quantize_static_qdq(proto, graph, calibration, calibration_cache_path=str(cache), **options)


def _own_kernel_ranges(proto, graph: Graph, calibration):
    """A template's activation ranges (min/max) with each feed run on the template holding its
    own kernels: onnxruntime's calibrator, its model (every tensor an output) re-synthesized
    for each feed by ``calibration.models``."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    with _pre_processed(proto, graph) as tmp:
        augmented = tmp / "augmented.onnx"
        with quiet_native():
            calibrator = create_calibrator(tmp / "pre.onnx", augmented_model_path=str(augmented),
                                           calibrate_method=CalibrationMethod.MinMax)
        feeds = calibration.feeds
        for feed, model in zip(feeds, calibration.models(_raw_initializers(augmented.read_bytes()))):
            augmented.write_bytes(model)
            calibrator.create_inference_session()
            calibrator.collect_data(_OneFeed(feed))  # merged with the feeds before it
        if calibrator.calibrate_tensors_range is None:
            raise ExportError(f"{graph.name}: no calibration feeds")
        return calibrator.calibrate_tensors_range


class _OneFeed:
    """An onnxruntime calibration data reader of one feed."""

    def __init__(self, feed: dict):
        self._feeds = [feed]

    def get_next(self):
        return self._feeds.pop() if self._feeds else None


def _widened(tensor_range, margin: float, bounds: tuple[float, float] | None):
    """A calibrated range scaled by ``margin`` around zero, within ``bounds``. onnxruntime's
    QDQ quantizer removes a Relu or Clip whose input range it quantizes and lets that range do
    the clipping: widened past a ReLU6's 6, the clipping would be gone (the tuned LM's held-out
    agreement 91.5% against 100% within bounds: benchmarks/results/full_integer_a16w8/)."""
    from onnxruntime.quantization.calibrate import TensorData

    low, high = (np.asarray(v, np.float32) * np.float32(margin) for v in tensor_range.range_value)
    if bounds is not None:
        low, high = np.maximum(low, bounds[0]), np.minimum(high, bounds[1])
    return TensorData(lowest=low.astype(np.float32), highest=high.astype(np.float32))


def _activation_bounds(proto) -> dict[str, tuple[float, float]]:
    """{output of each Relu and Clip: (lowest, highest) it lets through}."""
    from onnx import numpy_helper

    constants = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def bound(node, i: int, default: float) -> float:
        name = node.input[i] if len(node.input) > i else ""
        return float(constants[name]) if name in constants else default

    bounds = {}
    for node in proto.graph.node:
        if node.op_type == "Clip":
            bounds[node.output[0]] = (bound(node, 1, -np.inf), bound(node, 2, np.inf))
        elif node.op_type == "Relu":
            bounds[node.output[0]] = (0.0, np.inf)
    return bounds


# quantize_dynamic's weight options by artifact role (measured: see _quantize_dynamic).
DEFAULT_DYNAMIC = {"weight_type": "QUInt8"}
DYNAMIC_WEIGHTS = {"lightweight": {"weight_type": "QInt8", "per_channel": True},
                   # signed, so synthesize() writes symmetric int8 and leaves the zero point
                   # at 0 (ConvInteger weights get one scale per tensor whatever per_channel says)
                   "specialist_presynth": {"weight_type": "QInt8"},
                   # the bases (MatMul) and the classifier in int8; the convs stay float: on
                   # held-out photos 100% agreement against 99.17% with every op quantized
                   "specialist_coefficient": {"op_types_to_quantize": ["MatMul", "Gemm"]}}


def _quantize_dynamic(proto, graph: Graph) -> bytes:
    """onnxruntime's dynamic quantization: int8 weights; each activation's scale is computed
    from the frame itself at run time (ConvInteger/MatMulInteger), so no calibrated range
    can clip or waste resolution on a frame unlike the calibration images.

    Weights by role (``DYNAMIC_WEIGHTS``): signed per-output-channel for the lightweight model,
    which on held-out photos (benchmarks/results/fidelity_photos.md) agreed on 98.75% against
    97.50% with onnxruntime's default (uint8, one scale per tensor), coefficient error 0.099
    against 0.129; the default elsewhere, because the same setting dropped the
    coefficient-input specialist from 99.17% to 88.12%; that specialist's convs stay float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _pre_processed(proto, graph) as tmp:
        pre, dst = tmp / "pre.onnx", tmp / "dyn.onnx"
        options = {**DEFAULT_DYNAMIC, **DYNAMIC_WEIGHTS.get(graph.name, {})}
        options["weight_type"] = QuantType[options["weight_type"]]
        try:
            quantize_dynamic(str(pre), str(dst), **options)
        except Exception as e:
            raise ExportError(f"{graph.name}: ONNX dynamic quantization failed: {e}") from e
        model = onnx.load(dst)
        onnx.checker.check_model(model)
        return model.SerializeToString()


def _weight_only(proto, graph: Graph) -> bytes:
    """Int8 weights, float arithmetic: each Conv and Gemm weight initializer becomes symmetric
    int8 per output channel, turned back into float by a Cast and a Mul by its scales.
    Only weight rounding is left (no activation is quantized), which on held-out photos kept
    the pre-synthesized specialist at 99.58% agreement, against 99.17% with ConvInteger
    (benchmarks/results/fidelity_photos.md).

    Cast and Mul, not DequantizeLinear: onnxruntime folds Cast and Mul of initializers into
    the float kernel when it loads the model, so it runs at float speed with default session
    options; a DequantizeLinear it keeps (for QDQ fusion) and runs every frame, which at full
    size took 27 ms against 11 ms. Both compute ``q * scale`` in float32.
    It starts, as the other schemes do, from onnxruntime's pre-processed graph, in which
    each conv carries its folded BN bias."""
    import onnx

    with _pre_processed(proto, graph) as tmp:
        model = onnx.load(tmp / "pre.onnx")
    values = {i.name: i for i in model.graph.initializer}
    nodes, as_float = [], {}  # weight name -> its float output (a weight may feed two nodes)
    for node in model.graph.node:
        axis = _weight_axis(node)
        weight = node.input[1] if axis is not None else None
        if weight in values and weight not in as_float:
            nodes += _int8_weight(model, values[weight], axis)
            as_float[weight] = nodes[-1].output[0]
        if weight in as_float:
            node.input[1] = as_float[weight]
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for n in model.graph.node for name in n.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{graph.name}: weight-only int8 made an invalid model: {e}") from e
    return model.SerializeToString()


def _weight_axis(node) -> int | None:
    """The output-channel axis of a Conv's or Gemm's weight (its second input), else None."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return None


def _int8_weight(model, weight, axis: int) -> list:
    """Add ``weight`` to ``model`` as int8 values and float32 scales along ``axis``
    (broadcastable: [C, 1, 1, 1] for a conv); return the Cast and Mul that give it back as
    float32."""
    import onnx
    from onnx import helper, numpy_helper

    from basisnet_deploy.artifacts.synthesis import quantize_per_channel

    w = numpy_helper.to_array(weight).astype(np.float32)
    q, scale = quantize_per_channel(w, axis)
    shape = [1] * w.ndim
    shape[axis] = -1
    q_name, scale_name, cast = (weight.name + suffix for suffix in ("_int8", "_scale", "_int8_as_float"))
    model.graph.initializer.extend([numpy_helper.from_array(q, q_name),
                                    numpy_helper.from_array(scale.reshape(shape), scale_name)])
    return [helper.make_node("Cast", [q_name], [cast], to=onnx.TensorProto.FLOAT, name=cast),
            helper.make_node("Mul", [cast, scale_name], [weight.name + "_dequantized"],
                             name=weight.name + "_dequantize")]


def initializer_offsets(model_bytes: bytes) -> dict[str, tuple[int, int]]:
    """name -> (offset, length) of each graph initializer's ``raw_data`` in the file.

    Walks the protobuf wire format (ModelProto.graph = 7, GraphProto.initializer = 5,
    TensorProto.name = 8, raw_data = 9), so equal bytes in two initializers (all-zero biases)
    still get their own offsets.
    """
    buf = memoryview(model_bytes)

    def varint(i):
        value = shift = 0
        while True:
            b = buf[i]
            i += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value, i
            shift += 7

    def fields(start, end):
        i = start
        while i < end:
            key, i = varint(i)
            number, wire = key >> 3, key & 7
            if wire == 2:
                n, i = varint(i)
                yield number, i, i + n
                i += n
            elif wire == 0:
                _, i = varint(i)
            elif wire in (1, 5):
                i += 8 if wire == 1 else 4
            else:
                raise ExportError(f"ONNX template: unexpected protobuf wire type {wire}")

    out = {}
    for number, a, b in fields(0, len(buf)):
        if number != 7:
            continue
        for number2, a2, b2 in fields(a, b):
            if number2 != 5:
                continue
            name, raw = None, None
            for number3, a3, b3 in fields(a2, b2):
                if number3 == 8:
                    name = bytes(buf[a3:b3]).decode()
                elif number3 == 9:
                    raw = (a3, b3 - a3)
            if name is not None and raw is not None:
                out[name] = raw
    return out


def _candidates(folded, baked):
    """For each layer: the kernels a template may hold for it, folded first, then unfolded."""
    from basisnet_deploy.artifacts.synthesis import mix

    for name, layer in folded.items():
        folded_onnx = np.ascontiguousarray(np.transpose(layer.bases, TO_ONNX[layer.kind]))
        # tf2onnx folds BN into 1x1 convs but keeps a Mul after depthwise convs, whose
        # initializer is then the unfolded kernel: try both.
        unfolded_onnx = folded_onnx / layer.scale.reshape(1, -1, 1, 1, 1)
        yield (name, layer.kind, layer.slot, layer.bias,
               [(b, mix(b, baked[layer.slot])) for b in (folded_onnx, unfolded_onnx)])


def locate_initializers(model_bytes: bytes, folded: dict[str, FoldedLayer], baked: np.ndarray,
                        quantize: Quantization = Quantization.FLOAT32):
    """(patches, bases in ONNX layout) for a template; see the module docstring."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    offsets = initializer_offsets(model_bytes)
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    quantize = Quantization(quantize)
    convs = {Quantization.INT8: _qdq_convs, Quantization.INT16X8: _qdq_convs,
             Quantization.DYNAMIC: _integer_convs,
             Quantization.WEIGHT_ONLY: _dequantized_convs}.get(quantize, lambda *_: None)(model, values)
    patches, arrays, used = [], {}, set()
    for layer, kind, slot, bias, options in _candidates(folded, baked):
        found = None
        for onnx_bases, want in options:
            found = (_match_int8(convs, want, values, used) if convs is not None
                     else _match_float(values, want, used))
            if found is not None:
                break
        if found is None:
            raise ExportError(f"ONNX template: no initializer matches the synthesized kernel of "
                              f"{layer}; pre-synthesis cannot patch this model")
        shape = tuple(int(s) for s in want.shape)
        if convs is None:
            used.add(found)
            patches.append(Patch(layer, slot, kind, shape, "float32", _offset(offsets, found, want.nbytes)))
        elif quantize in (Quantization.DYNAMIC, Quantization.WEIGHT_ONLY):  # float biases do not change
            used.add(found["weight"])
            _check_float_bias(layer, values.get(found["bias"]), bias)
            per_tensor = quantize is Quantization.DYNAMIC
            patches.append(Patch(layer, slot, kind, shape, "int8",
                                 _offset(offsets, found["weight"], int(np.prod(shape))),
                                 scale_offset=_offset(offsets, found["scale"], 4 if per_tensor else 4 * shape[0]),
                                 axis=0, per_tensor=per_tensor))
        else:
            used.add(found["weight"])
            c = shape[0]
            has_bias = found["bias"] is not None
            if has_bias:
                b_q, b_s = values[found["bias"]], values[found["bias_scale"]]
                if np.max(np.abs(b_q * b_s - bias)) > 0.51 * float(np.max(b_s)) + 1e-6:
                    raise ExportError(f"ONNX template: the bias of {layer} is not the folded BN bias")
            patches.append(Patch(
                layer, slot, kind, shape, "int8",
                _offset(offsets, found["weight"], int(np.prod(shape))),
                scale_offset=_offset(offsets, found["scale"], 4 * c),
                bias_offset=_offset(offsets, found["bias"], 4 * c) if has_bias else -1,
                bias_scale_offset=_offset(offsets, found["bias_scale"], 4 * c) if has_bias else -1,
                input_scale=float(values[found["input_scale"]]), axis=0))
        arrays[layer] = onnx_bases
        arrays[layer + "/bias"] = bias
    return patches, arrays


def _check_float_bias(layer, template_bias, bias) -> None:
    """A dynamic or weight-only template keeps each conv's float bias, which synthesis never
    rewrites: it must be the folded BN bias, or every synthesized model would carry a wrong one."""
    have = np.zeros_like(bias) if template_bias is None else template_bias
    if not is_folded_bias(have, bias):
        raise ExportError(f"ONNX template: the bias of {layer} is not the folded BN bias")


def _offset(offsets, name, nbytes):
    if name not in offsets or offsets[name][1] != nbytes:
        raise ExportError(f"ONNX template: initializer {name} is not stored as {nbytes} raw bytes")
    return offsets[name][0]


def _match_float(values, want, used):
    tol = 1e-3 * max(float(np.abs(want).max()), 1e-6)
    for name, value in values.items():
        if name in used or value.shape != want.shape or value.dtype != np.float32:
            continue
        if np.max(np.abs(value - want)) <= tol:
            return name
    return None


def _qdq_convs(model, values):
    """Each Conv whose weight comes from a DequantizeLinear of int8 initializers."""
    producers = {out: node for node in model.graph.node for out in node.output}

    def dq(tensor):
        node = producers.get(tensor)
        if node is None or node.op_type != "DequantizeLinear" or not all(i in values for i in node.input[1:3]):
            return None
        return node

    convs = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        w, x = dq(node.input[1]), dq(node.input[0])
        if w is None or x is None or w.input[0] not in values or values[w.input[0]].dtype != np.int8:
            continue
        b = dq(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if np.any(values[w.input[2]]) or (b is not None and np.any(values[b.input[2]])):
            continue  # not symmetric: synthesize() writes zero-point-0 quantization only
        convs.append({"weight": w.input[0], "scale": w.input[1], "input_scale": x.input[1],
                      "bias": b.input[0] if b is not None else None,
                      "bias_scale": b.input[1] if b is not None else None})
    return convs


def _dequantized_convs(model, values):
    """Each Conv whose weight is Mul(Cast(int8 initializer), float32 scales initializer)
    (:func:`_weight_only`), with its float bias initializer if it has one."""
    producers = {out: node for node in model.graph.node for out in node.output}
    convs = []
    for node in model.graph.node:
        mul = producers.get(node.input[1]) if node.op_type == "Conv" else None
        if mul is None or mul.op_type != "Mul":
            continue
        cast, scale = producers.get(mul.input[0]), mul.input[1]
        if cast is None or cast.op_type != "Cast" or cast.input[0] not in values or scale not in values:
            continue
        if values[cast.input[0]].dtype != np.int8 or values[scale].dtype != np.float32:
            continue
        bias = node.input[2] if len(node.input) > 2 and node.input[2] in values else None
        convs.append({"weight": cast.input[0], "scale": scale, "bias": bias})
    return convs


def _integer_convs(model, values):
    """Each ConvInteger (onnxruntime's dynamic quantization) with a symmetric int8 initializer
    weight; the float32 initializer that scales it (the second input of the Mul that makes the
    output scale: activation scale x weight scale); and the float bias added after that Mul."""
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producers = {out: node for node in model.graph.node for out in node.output}
    convs = []
    for node in model.graph.node:
        if node.op_type != "ConvInteger" or len(node.input) < 4:
            continue
        w, w_zero = node.input[1], node.input[3]
        if values.get(w) is None or values[w].dtype != np.int8 or np.any(values.get(w_zero, 1)):
            continue
        found = _weight_scale(node, consumers, producers, values)
        if found is not None:
            scale, mul = found
            convs.append({"weight": w, "scale": scale,
                          "bias": _bias_after(mul, consumers, producers, values)})
    return convs


def _weight_scale(conv, consumers, producers, values):
    """(weight scale initializer, the Mul that applies it): ConvInteger -> Cast -> Mul(., scales)
    where scales = Mul(activation scale, weight scale)."""
    for cast in consumers.get(conv.output[0], []):
        for mul in consumers.get(cast.output[0], []) if cast.op_type == "Cast" else []:
            for scales in (producers.get(i) for i in mul.input if mul.op_type == "Mul"):
                if scales is None or scales.op_type != "Mul":
                    continue
                fixed = [i for i in scales.input if i in values and values[i].dtype == np.float32
                         and values[i].size == 1]
                if len(fixed) == 1:
                    return fixed[0], mul
    return None


def _bias_after(mul, consumers, producers, values):
    """The float32 bias initializer of the Add after ``mul`` (directly or through a Reshape),
    or None when there is none."""
    for add in consumers.get(mul.output[0], []):
        if add.op_type != "Add":
            continue
        for name in add.input:
            source = producers.get(name)
            if source is not None and source.op_type == "Reshape":
                name = source.input[0]
            if name in values and values[name].dtype == np.float32:
                return name
    return None


def _match_int8(convs, want, values, used):
    for c in convs:
        q = values[c["weight"]]
        if c["weight"] in used or q.shape != want.shape:
            continue
        scale = values[c["scale"]].reshape(-1, *([1] * (q.ndim - 1)))
        if np.max(np.abs(q * scale - want)) <= 0.51 * float(np.max(scale)) + 1e-6:
            return c
    return None
