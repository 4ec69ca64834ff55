"""Pre-synthesis: mix the bases for one coefficient set and patch them into a template.

The pre-synthesized specialist is an ordinary static-weight model (the *template*) plus the
BN-folded bases of its non-shared convs and a *patch table* recorded at export: for every
non-shared conv, where its kernel bytes (and, for int8, its per-channel scales and bias) sit
in the template file. ``synthesize`` writes new values at those offsets: no flatbuffer or
protobuf rebuild, NumPy only, so the same code runs in a runner thread or a phone port.

Int8: each synthesized kernel is re-quantized symmetric per output channel (zero point 0,
[-127, 127]), as the converter quantizes static weights; the bias is re-quantized with the new
scales (``bias_scale = input_scale * weight_scale``), and both scale vectors are rewritten.
The bias is int32 beside int8 activations and int64 beside int16 ones (``Patch.bias_dtype``:
TFLite's 16x8 kernels).
ONNX dynamic templates (``Patch.per_tensor``: onnxruntime's ConvInteger) hold one scale per
kernel and a float bias that does not depend on the coefficients: the kernel is quantized with
one symmetric scale, and only the kernel and that scale are rewritten.

Batch policy (the manifest's ``coefficients.batch_policy``): a batch shares one synthesized
model, built from the mean of its frames' coefficients. The mean of softmax vectors is again a convex
combination, so every range bound that holds for one frame holds for the batch.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from basisnet_deploy.common.errors import UserError
from basisnet_deploy.common.files import read_verified

CHANNEL_AXIS = {"conv": 0, "depthwise": 3}  # TFLite OHWI filters; depthwise is [1, H, W, C]


@dataclass(frozen=True)
class Patch:
    """Where one non-shared conv lives in the template."""

    layer: str  # e.g. "sp_L8_expand"; the key of its bases in bases.npz
    slot: int  # row of the coefficient tensor [L, K] that mixes it
    kind: str  # "conv" or "depthwise"
    shape: tuple[int, ...]  # kernel shape in the template's layout
    dtype: str  # "float32", "float16" or "int8"
    weight_offset: int  # byte offset of the kernel data
    # int8 only
    scale_offset: int = -1  # float32[C] per-channel weight scales (float32[1] if per_tensor)
    bias_offset: int = -1  # int32[C] bias data
    bias_scale_offset: int = -1  # float32[C] bias scales; with bias_offset -1 when no bias
    input_scale: float = 0.0  # scale of the conv's input activation (fixed by calibration)
    axis: int = -1  # output-channel axis in the template's layout; -1: TFLite's, by kind
    # int8 with one scale for the whole kernel (onnxruntime's dynamic ConvInteger), no bias
    per_tensor: bool = False
    bias_dtype: str = "int32"  # "int64" in a template with int16 activations

    @property
    def bias_bytes(self) -> int:
        return np.dtype(self.bias_dtype).itemsize

    @property
    def channel_axis(self) -> int:
        return self.axis if self.axis >= 0 else CHANNEL_AXIS[self.kind]

    @property
    def channels(self) -> int:
        return self.shape[self.channel_axis]

    @property
    def n_scales(self) -> int:
        """float32 weight scales the template holds for this kernel."""
        return 1 if self.per_tensor else self.channels


@dataclass
class Presynth:
    """What synthesize() needs, as an export directory stores it."""

    path: Path  # the template file
    template: bytes
    table: list[Patch]
    bases: dict[str, np.ndarray]


def load_presynth(directory, entry, template: bytes | None = None) -> Presynth:
    """The pre-synthesized specialist of ``directory`` from its manifest entry (an
    :class:`~basisnet_deploy.artifacts.manifest.Artifact` with ``presynth`` files).
    ``template``: the template's bytes as already read and checked against the manifest
    (:func:`~basisnet_deploy.artifacts.manifest.check_files`); None: read and checked here.

    The files are untrusted: a bases file that is not a readable ``.npz`` of float arrays, a
    patch table that is not a list of patches, and offsets outside the template or
    overlapping each other are a :class:`UserError` before any byte is written.
    """
    directory = Path(directory)
    files = entry.presynth
    bases = load_bases(read_verified(directory, files.bases, files.bases_sha256, what="bases"),
                       directory / files.bases)
    path = directory / entry.file
    table_path = directory / files.patch_table
    if template is None:
        template = read_verified(directory, entry.file, entry.sha256, entry.bytes, entry.role.value)
    try:
        text = read_verified(directory, files.patch_table, files.patch_table_sha256,
                             what="patch table").decode()
    except UnicodeDecodeError as e:
        raise UserError(f"{table_path}: cannot read ({e}); re-run basisnet-deploy export") from None
    try:
        table = load_table(text)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise UserError(f"{table_path}: not a patch table ({str(e)[:120]}); re-run "
                        "basisnet-deploy export") from None
    try:
        shape = np.asarray(files.baked_coefficients, dtype=np.float32).shape
    except (ValueError, TypeError):
        shape = ()
    problem = validate_table(table, bases, len(template), shape)
    if problem:
        raise UserError(f"{table_path}: {problem}; the patch table does not fit {path.name}: "
                        "re-run basisnet-deploy export")
    return Presynth(path, template, table, bases)


def load_bases(data: bytes, path: Path) -> dict[str, np.ndarray]:
    """The float bases in ``data``, the bytes of the ``.npz`` at ``path`` (read and checked by
    :func:`~basisnet_deploy.common.files.read_verified`)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            bases = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, AttributeError) as e:
        raise UserError(f"{path}: not a readable .npz of bases ({str(e)[:120]}); re-run "
                        "basisnet-deploy export") from None
    for name, array in bases.items():
        if array.dtype.kind != "f" or not np.all(np.isfinite(array)):
            raise UserError(f"{path}: {name} is {array.dtype} or not finite; expected float "
                            "bases: re-run basisnet-deploy export")
    return bases


def validate_table(table: list[Patch], bases: dict, template_size: int, coeff_shape) -> str | None:
    """What is wrong with ``table`` for this template, bases and [L, K] coefficients, or None."""
    if len(coeff_shape) != 2:
        return f"baked coefficients of shape {coeff_shape} are not [L, K]"
    n_slots, k = coeff_shape
    for p in table:
        problem = _patch_problem(p, bases, n_slots, k)
        if problem is None:
            problem = next((f"{p.layer}: its {what} at byte {start} ends at {end}, past the "
                            f"template's {template_size} bytes"
                            for start, end, what in _ranges(p) if start < 0 or end > template_size),
                           None)
        if problem:
            return problem
    return overlapping(table)


def _patch_problem(p: Patch, bases: dict, n_slots: int, k: int) -> str | None:
    ints = (p.slot, p.weight_offset, p.scale_offset, p.bias_offset, p.bias_scale_offset, p.axis)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
        return f"{p.layer!r}: offsets, slot and axis must be integers"
    if p.kind not in CHANNEL_AXIS or p.dtype not in ("float32", "float16", "int8"):
        return f"{p.layer!r}: kind {p.kind!r} / dtype {p.dtype!r} unknown"
    if not p.shape or not all(isinstance(d, int) and 0 < d < 2**31 for d in p.shape) or \
            not -1 <= p.axis < len(p.shape) or CHANNEL_AXIS[p.kind] >= len(p.shape):
        return f"{p.layer!r}: shape {list(p.shape)} / axis {p.axis} is not a kernel shape"
    if not 0 <= p.slot < n_slots:
        return f"{p.layer!r}: slot {p.slot} is outside the {n_slots} coefficient rows"
    if not isinstance(p.layer, str) or getattr(bases.get(p.layer), "shape", None) != (k, *p.shape):
        return f"{p.layer!r}: no bases of shape {[k, *p.shape]} in the bases file"
    if p.bias_dtype not in BIAS_DTYPES:
        return f"{p.layer!r}: bias dtype {p.bias_dtype!r} unknown"
    if not isinstance(p.per_tensor, bool) or (p.per_tensor and (p.dtype != "int8" or p.bias_offset >= 0)):
        return f"{p.layer!r}: per_tensor applies to int8 kernels without an int32 bias only"
    if p.dtype == "int8" and p.bias_offset >= 0:
        bias = bases.get(p.layer + "/bias")
        if getattr(bias, "shape", None) != (p.channels,):
            return f"{p.layer!r}: no bias of shape [{p.channels}] in the bases file"
        if not isinstance(p.input_scale, (int, float)) or not 0 < p.input_scale < float("inf"):
            return f"{p.layer!r}: input_scale {p.input_scale!r} is not a positive number"
    return None


def _ranges(p: Patch):
    """(start, end, what) of every byte range ``p`` writes."""
    n = int(np.prod(p.shape)) * np.dtype(p.dtype).itemsize
    yield p.weight_offset, p.weight_offset + n, "kernel"
    if p.dtype == "int8":
        c = p.channels
        yield p.scale_offset, p.scale_offset + 4 * p.n_scales, "scales"
        if p.bias_offset >= 0:
            yield p.bias_offset, p.bias_offset + p.bias_bytes * c, "bias"
            yield p.bias_scale_offset, p.bias_scale_offset + 4 * c, "bias scales"


def dump_table(patches: list[Patch]) -> str:
    # per_tensor and an int64 bias only where set: the other tables keep the form the Android
    # core reads
    rows = [{k: v for k, v in asdict(p).items()
             if (k != "per_tensor" or v) and (k != "bias_dtype" or v != "int32")} for p in patches]
    return json.dumps(rows, indent=1)


def load_table(text: str) -> list[Patch]:
    data = json.loads(text)
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise ValueError("the top level must be a list of objects")
    return [Patch(**{**d, "shape": tuple(d["shape"])}) for d in data]


def overlapping(patches: list[Patch]) -> str | None:
    """A description of the first two byte ranges that overlap, or None."""
    ranges = sorted((start, end, p.layer, what) for p in patches for start, end, what in _ranges(p))
    for a, b in zip(ranges, ranges[1:]):
        if b[0] < a[1]:
            return f"the {a[3]} of {a[2]} and the {b[3]} of {b[2]} share bytes {b[0]}-{min(a[1], b[1])}"
    return None


_MIX_CHUNK = 1 << 16  # elements per block: keeps the accumulator in cache


def mix(bases: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """sum_k a_k W_k for bases [K, ...] and coefficients [K].

    Defined as float32 ``acc = W_0 a_0``, then ``acc = acc + W_k a_k`` for k = 1..K-1, each
    product and sum rounded to float32. A BLAS dot (tensordot) is faster, but its summation
    order depends on the library and the CPU; this order is the format's definition, so the
    synthesized model is byte-identical on every machine and in the Android core's port.
    """
    a = np.asarray(coefficients, np.float32)
    flat = np.ascontiguousarray(bases, np.float32).reshape(len(a), -1)
    n = flat.shape[1]
    out = np.empty(n, np.float32)
    tmp = np.empty(min(n, _MIX_CHUNK), np.float32)
    for start in range(0, n, _MIX_CHUNK):
        stop = min(n, start + _MIX_CHUNK)
        acc, t = out[start:stop], tmp[:stop - start]
        np.multiply(flat[0, start:stop], a[0], out=acc)
        for k in range(1, len(a)):
            np.multiply(flat[k, start:stop], a[k], out=t)
            np.add(acc, t, out=acc)
    return out.reshape(bases.shape[1:])


# |bias_q| stays near 2^30 at most: half the int32 range, and for an int64 bias (int16
# activations) far inside the 2^47 that TFLite's 16x8 kernels assume for the accumulator.
BIAS_HEADROOM = np.float32(2**30)
BIAS_DTYPES = ("int32", "int64")


def bias_scale_floor(bias: np.ndarray, input_scale: float) -> np.ndarray:
    """The smallest weight scale per channel at which the quantized bias stays near 2^30:
    ``|bias| / (input_scale * 2^30)`` in float32.

    A channel whose synthesized kernel is (near) zero, a dead channel, gets a tiny weight
    scale; ``bias / (input_scale * scale)`` then overflows an int32 bias, which saturates (the
    channel outputs ~0 instead of its bias). An int64 bias (16x8 kernels) stores it, but the
    kernel loses it all the same: the accumulator passes the 2^47 TFLite's int16x8 kernels
    assume, and the requantize multiplier ``input_scale * scale / output_scale`` falls under
    2^-31, which TFLite replaces with 0 (measured: a dead channel with bias 0.3 after an input
    scale of 1.8e-6 output 0). Raising the weight scale to this floor is what TFLite's
    converter does for static int8 weights (it adjusts weight scales for the bias scale).
    """
    t = np.float32(input_scale) * BIAS_HEADROOM
    return (np.abs(np.asarray(bias, np.float32)) / t).astype(np.float32)


def quantize_kernel(w: np.ndarray, p: Patch, floor: np.ndarray | None = None):
    """(int8 values, float32 scales) in the template's form: per output channel, or with one
    scale for the whole kernel where ``p.per_tensor`` (no bias, so no ``floor``)."""
    if not p.per_tensor:
        return quantize_per_channel(w, p.channel_axis, floor)
    if floor is not None:
        raise ValueError(f"{p.layer}: a per-tensor kernel has no int32 bias to keep in range")
    q, scale = quantize_per_channel(w.reshape(1, -1), 0)
    return q.reshape(w.shape), scale


def quantize_per_channel(w: np.ndarray, axis: int,
                         floor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel: (int8 values, float32 scales). A zero channel gets
    scale float32(1e-9); then ``floor`` (:func:`bias_scale_floor`), where given, raises any
    scale below it, which changes nothing unless the channel's int32 bias would overflow."""
    other = tuple(i for i in range(w.ndim) if i != axis)
    scale = (np.max(np.abs(w), axis=other) / 127.0).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1e-9)).astype(np.float32)
    if floor is not None:
        # fmax, like C's and Java's `floor > s ? floor : s`: a NaN floor (0/0) leaves s
        scale = np.fmax(scale, floor).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


def quantize_bias(bias: np.ndarray, bias_scale: np.ndarray, dtype: str) -> np.ndarray:
    """``round_half_even(bias / bias_scale)`` in float32, saturated to ``dtype`` (int32 or
    int64), little-endian: a value at or past 2^31 (2^63) becomes the type's largest, as the
    compiled kernel writes it (and the Java core, for int32). The float32 result goes through
    float64, where every float32 integer below the bound converts exactly; a plain cast of one
    at the bound would overflow. With :func:`bias_scale_floor` on the weight scales the values
    stay near 2^30; saturation is the guard, not the rule."""
    q = np.round(np.asarray(bias, np.float32) / bias_scale).astype(np.float64)
    info = np.iinfo(dtype)
    bound = 2.0 ** (info.bits - 1)
    out = np.empty(q.shape, np.dtype(dtype).newbyteorder("<"))
    high, low = q >= bound, q < -bound
    inside = ~(high | low)
    out[inside] = q[inside]
    out[high], out[low] = info.max, info.min
    return out


def synthesize(template: bytes, patches: list[Patch], bases: dict[str, np.ndarray],
               coefficients: np.ndarray) -> bytes:
    """Model bytes of the specialist for one coefficient set [L, K].

    ``bases[layer]`` is [K, *patch.shape] (BN folded, template layout); for int8 templates
    ``bases[layer + "/bias"]`` is the folded float bias [C].
    """
    coefficients = np.asarray(coefficients, np.float32)
    if not np.all(np.isfinite(coefficients)):
        # A NaN would be written as each integer type's minimum (or float NaN kernels): a
        # model that runs and answers nonsense. FastSynthesizer refuses it too.
        raise UserError("coefficients: non-finite value; synthesize() needs finite "
                        "coefficients (a lightweight model that output NaN or inf is broken)")
    writes: list[tuple[int, bytes]] = []
    for p in patches:
        w = mix(bases[p.layer], coefficients[p.slot])
        if p.dtype in ("float32", "float16"):
            writes.append((p.weight_offset, w.astype("<f4" if p.dtype == "float32" else "<f2").tobytes()))
            continue
        has_bias = p.bias_offset >= 0  # not for ONNX depthwise convs: BN stays a Mul/Add
        floor = bias_scale_floor(bases[p.layer + "/bias"], p.input_scale) if has_bias else None
        q, scale = quantize_kernel(w, p, floor)
        writes += [(p.weight_offset, q.tobytes()), (p.scale_offset, scale.astype("<f4").tobytes())]
        if not has_bias:
            continue
        bias_scale = (np.float32(p.input_scale) * scale).astype(np.float32)
        bias_q = quantize_bias(bases[p.layer + "/bias"], bias_scale, p.bias_dtype)
        writes += [(p.bias_offset, bias_q.tobytes()), (p.bias_scale_offset, bias_scale.astype("<f4").tobytes())]
    return _splice(template, writes)


def _splice(template: bytes, writes: list[tuple[int, bytes]]) -> bytes:
    """The template with each (offset, data) written over it: one allocation, one copy."""
    view, pieces, at = memoryview(template), [], 0
    for offset, data in sorted(writes):
        if offset < at:
            raise ValueError(f"patch table: overlapping writes at byte {offset}")
        pieces += [view[at:offset], data]
        at = offset + len(data)
    if at > len(template):
        raise ValueError(f"patch table: a write ends at byte {at}, past the template's {len(template)}")
    pieces.append(view[at:])
    return b"".join(pieces)
