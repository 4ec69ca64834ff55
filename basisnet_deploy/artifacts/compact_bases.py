"""Compact bases: the specialist's bases stored in int8, a quarter of float32's bytes.

Synthesis reads every basis element once per frame, so at full size (19.4M elements) it is
bound by memory traffic: 77.5 MB of float32 against 19.4 MB of int8.

Format (``specialist_bases_int8.npz``, written at export next to ``specialist_bases.npz``),
for every patched layer ``L`` of the patch table, K bases of kernel shape S with C output
channels on the patch's channel axis:

- ``L/q8``: int8 [K, *S], in the template's layout (the float file's ``L`` quantized);
- ``L/scales``: float32 [K, C], finite and > 0; symmetric, zero point 0: basis k's value is
  ``q8[k] * scales[k, c]``, c the element's output channel;
- ``L/bias``: float32 [C], the folded bias, unchanged (present when the float file has it);
- ``format``: the string ``FORMAT``.

Each basis is quantized per output channel exactly as ``synthesis.quantize_per_channel`` does
for a synthesized kernel (scale = max|w| / 127, round half even, clip to [-127, 127]).

Mixing compact bases (``mixed_kernel``) folds the coefficient into the scale, so each element
costs one multiply and one add per basis: ``m_k[c] = float32(a_k * scales[k, c])``, then
``w = float32(q8[0]) * m_0[c]`` and ``w = w + float32(q8[k]) * m_k[c]`` for k = 1..K-1, every
op rounded to float32, no fused multiply-add. (Dequantizing first, ``(q8 * s) * a``, costs a
second multiply per element, which made the fused kernel 1.4x slower.) ``synthesize_reference``
is the plain, unfused definition that fast synthesis must equal byte for byte.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from basisnet_deploy.artifacts.manifest import BASES_INT8_FILE
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.artifacts.synthesis import Patch, quantize_per_channel, synthesize

FORMAT = "basisnet-compact-bases/1"
FILENAME = BASES_INT8_FILE


class CompactBasesError(UserError):
    pass


def compact(bases: dict[str, np.ndarray], table: list[Patch]) -> dict[str, np.ndarray]:
    """The compact arrays (see the module docstring) of float32 ``bases`` for ``table``."""
    out = {"format": np.array(FORMAT)}
    for p in table:
        w = np.asarray(bases[p.layer], np.float32)
        pairs = [quantize_per_channel(w[k], p.channel_axis) for k in range(w.shape[0])]
        out[p.layer + "/q8"] = np.stack([q for q, _ in pairs])
        out[p.layer + "/scales"] = np.stack([s for _, s in pairs]).astype(np.float32)
        if p.layer + "/bias" in bases:
            out[p.layer + "/bias"] = np.asarray(bases[p.layer + "/bias"], np.float32)
    return out


def write(directory, bases: dict[str, np.ndarray], table: list[Patch]) -> Path:
    """Write ``FILENAME`` into ``directory``; returns its path."""
    path = Path(directory) / FILENAME
    with open(path, "wb") as f:
        np.savez(f, **compact(bases, table))
    return path


def load(path, table: list[Patch], data: bytes | None = None) -> dict[str, np.ndarray]:
    """The arrays of a compact file, checked against ``table`` (CompactBasesError if not);
    ``data``: its bytes, already read (an export's files are read by
    :func:`~basisnet_deploy.common.files.read_verified`)."""
    path = Path(path)
    try:
        with np.load(path if data is None else io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CompactBasesError(f"{path}: not a readable .npz ({e}); re-run basisnet-deploy export") from None
    check(arrays, table, str(path))
    return arrays


def check(arrays: dict[str, np.ndarray], table: list[Patch], name: str = FILENAME) -> None:
    """Refuse compact arrays that do not fit ``table``: one line naming the file and key."""
    fmt = arrays.get("format")
    if fmt is None or str(fmt) != FORMAT:
        raise CompactBasesError(f"{name}: 'format' is {None if fmt is None else str(fmt)!r}, expected "
                                f"{FORMAT!r}; re-run basisnet-deploy export")
    k = None
    for p in table:
        q = _field(arrays, name, p.layer + "/q8", np.int8)
        k = q.shape[0] if k is None and q.ndim else k
        _shape(name, p.layer + "/q8", q, (k, *p.shape))
        s = _field(arrays, name, p.layer + "/scales", np.float32)
        _shape(name, p.layer + "/scales", s, (k, p.channels))
        if not np.all(np.isfinite(s)) or not np.all(s > 0):
            raise CompactBasesError(f"{name}: '{p.layer}/scales' holds a non-finite or non-positive "
                                    "scale; scales must be finite and > 0")
        if p.dtype == "int8" and p.bias_offset >= 0:
            b = _field(arrays, name, p.layer + "/bias", np.float32)
            _shape(name, p.layer + "/bias", b, (p.channels,))
            if not np.all(np.isfinite(b)):
                raise CompactBasesError(f"{name}: '{p.layer}/bias' holds a non-finite value")


def _field(arrays, name: str, key: str, dtype) -> np.ndarray:
    if key not in arrays:
        raise CompactBasesError(f"{name}: no '{key}', which the patch table needs; the files come "
                                "from different exports")
    a = arrays[key]
    if a.dtype != np.dtype(dtype):
        raise CompactBasesError(f"{name}: '{key}' is {a.dtype}, expected {np.dtype(dtype)}")
    return a


def _shape(name: str, key: str, a: np.ndarray, expected: tuple) -> None:
    if a.shape != tuple(expected):
        raise CompactBasesError(f"{name}: '{key}' has shape {a.shape}, expected {tuple(expected)} "
                                "from the patch table; the files come from different exports")


def dequantize(arrays: dict[str, np.ndarray], table: list[Patch]) -> dict[str, np.ndarray]:
    """Float32 bases ``float32(q8) * scales``, in the float file's keys: what the int8 storage
    makes of each basis (the error measurement compares these with the float32 bases)."""
    out = {}
    for p in table:
        q = arrays[p.layer + "/q8"]
        shape = [q.shape[0]] + [1] * (q.ndim - 1)
        shape[p.channel_axis + 1] = -1
        out[p.layer] = q.astype(np.float32) * arrays[p.layer + "/scales"].reshape(shape)
        if p.layer + "/bias" in arrays:
            out[p.layer + "/bias"] = arrays[p.layer + "/bias"]
    return out


def mixed_kernel(arrays: dict[str, np.ndarray], p: Patch, a: np.ndarray) -> np.ndarray:
    """The float32 kernel of ``p`` for coefficient row ``a`` [K] (the module docstring's order)."""
    q, s = arrays[p.layer + "/q8"], arrays[p.layer + "/scales"]
    m = np.asarray(a, np.float32)[:, None] * s  # [K, C], float32 products
    shape = [1] * (q.ndim - 1)
    shape[p.channel_axis] = -1
    w = q[0].astype(np.float32) * m[0].reshape(shape)
    for k in range(1, len(m)):
        w = w + q[k].astype(np.float32) * m[k].reshape(shape)
    return w


def synthesize_reference(template: bytes, table: list[Patch], arrays: dict[str, np.ndarray],
                         coefficients: np.ndarray) -> bytes:
    """Model bytes for compact bases, by the definition: each layer's ``mixed_kernel``, then
    ``synthesis.synthesize``'s own quantization and patching (one basis, coefficient 1, which
    passes the kernel through exactly: w * 1 == w in float32)."""
    coefficients = np.asarray(coefficients, np.float32)
    one = {p.layer: mixed_kernel(arrays, p, coefficients[p.slot])[None] for p in table}
    one.update({k: v for k, v in arrays.items() if k.endswith("/bias")})
    return synthesize(template, table, one, np.ones((len(coefficients), 1), np.float32))
