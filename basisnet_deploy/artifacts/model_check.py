"""Structural checks of model files before any runtime sees them.

The LiteRT interpreter trusts its flatbuffer: a flipped byte in an offset, a tensor's buffer
index or an operator's tensor index is read out of bounds and crashes the process. Neither
``ai_edge_litert`` nor the ``flatbuffers`` package ships a verifier, so :func:`check_tflite`
walks the TFLite flatbuffer itself (schema: ``tensorflow/compiler/mlir/lite/schema/schema.fbs``):
every table, vtable, vector and string inside the file; every tensor's type, shape, buffer
index and data size; every operator's opcode and tensor indices; subgraph inputs and outputs,
signatures and metadata. ONNX files go through ``onnx.checker``.

Both raise :class:`ModelCheckError`, a one-line :class:`UserError` naming the file.
NumPy-free; ``onnx`` is imported only for ONNX files.
"""

from __future__ import annotations

import struct
from pathlib import Path

from basisnet_deploy.common.errors import UserError, first_line
from basisnet_deploy.targets.kinds import Runtime
from basisnet_deploy.targets.registry import runtime_of_file

# TensorType -> bytes per element; None: no fixed size (string, resource, sub-byte types).
_TYPE_SIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 5: None, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16,
              12: 8, 13: None, 14: None, 15: 4, 16: 2, 17: None, 18: 2, 19: None, 20: None,
              21: 1, 22: 1}
_MAX_BUILTIN_OP = 209  # BuiltinOperator's last value in the schema ai-edge-litert 2.3 ships
_CUSTOM_OP = 32
_MAX_OPTIONS, _MAX_OPTIONS_2 = 126, 23
_INT_VECTOR_OPTIONS = {17, 30}  # ReshapeOptions.new_shape, SqueezeOptions.squeeze_dims
_MAX_RANK = 16


class ModelCheckError(UserError):
    pass


class _Bad(Exception):
    pass


def check_model_bytes(data: bytes, path) -> None:
    """Refuse ``data`` (the contents of ``path``) unless its structure is sound."""
    try:
        runtime = runtime_of_file(path)
    except UserError as e:
        raise ModelCheckError(str(e)) from None
    (check_tflite if runtime is Runtime.LITERT else check_onnx)(data, path)


def check_onnx(data: bytes, path) -> None:
    """A valid ONNX model in one file. A tensor kept in an external data file is refused:
    the export writes none, the manifest has no sha256 for one, and a session loads the
    checked bytes, from which onnxruntime cannot resolve another file."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    try:
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, ValueError, RuntimeError,
            UnicodeDecodeError) as e:
        raise ModelCheckError(f"{path}: not a valid ONNX model ({first_line(e)[:200]}); the file is "
                              "corrupt: re-run basisnet-deploy export") from None
    external = [t.name for t in _get_all_tensors(model) if uses_external_data(t)]
    if external:
        raise ModelCheckError(f"{path}: tensor {external[0]!r} is stored in an external data file, "
                              "which an export never writes and its manifest cannot check; "
                              "re-run basisnet-deploy export (one self-contained .onnx file)")


def check_tflite(data: bytes, path) -> None:
    try:
        _check_model(_Reader(bytes(data)))
    except _Bad as e:
        raise ModelCheckError(f"{path}: not a valid TFLite flatbuffer ({e}); the file is corrupt: "
                              "re-run basisnet-deploy export") from None


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.n = data, len(data)

    def unpack(self, fmt: str, pos: int):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > self.n:
            raise _Bad(f"a read of {size} bytes at {pos} is outside the file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def table(self, pos: int) -> "_Table":
        vt = pos - self.unpack("<i", pos)
        vsize, tsize = self.unpack("<H", vt), self.unpack("<H", vt + 2)
        if vsize < 4 or vsize % 2 or vt + vsize > self.n or tsize < 4 or pos + tsize > self.n:
            raise _Bad(f"the table at byte {pos} has a vtable outside the file")
        fields = [self.unpack("<H", vt + 4 + 2 * i) for i in range((vsize - 4) // 2)]
        if any(f and (f < 4 or f > tsize - 1) for f in fields):
            raise _Bad(f"the table at byte {pos} has a field outside its {tsize} bytes")
        return _Table(self, pos, fields, tsize)


class _Table:
    def __init__(self, reader: _Reader, pos: int, fields: list[int], size: int):
        self.r, self.pos, self.fields, self.size = reader, pos, fields, size

    def at(self, i: int) -> int | None:
        off = self.fields[i] if i < len(self.fields) else 0
        return self.pos + off if off else None

    def scalar(self, i: int, fmt: str, default=0):
        at = self.at(i)
        if at is not None and at + struct.calcsize(fmt) > self.pos + self.size:
            raise _Bad(f"field {i} of the table at byte {self.pos} runs past it")
        return default if at is None else self.r.unpack(fmt, at)

    def _target(self, i: int) -> int | None:
        at = self.at(i)
        return None if at is None else at + self.r.unpack("<I", at)

    def vector(self, i: int, elem: int) -> tuple[int, int]:
        """(start, length) of vector field ``i`` with ``elem``-byte elements; (0, 0) if absent."""
        vec = self._target(i)
        if vec is None:
            return 0, 0
        n = self.r.unpack("<I", vec)
        if vec + 4 + n * elem > self.r.n:
            raise _Bad(f"a vector of {n} elements at byte {vec} runs past the end of the file")
        return vec + 4, n

    def ints(self, i: int, fmt: str = "<i") -> list[int]:
        start, n = self.vector(i, struct.calcsize(fmt))
        return list(struct.unpack_from(f"<{n}{fmt[1:]}", self.r.data, start)) if n else []

    def tables(self, i: int) -> list[_Table]:
        start, n = self.vector(i, 4)
        return [self.r.table(start + 4 * k + self.r.unpack("<I", start + 4 * k)) for k in range(n)]

    def table(self, i: int) -> _Table | None:
        target = self._target(i)
        return None if target is None else self.r.table(target)

    def string(self, i: int) -> str:
        start, n = self.vector(i, 1)
        try:
            return self.r.data[start:start + n].decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(f"field {i} of the table at byte {self.pos} is not UTF-8 text") from None


def _check_model(r: _Reader) -> None:
    if r.n < 8 or r.data[4:8] != b"TFL3":
        raise _Bad("no TFL3 file identifier")
    model = r.table(r.unpack("<I", 0))
    if model.scalar(0, "<I") != 3:
        raise _Bad(f"schema version {model.scalar(0, '<I')}, expected 3")
    opcodes = [_opcode(t) for t in model.tables(1)]
    buffers = [_buffer(t, r.n) for t in model.tables(4)]
    subgraphs = model.tables(2)
    if not subgraphs:
        raise _Bad("no subgraph")
    sizes = [_subgraph(g, k, len(opcodes), buffers) for k, g in enumerate(subgraphs)]
    model.string(3)
    _indices(model.ints(5), len(buffers), "metadata buffer")
    for meta in model.tables(6):
        meta.string(0)
        _indices([meta.scalar(1, "<I")], len(buffers), "metadata buffer")
    for sig in model.tables(7):
        index = sig.scalar(4, "<I")
        _indices([index], len(subgraphs), "signature subgraph")
        sig.string(2)
        for tmap in sig.tables(0) + sig.tables(1):
            tmap.string(0)
            _indices([tmap.scalar(1, "<I")], sizes[index], "signature tensor")


def _opcode(t: _Table) -> int:
    code = max(t.scalar(0, "<b"), t.scalar(3, "<i"))
    if not 0 <= code <= _MAX_BUILTIN_OP:
        raise _Bad(f"operator code {code} is not a builtin operator")
    if code == _CUSTOM_OP and not t.string(1):
        raise _Bad("a custom operator without a name")
    return code


def _buffer(t: _Table, file_size: int) -> int:
    """The buffer's data size in bytes."""
    _, n = t.vector(0, 1)
    offset, size = t.scalar(1, "<Q"), t.scalar(2, "<Q")
    if offset > 1 and offset + size > file_size:
        raise _Bad(f"a buffer at byte {offset} runs past the end of the file")
    return n if offset <= 1 else size


def _subgraph(g: _Table, k: int, n_opcodes: int, buffers: list[int]) -> int:
    tensors = g.tables(0)
    for t in tensors:
        _tensor(t, buffers)
    n = len(tensors)
    _indices(g.ints(1) + g.ints(2), n, f"subgraph {k} input/output")
    for op in g.tables(3):
        _indices([op.scalar(0, "<I")], n_opcodes, "operator code")
        _indices([i for i in op.ints(1) + op.ints(2) + op.ints(8) if i != -1], n, "operator tensor")
        kind, kind2 = op.scalar(3, "<B"), op.scalar(11, "<B")
        if kind > _MAX_OPTIONS or kind2 > _MAX_OPTIONS_2:
            raise _Bad(f"operator options type {kind}/{kind2} is unknown")
        options = op.table(4)
        if options is not None and kind in _INT_VECTOR_OPTIONS:
            options.ints(0)
        op.table(12)
        op.vector(5, 1)
        op.vector(7, 1)
    g.string(4)
    return n


def _tensor(t: _Table, buffers: list[int]) -> None:
    shape = t.ints(0)
    kind, buffer = t.scalar(1, "<b"), t.scalar(2, "<I")
    if kind not in _TYPE_SIZE:
        raise _Bad(f"tensor type {kind} is unknown")
    if len(shape) > _MAX_RANK or any(d < 0 for d in shape):
        raise _Bad(f"tensor shape {shape[:_MAX_RANK + 1]} is not a valid shape")
    _indices([buffer], len(buffers), "tensor buffer")
    size, count = buffers[buffer], 1
    for d in shape:
        count *= d
    if size and _TYPE_SIZE[kind] and size != count * _TYPE_SIZE[kind]:
        raise _Bad(f"tensor {t.string(3)!r}: {size} bytes of data for shape {shape}")
    t.string(3)
    t.ints(7)
    quant = t.table(4)
    if quant is not None:
        scales, zeros = quant.ints(2, "<f"), quant.ints(3, "<q")
        axis = quant.scalar(6, "<i")
        quant.ints(0, "<f"), quant.ints(1, "<f")
        if len(scales) > 1 and (not 0 <= axis < len(shape) or len(scales) != shape[axis]):
            raise _Bad(f"tensor {t.string(3)!r}: {len(scales)} scales for axis {axis} of {shape}")
        if zeros and len(zeros) != len(scales):
            raise _Bad(f"tensor {t.string(3)!r}: {len(zeros)} zero points for {len(scales)} scales")
        _quant_values(t, kind, scales, zeros)


# TensorType -> the zero points it can hold (int8, uint8, int16)
_ZERO_RANGE = {9: (-128, 127), 3: (0, 255), 7: (0, 0)}


def _quant_values(t: _Table, kind: int, scales: list, zeros: list) -> None:
    """Scales finite and positive; zero points inside the type, 0 for per-channel int8."""
    if any(not 0 < s < float("inf") for s in scales):
        raise _Bad(f"tensor {t.string(3)!r}: a quantization scale is not a positive number")
    lo, hi = _ZERO_RANGE.get(kind, (-(2**63), 2**63 - 1))
    if len(scales) > 1 and kind == 9:
        lo = hi = 0
    if any(not lo <= z <= hi for z in zeros):
        raise _Bad(f"tensor {t.string(3)!r}: zero point outside [{lo}, {hi}] (bad zero point)")


def _indices(values: list[int], n: int, what: str) -> None:
    for v in values:
        if not 0 <= v < n:
            raise _Bad(f"{what} index {v} is outside 0..{n - 1}")


