"""Pre-synthesis: mix the bases for one coefficient set and patch them into a template.

The pre-synthesized specialist is an ordinary static-weight model (the *template*) plus the
BN-folded bases of its non-shared convs and a *patch table* recorded at export: for every
non-shared conv, where its kernel bytes (and, for int8, its per-channel scales and int32 bias)
sit in the template file. ``synthesize`` writes new values at those offsets: no flatbuffer or
protobuf rebuild, NumPy only, so the same code runs in a runner thread or a phone port.

Int8: each synthesized kernel is re-quantized symmetric per output channel (zero point 0,
[-127, 127]), as the converter quantizes static weights; the bias is re-quantized with the new
scales (``bias_scale = input_scale * weight_scale``), and both scale vectors are rewritten.

Batch policy (``coefficients_for_batch``): a batch shares one synthesized model, built from
the mean of its frames' coefficients. The mean of softmax vectors is again a convex
combination, so every range bound that holds for one frame holds for the batch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

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
    scale_offset: int = -1  # float32[C] per-channel weight scales
    bias_offset: int = -1  # int32[C] bias data
    bias_scale_offset: int = -1  # float32[C] bias scales; with bias_offset -1 when no bias
    input_scale: float = 0.0  # scale of the conv's input activation (fixed by calibration)
    axis: int = -1  # output-channel axis in the template's layout; -1: TFLite's, by kind

    @property
    def channel_axis(self) -> int:
        return self.axis if self.axis >= 0 else CHANNEL_AXIS[self.kind]

    @property
    def channels(self) -> int:
        return self.shape[self.channel_axis]


@dataclass
class Presynth:
    """What synthesize() needs, as an export directory stores it."""

    path: Path  # the template file
    template: bytes
    table: list[Patch]
    bases: dict[str, np.ndarray]


def load_presynth(directory, entry: dict) -> Presynth:
    """The pre-synthesized specialist of ``directory`` from its manifest ``entry``."""
    directory = Path(directory)
    with np.load(directory / entry["bases"]) as npz:
        bases = {k: npz[k] for k in npz.files}
    path = directory / entry["file"]
    return Presynth(path, path.read_bytes(), load_table((directory / entry["patch_table"]).read_text()),
                    bases)


def dump_table(patches: list[Patch]) -> str:
    return json.dumps([asdict(p) for p in patches], indent=1)


def load_table(text: str) -> list[Patch]:
    return [Patch(**{**d, "shape": tuple(d["shape"])}) for d in json.loads(text)]


def overlapping(patches: list[Patch]) -> str | None:
    """A description of the first two byte ranges that overlap, or None."""
    ranges = []
    for p in patches:
        n = int(np.prod(p.shape)) * np.dtype(p.dtype).itemsize
        ranges.append((p.weight_offset, p.weight_offset + n, p.layer, "kernel"))
        if p.dtype == "int8":
            c = p.channels
            ranges.append((p.scale_offset, p.scale_offset + 4 * c, p.layer, "scales"))
            if p.bias_offset >= 0:
                ranges += [(p.bias_offset, p.bias_offset + 4 * c, p.layer, "bias"),
                           (p.bias_scale_offset, p.bias_scale_offset + 4 * c, p.layer, "bias scales")]
    ranges.sort()
    for a, b in zip(ranges, ranges[1:]):
        if b[0] < a[1]:
            return f"the {a[3]} of {a[2]} and the {b[3]} of {b[2]} share bytes {b[0]}-{min(a[1], b[1])}"
    return None


_INT32_SAFE = 2**31 - 256  # |bias_q| bound, a margin below int32's limit for float rounding
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


def quantize_per_channel(w: np.ndarray, axis: int, min_scale=None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel: (int8 values, float32 scales).

    The scale is max|w| / 127, so no weight clips; ``min_scale`` [C] raises it where a
    channel needs it (below: an int32 bias that would otherwise overflow).
    """
    other = tuple(i for i in range(w.ndim) if i != axis)
    scale = (np.max(np.abs(w), axis=other) / 127.0).astype(np.float32)
    if min_scale is not None:
        scale = np.maximum(scale, np.asarray(min_scale, np.float32))
    scale = np.where(scale > 0, scale, np.float32(1e-9)).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


def synthesize(template: bytes, patches: list[Patch], bases: dict[str, np.ndarray],
               coefficients: np.ndarray) -> bytes:
    """Model bytes of the specialist for one coefficient set [L, K].

    ``bases[layer]`` is [K, *patch.shape] (BN folded, template layout); for int8 templates
    ``bases[layer + "/bias"]`` is the folded float bias [C].
    """
    coefficients = np.asarray(coefficients, np.float32)
    writes: list[tuple[int, bytes]] = []
    for p in patches:
        w = mix(bases[p.layer], coefficients[p.slot])
        if p.dtype in ("float32", "float16"):
            writes.append((p.weight_offset, w.astype("<f4" if p.dtype == "float32" else "<f2").tobytes()))
            continue
        # A near-zero synthesized channel with a real bias would need a bias_q past int32:
        # its weight scale is raised so the bias fits, instead of clipping the bias.
        min_scale = (None if p.bias_offset < 0 else np.abs(bases[p.layer + "/bias"])
                     / (np.float32(p.input_scale) * np.float32(_INT32_SAFE)))
        q, scale = quantize_per_channel(w, p.channel_axis, min_scale)
        writes += [(p.weight_offset, q.tobytes()), (p.scale_offset, scale.astype("<f4").tobytes())]
        if p.bias_offset < 0:  # a conv without bias (ONNX depthwise: BN stays a Mul/Add)
            continue
        bias_scale = (np.float32(p.input_scale) * scale).astype(np.float32)
        bias_q = np.round(bases[p.layer + "/bias"] / bias_scale)
        bias_q = np.clip(bias_q, -2**31, 2**31 - 1).astype("<i4")
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


def coefficients_for_batch(coefficients: np.ndarray) -> np.ndarray:
    """One coefficient set [L, K] for a batch of frames [N, L, K]: their mean."""
    coefficients = np.asarray(coefficients, np.float32)
    return coefficients if coefficients.ndim == 2 else coefficients.mean(axis=0)
