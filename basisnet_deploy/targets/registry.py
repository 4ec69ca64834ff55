"""Export targets as data: one :class:`Target` descriptor per target, in one registry.

The CLI's ``--target`` choices, the export pipeline's capability checks, the manifest's
schema, the runtime that opens an artifact, verification, the GPU check and the Android
assets all read the descriptor; nothing else names a target. Adding a target is one
converter module plus one :func:`register` call (optimum's exporter configs and
onnxruntime.quantization's ``QuantType`` are the models).

TensorFlow-free: a descriptor names its converter by import path, loaded only to convert.
"""

from __future__ import annotations

import enum
import importlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Mapping

from basisnet_deploy.common.errors import UserError
from basisnet_deploy.targets.kinds import CoefficientInt8, Quantization, Runtime


class GpuCheck(str, enum.Enum):
    """How ``export``/``check`` find what a GPU makes of a target's artifacts."""

    LITERT_ACCELERATOR = "litert_accelerator"  # compile + probe on LiteRT's GPU, else a static guess
    ONNX_WEBGPU = "onnx_webgpu"  # onnxruntime's WebGPU EP where it finds a device
    NONE = "none"


@dataclass(frozen=True)
class Target:
    """Everything the toolchain needs to know about one export target."""

    name: str  # what --target and the manifest say
    title: str  # for people: "TFLite/LiteRT"
    suffix: str  # of every artifact file
    runtime: Runtime  # what runs its artifacts on the host
    converter: object  # "module:Class" or the class itself; Class(input_type=...) converts
    # What a whole export may ask for (--quantize), and every scheme its converter makes.
    export_quantizations: tuple[Quantization, ...]
    schemes: frozenset[Quantization]
    input_types: tuple[str, ...] = ("float32",)  # --input-type choices (quantized input for int8)
    # --coefficient-int8 choice -> the coefficient-input specialist's static int8 scheme;
    # empty: the converter has one int8 scheme for it and the choice does not apply.
    coefficient_int8: Mapping[CoefficientInt8, Quantization] = field(default_factory=dict)
    decomposed_hard_swish: frozenset[Quantization] = frozenset()  # schemes whose graphs spell it out
    layer_report: bool = False  # per-layer error of static int8/int16x8 artifacts (export/layer_report.py)
    gpu_check: GpuCheck = GpuCheck.NONE
    android: bool = False  # the Android demo runs it

    def exporter(self, **options):
        """A converter instance for this target (imports it: TensorFlow and the like)."""
        cls = self.converter
        if isinstance(cls, str):
            module, _, name = cls.partition(":")
            cls = getattr(importlib.import_module(module), name)
        return cls(target=self, **options)

    def check_scheme(self, scheme: Quantization, what: str) -> None:
        """A :class:`UserError` before any work when this target cannot make ``scheme``."""
        if scheme not in self.schemes:
            offered = sorted(q.value for q in self.schemes)
            raise UserError(f"{what}: --target {self.name} has no {scheme.value} scheme "
                            f"(it makes {', '.join(offered)}); choose another --quantize or "
                            f"--int8-recipe, or --target {other_targets_with(scheme, self)}")


_REGISTRY: dict[str, Target] = {}


def register(target: Target) -> Target:
    """Add ``target`` to the registry (a name already there is an error)."""
    if target.name in _REGISTRY:
        raise ValueError(f"target {target.name!r} is already registered")
    _REGISTRY[target.name] = target
    return target


@contextmanager
def registered(target: Target):
    """``target`` registered for the duration of a ``with`` block (tests, plugins)."""
    register(target)
    try:
        yield target
    finally:
        _REGISTRY.pop(target.name, None)


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str, what: str = "--target") -> Target:
    """The descriptor of ``name``; a :class:`UserError` naming the choices otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UserError(f"{what}: unknown target {name!r}; choose one of {list(_REGISTRY)}") from None


def runtime_of_file(path) -> Runtime:
    """The runtime that opens an artifact file, from its suffix (every target with that suffix
    must agree)."""
    name = str(path)
    runtimes = {t.runtime for t in _REGISTRY.values() if name.endswith(t.suffix)}
    if len(runtimes) != 1:
        suffixes = sorted({t.suffix for t in _REGISTRY.values()})
        raise UserError(f"{path}: not an artifact file (expected one of {', '.join(suffixes)})")
    return runtimes.pop()


def other_targets_with(scheme: Quantization, exclude: Target) -> str:
    names_ = [t.name for t in _REGISTRY.values() if scheme in t.schemes and t is not exclude]
    return " or ".join(names_) if names_ else "(none has it)"


_ALL_INT8 = frozenset({Quantization.INT8, Quantization.DYNAMIC, Quantization.WEIGHT_ONLY,
                       Quantization.INT16X8})

TFLITE = register(Target(
    name="tflite", title="TFLite/LiteRT", suffix=".tflite", runtime=Runtime.LITERT,
    converter="basisnet_deploy.converters.tflite:TFLiteExporter",
    export_quantizations=(Quantization.INT8, Quantization.FLOAT16, Quantization.FLOAT32),
    schemes=_ALL_INT8 | {Quantization.FLOAT16, Quantization.FLOAT32},
    input_types=("float32", "int8", "uint8"),
    coefficient_int8={CoefficientInt8.DYNAMIC: Quantization.DYNAMIC,
                      CoefficientInt8.FAKEQUANT: Quantization.INT8},
    # XNNPACK has no int8 HARD_SWISH: each one splits the graph (benchmarks/int8_hardswish.py);
    # ai-edge-quantizer has no int16 one.
    decomposed_hard_swish=frozenset({Quantization.INT8, Quantization.INT16X8}),
    layer_report=True, gpu_check=GpuCheck.LITERT_ACCELERATOR, android=True))

ONNX = register(Target(
    name="onnx", title="ONNX", suffix=".onnx", runtime=Runtime.ONNXRUNTIME,
    converter="basisnet_deploy.converters.onnx:OnnxExporter",
    export_quantizations=(Quantization.INT8, Quantization.FLOAT32),
    schemes=_ALL_INT8 | {Quantization.FLOAT32},
    gpu_check=GpuCheck.ONNX_WEBGPU))

DEFAULT = TFLITE.name
