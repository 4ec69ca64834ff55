"""Plain JSON values from typed results, for the CLI's renderer, files and benchmarks."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import numbers
from pathlib import Path


def finite_number(value) -> bool:
    """A real number (not a boolean, not a string) that is neither NaN nor infinite, nor an
    integer past a float's range."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer past float's range
        return False


def jsonable(value):
    """Plain JSON values for a result: its own ``to_json()`` where it has one, else dataclasses,
    enums, paths, tuples, NumPy scalars."""
    if callable(getattr(value, "to_json", None)) and not isinstance(value, type):
        return jsonable(value.to_json())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable_fields(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k.value if isinstance(k, enum.Enum) else k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # NumPy scalar
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; a missing figure is null
    return value


def jsonable_fields(value) -> dict:
    """A dataclass's fields as plain JSON values (for a ``to_json`` that adds to them)."""
    return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}


def dumps(value, indent: int | None = 2) -> str:
    """``value`` as strict JSON text (RFC 8259): through :func:`jsonable`, so a NaN or infinite
    figure is null, never the bare ``NaN`` that ``jq`` and JavaScript refuse."""
    return json.dumps(jsonable(value), indent=indent, allow_nan=False)
