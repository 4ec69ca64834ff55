"""Find where each non-shared conv's weights live in a converted TFLite template.

The converter folds BN, transposes to OHWI and (for int8) quantizes per channel, and its
tensor names are not a contract. So each conv is found by *content*: the template was
converted with a known coefficient set, so the expected folded kernel is known; the CONV_2D /
DEPTHWISE_CONV_2D whose filter matches it (dequantized, within half a quantization step) is
that layer's (a float16 or weight-only int8 kernel is the constant behind the filter's
DEQUANTIZE). Where the template keeps a float bias, which synthesis never rewrites, it is
checked against the folded BN bias. Offsets are absolute byte positions in the file, read
with the flatbuffer schema that ai_edge_litert ships.
"""

from __future__ import annotations

import numpy as np

from basisnet_deploy.converters.base import ExportError, is_folded_bias
from basisnet_deploy.artifacts.synthesis import BIAS_DTYPES, CHANNEL_AXIS, Patch

_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64, 9: np.int8}  # TensorType enum


def _schema():
    from ai_edge_litert import schema_py_generated as fb
    return fb


def _vector_offset(table, slot: int) -> int:
    o = table._tab.Offset(slot)
    return table._tab.Vector(o) if o else -1


def _buffer_offset(model, buf: bytes, tensor) -> int:
    b = model.Buffers(tensor.Buffer())
    if b.Offset() > 1:  # large models keep data after the flatbuffer
        return b.Offset()
    return _vector_offset(b, 4)


def _tensor_values(model, buf, tensor):
    """(offset, raw array in tensor shape, dequantized float array or None)."""
    dtype = _DTYPES.get(tensor.Type())
    off = _buffer_offset(model, buf, tensor)
    if dtype is None or off < 0:
        return -1, None, None
    shape = tuple(tensor.ShapeAsNumpy())
    n = int(np.prod(shape))
    raw = np.frombuffer(buf, dtype=dtype, count=n, offset=off).reshape(shape)
    if dtype is np.int8:
        q = tensor.Quantization()
        scale = q.ScaleAsNumpy()
        dim = q.QuantizedDimension()
        bshape = [1] * len(shape)
        bshape[dim] = -1
        return off, raw, raw.astype(np.float32) * np.asarray(scale, np.float32).reshape(bshape)
    return off, raw, raw.astype(np.float32)


def locate(model_bytes: bytes, expected: dict[str, tuple[str, int, np.ndarray]],
           biases: dict[str, np.ndarray] | None = None) -> list[Patch]:
    """Patch entries for ``expected``: layer -> (kind, slot, folded kernel in OHWI / 1HWC).

    ``biases`` (layer -> folded BN bias), where given, is checked against every float bias the
    template keeps: synthesis never rewrites those, so a wrong one would be in every model."""
    fb = _schema()
    model = fb.Model.GetRootAs(model_bytes, 0)
    candidates = _conv_candidates(fb, model)
    patches, used = [], set()
    for layer, (kind, slot, want) in expected.items():
        match = _match(model, model_bytes, candidates, used, kind, want)
        if match is None:
            raise ExportError(f"template: no conv matches the synthesized kernel of {layer}; "
                              "the converter changed the graph in a way pre-synthesis cannot patch")
        used.add(match[0])
        patch = _patch(model, model_bytes, layer, slot, want, match)
        if biases is not None and patch.bias_offset < 0:
            _check_float_bias(model, model_bytes, layer, match[3], biases[layer])
        patches.append(patch)
    return patches


def _check_float_bias(model, model_bytes, layer, btensor, bias) -> None:
    """The template's float bias of ``layer`` is the folded BN bias (none: an all-zero one)."""
    have, rtol = np.zeros_like(bias), 1e-5
    if btensor is not None:
        _, raw, have = _tensor_values(model, model_bytes, btensor)
        if raw is None or raw.dtype not in (np.float32, np.float16):
            raise ExportError(f"template: the bias of {layer} is not a float constant")
        rtol = 1e-3 if raw.dtype == np.float16 else rtol
    if not is_folded_bias(have, bias, rtol):
        raise ExportError(f"template: the bias of {layer} is not the folded BN bias")


def _conv_candidates(fb, model) -> list[tuple]:
    """(kind, filter tensor, bias tensor or None, input tensor) of every conv, in graph order."""
    graph = model.Subgraphs(0)
    producers = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        for j in range(op.OutputsLength()):
            producers[op.Outputs(j)] = op
    conv_codes = {fb.BuiltinOperator.CONV_2D: "conv",
                  fb.BuiltinOperator.DEPTHWISE_CONV_2D: "depthwise"}
    candidates = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        builtin = _builtin(model, op)
        if builtin not in conv_codes:
            continue
        # float16 and weight-only int8 constants reach the conv through a DEQUANTIZE
        f_idx = _constant_behind(model, producers, op.Inputs(1))
        has_bias = op.InputsLength() > 2 and op.Inputs(2) >= 0
        bias = graph.Tensors(_constant_behind(model, producers, op.Inputs(2))) if has_bias else None
        candidates.append((conv_codes[builtin], graph.Tensors(f_idx), bias, graph.Tensors(op.Inputs(0))))
    return candidates


def _constant_behind(model, producers, index: int) -> int:
    """The tensor a conv input is read from: the input of the DEQUANTIZE that makes it (of a
    float16 or int8 constant), or the input itself. Any other producer leaves the input,
    which then has no data and matches no expected kernel."""
    prod = producers.get(index)
    if prod is None or _builtin(model, prod) != _schema().BuiltinOperator.DEQUANTIZE:
        return index
    return prod.Inputs(0)


def _builtin(model, op) -> int:
    code = model.OperatorCodes(op.OpcodeIndex())
    return max(code.BuiltinCode(), code.DeprecatedBuiltinCode())


def _match(model, model_bytes, candidates, used, kind, want):
    """(index, kind, filter, bias, input, offset, dtype) of the unused conv whose weights are
    ``want`` within quantization tolerance, or None."""
    for n, (ckind, ftensor, btensor, itensor) in enumerate(candidates):
        if n in used or ckind != kind or tuple(ftensor.ShapeAsNumpy()) != want.shape:
            continue
        off, raw, deq = _tensor_values(model, model_bytes, ftensor)
        if deq is None:
            continue
        if raw.dtype == np.int8:
            tol = 0.51 * np.max(ftensor.Quantization().ScaleAsNumpy()) + 1e-6
        else:
            tol = 1e-3 * max(float(np.max(np.abs(want))), 1e-6)
        if np.max(np.abs(deq - want)) <= tol:
            return n, kind, ftensor, btensor, itensor, off, raw.dtype
    return None


def _patch(model, model_bytes, layer, slot, want, match) -> Patch:
    _, kind, ftensor, btensor, itensor, off, dtype = match
    shape = tuple(int(s) for s in want.shape)
    if dtype != np.int8:
        return Patch(layer, slot, kind, shape, np.dtype(dtype).name, off)
    q = ftensor.Quantization()
    _check_per_channel(q, layer, kind, shape)
    if btensor is not None and _DTYPES.get(btensor.Type()) == np.float32:
        # Dynamic range or weight-only (int8 weights, float bias): the folded bias does not
        # depend on the coefficients, so only the kernel and its scales are patched.
        return Patch(layer, slot, kind, shape, "int8", off, scale_offset=_vector_offset(q, 8),
                     axis=q.QuantizedDimension())
    if btensor is None:
        raise ExportError(f"template: int8 conv of {layer} has no bias to re-quantize")
    bias_dtype = np.dtype(_DTYPES.get(btensor.Type(), np.float64)).name
    if bias_dtype not in BIAS_DTYPES:
        raise ExportError(f"template: the bias of {layer}'s int8 conv is {bias_dtype}; "
                          f"synthesis re-quantizes {' or '.join(BIAS_DTYPES)} biases")
    return Patch(layer, slot, kind, shape, "int8", off, scale_offset=_vector_offset(q, 8),
                 bias_offset=_buffer_offset(model, model_bytes, btensor),
                 bias_scale_offset=_vector_offset(btensor.Quantization(), 8),
                 input_scale=float(itensor.Quantization().ScaleAsNumpy()[0]), bias_dtype=bias_dtype)


def _check_per_channel(q, layer: str, kind: str, shape: tuple) -> None:
    """synthesize() writes one symmetric scale per output channel over the template's scale
    vector: the template's int8 kernel must be quantized that way, or the writes would land
    past a shorter vector."""
    axis = q.QuantizedDimension()
    if axis != CHANNEL_AXIS[kind]:
        raise ExportError(f"template: {layer} is quantized on axis {axis}, expected {CHANNEL_AXIS[kind]}")
    if q.ScaleLength() != shape[axis] or np.any(q.ZeroPointAsNumpy()):
        raise ExportError(f"template: {layer}'s int8 kernel is not symmetric per channel "
                          f"({q.ScaleLength()} scales for {shape[axis]} channels)")
