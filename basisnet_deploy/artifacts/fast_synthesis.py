"""Fused synthesis: mix + per-channel int8 quantize + bias requantize, written in place.

``FastSynthesizer`` holds one mutable copy of an int8 template (``buffer``, a bytearray made
once) and patches it per coefficient set: for every patched conv, one pass per output channel
mixes the K bases into a channel-sized scratch, quantizes it and writes the int8 kernel bytes,
the float32 scales, the bias (int32, or int64 beside int16 activations) and the bias scales
at the patch table's offsets. No full-size float32 kernel, no template copy per frame. Layers
whose coefficient row is bit-identical to the previous call's are skipped (their bytes in
``buffer`` are already right).

Two implementations give identical bytes: a compiled kernel (``_fastsynth.c``, built at
``pip install`` when a C compiler is there) and a pure-NumPy fallback.

``mix_into`` is the float32 mix alone (``synthesis.mix``'s values, bit for bit) written into a
caller's buffer: the kernels of the persistent specialist, whose non-shared kernels are model
inputs (``model/persistent.py``). Compiled, it runs at about twice NumPy's speed and releases
the GIL.

Arithmetic (the definition; the Java core ports it bit for bit). All values float32, every
product and sum rounded to float32 on its own (no fused multiply-add), in this order. For a
layer with coefficient row a[0..K-1] and output channel c of element j:

- multipliers: float bases ``m_k = a[k]``; compact bases ``m_k = a[k] * scales[k, c]``;
- basis values: float bases ``b_k = W[k, j]``; compact bases ``b_k = float32(q8[k, j])``
  (exact);
- mix: ``w = b_0 * m_0``, then ``w = w + b_k * m_k`` for k = 1..K-1 (so the float path is
  ``synthesis.mix``, and the compact path is ``compact_bases.mixed_kernel``);
- scale: ``m = max_j |w|`` over the channel, ``s = m / 127`` (float32 division), and
  ``s = float32(1e-9)`` where s is not > 0; then, where the patch has a bias,
  ``s = max(s, |bias[c]| / (float32(input_scale) * 2^30))``, so the bias of a (near) zero
  channel stays near 2^30 (``synthesis.bias_scale_floor`` says why, for int32 and int64);
- kernel: ``int8(clip(round_half_even(w / s), -127, 127))``, w / s a float32 division;
- bias (when the patch has one): ``bs = float32(input_scale) * s``, ``bq =
  round_half_even(bias[c] / bs)`` in float32, about 2^30 at most in magnitude by the
  scale's floor (float32 rounding can add a few ulps), saturated to the bias's type all the
  same (``synthesis.quantize_bias``);
- written little-endian: kernel at weight_offset, s at scale_offset, bq at bias_offset, bs at
  bias_scale_offset.

So the float path equals ``synthesis.synthesize`` byte for byte, and the compact path equals
``compact_bases.synthesize_reference``.

For callers: ai_edge_litert's ``Interpreter(model_content=...)`` takes ``bytes`` only (a
bytearray is refused with a TypeError), so each re-creation copies the buffer once
(``bytes(synth.buffer)``; ``runtime.LiteRTSession`` does it; ~0.2 ms at full size). That copy
is also what keeps a live interpreter safe: the interpreter holds on to its ``model_content``
rather than copying it, so it must never be a buffer that is patched later.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass

import numpy as np

from basisnet_deploy.common.errors import UserError
from basisnet_deploy.artifacts.synthesis import (Patch, bias_scale_floor, mix, overlapping,
                                                 quantize_bias, quantize_kernel)

# Descriptor row per layer; the order of the C enum in _fastsynth.c.
(D_BASES, D_BSCALES, D_BIAS, D_OUTER, D_C, D_INNER, D_SLOT, D_WOFF, D_SOFF, D_BOFF, D_BSOFF,
 D_INSCALE, D_BIAS64) = range(13)
N_FIELDS = 13
KERNELS = ("auto", "compiled", "numpy")


class FastSynthesisError(UserError):
    pass


@dataclass
class _Layer:
    patch: Patch
    bases: np.ndarray  # float32 [K, *shape] or int8 [K, *shape]
    scales: np.ndarray | None  # float32 [K, C] for compact bases
    bias: np.ndarray | None  # float32 [C]

    @property
    def split(self) -> tuple[int, int, int]:
        """(outer, C, inner): the kernel seen as [outer, C, inner], C the output channels."""
        shape, axis = self.patch.shape, self.patch.channel_axis
        return int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:]))


KERNEL_VERSION = 3  # _fastsynth.c's bn_kernel_version: 2 has the bias floor on weight scales, 3 int64 biases


def _load_library():
    """The compiled library, or None where it was not built or cannot load."""
    if sys.byteorder != "little":  # the C side writes native-endian; the format is little
        return None
    try:
        from basisnet_deploy.artifacts import _fastsynth
        lib = ctypes.CDLL(_fastsynth.__file__)
        if lib.bn_desc_fields() != N_FIELDS or lib.bn_kernel_version() != KERNEL_VERSION:
            return None  # a build of other code (e.g. an editable install not rebuilt)
    except (ImportError, OSError, AttributeError):
        return None
    lib.bn_synthesize.restype = ctypes.c_int
    lib.bn_synthesize.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                                  ctypes.c_void_p, ctypes.c_void_p]
    mix_f32 = getattr(lib, "bn_mix_f32", None)
    if mix_f32 is not None:
        mix_f32.restype = ctypes.c_int
        mix_f32.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                            ctypes.c_void_p]
    return lib


_LIBRARY = _load_library()
_KERNEL = _LIBRARY.bn_synthesize if _LIBRARY is not None else None  # the compiled bn_synthesize
_MIX_F32 = getattr(_LIBRARY, "bn_mix_f32", None)  # the compiled bn_mix_f32, where built


def compiled_available() -> bool:
    return _KERNEL is not None


def use_simd(on: bool) -> bool:
    """Let the compiled kernel use its AVX2 loops (default) or only its generic ones (tests
    check both give the same bytes). Returns whether the AVX2 loops will run."""
    return bool(_LIBRARY.bn_use_simd(int(on))) if _LIBRARY is not None else False


class FastSynthesizer:
    """One int8 template, patched in place per coefficient set [L, K].

    ``bases``: float32 bases as ``specialist_bases.npz`` holds them; or ``compact``: the arrays
    of ``specialist_bases_int8.npz`` (one of the two). ``kernel``: "auto" (compiled where
    built, else NumPy), "compiled" (refuse if not built) or "numpy". Not thread-safe: one
    synthesizer per thread.
    """

    def __init__(self, template: bytes, table: list[Patch], bases: dict | None = None,
                 compact: dict | None = None, kernel: str = "auto"):
        if (bases is None) == (compact is None):
            raise FastSynthesisError("FastSynthesizer: give either float32 bases or compact bases")
        self.table = list(table)
        self.kernel = _choose_kernel(kernel, self.table)
        _check_table(self.table, len(template))
        self.layers = _compact_layers(compact, self.table) if compact is not None \
            else _float_layers(bases, self.table)
        self.k = self.layers[0].bases.shape[0] if self.layers else 0
        self.buffer = bytearray(template)  # the one copy; patched in place from now on
        self._view = np.frombuffer(self.buffer, np.uint8)
        self._slots = np.array([p.slot for p in self.table], np.int64)
        self._coeff = np.zeros((int(self._slots.max(initial=-1)) + 1, self.k), np.float32)
        self._valid = False  # whether buffer holds the layers of self._coeff
        self._todo = np.zeros(len(self.layers), np.uint8)
        self.layers_done = 0  # layers the last call re-synthesized (the others were unchanged)
        self._args = self._compiled_args() if self.kernel == "compiled" else None

    def synthesize(self, coefficients) -> bytearray:
        """Patch ``buffer`` for ``coefficients`` [L, K] and return it (the same object)."""
        c = np.ascontiguousarray(coefficients, np.float32)
        if c.ndim != 2 or c.shape[1] != self.k or c.shape[0] < self._coeff.shape[0]:
            raise FastSynthesisError(f"coefficients: shape {c.shape}, expected "
                                     f"({self._coeff.shape[0]}, {self.k})")
        if not np.all(np.isfinite(c)):
            raise FastSynthesisError("coefficients: non-finite value")
        c = c[:self._coeff.shape[0]]
        changed = (c.view(np.uint32) != self._coeff.view(np.uint32)).any(axis=1)
        self._todo[:] = True if not self._valid else changed[self._slots]
        np.copyto(self._coeff, c)
        self._valid = False
        if self._args is not None:
            desc, coeff, todo, work = self._args
            _KERNEL(desc, len(self.layers), coeff, self.k, todo, work)
        else:
            for layer, todo in zip(self.layers, self._todo):
                if todo:
                    _numpy_layer(layer, self._coeff[layer.patch.slot], self._view)
        self._valid = True
        self.layers_done = int(self._todo.sum())
        return self.buffer

    def invalidate(self) -> None:
        """Re-synthesize every layer next time (after someone else wrote into ``buffer``)."""
        self._valid = False

    def _compiled_args(self) -> tuple:
        """Pointers for bn_synthesize; the arrays they point into live as long as self."""
        desc = np.zeros((len(self.layers), N_FIELDS), np.int64)
        scratch_n, channels_n = 1, 1
        for row, layer in zip(desc, self.layers):
            p, (outer, c, inner) = layer.patch, layer.split
            row[[D_BASES, D_OUTER, D_C, D_INNER, D_SLOT]] = [layer.bases.ctypes.data, outer, c, inner, p.slot]
            row[D_BSCALES] = 0 if layer.scales is None else layer.scales.ctypes.data
            row[D_BIAS] = 0 if layer.bias is None else layer.bias.ctypes.data
            row[[D_WOFF, D_SOFF, D_BOFF, D_BSOFF]] = [p.weight_offset, p.scale_offset,
                                                      p.bias_offset, p.bias_scale_offset]
            row[D_INSCALE] = int(np.float32(p.input_scale).view(np.uint32))
            row[D_BIAS64] = p.bias_dtype == "int64"
            scratch_n = max(scratch_n, inner if outer == 1 else outer * c * inner)
            channels_n = max(channels_n, c)
        self._desc, self._scratch = desc, np.zeros(scratch_n, np.float32)
        self._scales = np.zeros(channels_n, np.float32)
        self._multipliers = np.zeros(self.k * channels_n, np.float32)
        self._work = np.array([a.ctypes.data for a in (self._view, self._scratch, self._scales,
                                                        self._multipliers)], np.int64)
        ptr = ctypes.c_void_p
        return (ptr(desc.ctypes.data), ptr(self._coeff.ctypes.data), ptr(self._todo.ctypes.data),
                ptr(self._work.ctypes.data))


def mix_into(bases: np.ndarray, coefficients: np.ndarray, out: np.ndarray, compiled: bool = True) -> None:
    """``out = sum_k a_k * bases[k]`` for float32 bases [K, n] (C-contiguous), coefficients
    [K] and a C-contiguous float32 ``out`` of n elements, in ``synthesis.mix``'s order (the same
    bits). The compiled loop where built (it releases the GIL), else NumPy in blocks."""
    a = np.ascontiguousarray(coefficients, np.float32)
    k, n = bases.shape
    if (bases.dtype != np.float32 or not bases.flags.c_contiguous or out.dtype != np.float32
            or not out.flags.c_contiguous or out.size != n or a.shape != (k,)):
        raise FastSynthesisError(f"mix_into: bases {bases.dtype} {bases.shape}, coefficients "
                                 f"{a.shape}, out {out.dtype} of {out.size}: they do not fit")
    if compiled and _MIX_F32 is not None:
        _MIX_F32(bases.ctypes.data, k, n, a.ctypes.data, out.ctypes.data)
        return
    flat, tmp = out.reshape(-1), np.empty(min(n, _BLOCK), np.float32)
    for start in range(0, n, _BLOCK):
        acc, t = flat[start:start + _BLOCK], tmp[:min(_BLOCK, n - start)]
        np.multiply(bases[0, start:start + _BLOCK], a[0], out=acc)
        for i in range(1, k):
            np.multiply(bases[i, start:start + _BLOCK], a[i], out=t)
            np.add(acc, t, out=acc)


_BLOCK = 1 << 15  # elements per NumPy block of mix_into


def _choose_kernel(kernel: str, table: list[Patch]) -> str:
    if kernel not in KERNELS:
        raise FastSynthesisError(f"kernel: {kernel!r}, expected one of {', '.join(KERNELS)}")
    # The C kernel scales per output channel; a per-tensor template (ONNX dynamic) is patched
    # by the NumPy path, which shares the reference's quantize_kernel.
    numpy_only = any(p.per_tensor for p in table)
    if kernel == "compiled" and _KERNEL is None:
        raise FastSynthesisError("kernel: the compiled kernel is not built (no C compiler at "
                                 "install?); use kernel='numpy' or 'auto'")
    if kernel == "compiled" and numpy_only:
        raise FastSynthesisError("kernel: the compiled kernel scales per channel; this template "
                                 "scales per tensor; use kernel='numpy' or 'auto'")
    return "numpy" if kernel == "numpy" or _KERNEL is None or numpy_only else "compiled"


def _check_table(table: list[Patch], size: int, name: str = "specialist_patches.json") -> None:
    """Int8 patches only, every write inside the template, no two writes sharing bytes."""
    for p in table:
        if p.dtype != "int8":
            raise FastSynthesisError(f"{name}: patch '{p.layer}' is {p.dtype}; fast synthesis "
                                     "patches int8 templates only (use synthesis.synthesize)")
        c, n = p.channels, int(np.prod(p.shape))
        ends = [p.weight_offset + n, p.scale_offset + 4 * p.n_scales]
        starts = [p.weight_offset, p.scale_offset]
        if p.bias_offset >= 0:
            ends += [p.bias_offset + p.bias_bytes * c, p.bias_scale_offset + 4 * c]
            starts += [p.bias_offset, p.bias_scale_offset]
        if min(starts) < 0 or max(ends) > size:
            raise FastSynthesisError(f"{name}: patch '{p.layer}' writes bytes {min(starts)}-{max(ends)}, "
                                     f"outside the template's {size}; the files come from different exports")
    shared = overlapping(table)
    if shared:
        raise FastSynthesisError(f"{name}: {shared}")


def _float_layers(bases: dict, table: list[Patch], name: str = "specialist_bases.npz") -> list[_Layer]:
    layers, k = [], None
    for p in table:
        if p.layer not in bases:
            raise FastSynthesisError(f"{name}: no '{p.layer}', which the patch table needs")
        w = np.ascontiguousarray(bases[p.layer], np.float32)
        k = w.shape[0] if k is None and w.ndim else k
        if w.shape != (k, *p.shape):
            raise FastSynthesisError(f"{name}: '{p.layer}' has shape {w.shape}, expected "
                                     f"{(k, *p.shape)} from the patch table")
        if not np.all(np.isfinite(w)):
            raise FastSynthesisError(f"{name}: '{p.layer}' holds a non-finite value")
        layers.append(_Layer(p, w, None, _bias(bases, p, name)))
    return layers


def _bias(arrays: dict, p: Patch, name: str) -> np.ndarray | None:
    if p.bias_offset < 0:
        return None
    key = p.layer + "/bias"
    b = arrays.get(key)
    if b is None or np.shape(b) != (p.channels,):
        raise FastSynthesisError(f"{name}: '{key}' is {'missing' if b is None else np.shape(b)}, "
                                 f"expected shape ({p.channels},) from the patch table")
    b = np.ascontiguousarray(b, np.float32)
    if not np.all(np.isfinite(b)):
        raise FastSynthesisError(f"{name}: '{key}' holds a non-finite value")
    return b


def _compact_layers(arrays: dict, table: list[Patch]) -> list[_Layer]:
    from basisnet_deploy.artifacts import compact_bases

    compact_bases.check(arrays, table)
    return [_Layer(p, np.ascontiguousarray(arrays[p.layer + "/q8"]),
                   np.ascontiguousarray(arrays[p.layer + "/scales"]),
                   _bias(arrays, p, compact_bases.FILENAME)) for p in table]


def _numpy_layer(layer: _Layer, a: np.ndarray, view: np.ndarray) -> None:
    """The NumPy fallback for one layer: the same values as the C kernel, op for op."""
    from basisnet_deploy.artifacts.compact_bases import mixed_kernel

    p = layer.patch
    if layer.scales is None:
        w = mix(layer.bases, a)
    else:
        w = mixed_kernel({p.layer + "/q8": layer.bases, p.layer + "/scales": layer.scales}, p, a)
    floor = None if p.bias_offset < 0 else bias_scale_floor(layer.bias, p.input_scale)
    q8, scale = quantize_kernel(w, p, floor)
    _put(view, p.weight_offset, q8)
    _put(view, p.scale_offset, scale.astype("<f4"))
    if p.bias_offset < 0:
        return
    bias_scale = (np.float32(p.input_scale) * scale).astype(np.float32)
    _put(view, p.bias_offset, quantize_bias(layer.bias, bias_scale, p.bias_dtype))
    _put(view, p.bias_scale_offset, bias_scale.astype("<f4"))


def _put(view: np.ndarray, offset: int, values: np.ndarray) -> None:
    data = np.ascontiguousarray(values).view(np.uint8).reshape(-1)
    view[offset:offset + data.size] = data
