"""The vocabulary every stage shares: an export's artifact roles, how an artifact's numbers
are stored, and the runtimes that run them. TensorFlow-free and NumPy-free."""

from __future__ import annotations

import enum


class Role(str, enum.Enum):
    LIGHTWEIGHT = "lightweight"
    SPECIALIST_COEFFICIENT = "specialist_coefficient"
    SPECIALIST_PRESYNTH = "specialist_presynth"
    BASELINE_PLAIN = "baseline_plain"

    @property
    def description(self) -> str:
        return _ROLE_TEXT[self]


_ROLE_TEXT = {
    Role.LIGHTWEIGHT: "Lightweight model: previews the image on the CPU; class logits and the "
                      "per-block coefficients.",
    Role.SPECIALIST_COEFFICIENT: "Specialist, coefficient-input: image + coefficients in, logits "
                                 "out; bases inside, synthesis in the graph.",
    Role.SPECIALIST_PRESYNTH: "Specialist, pre-synthesized: static-weight template; synthesize() "
                              "patches one coefficient set's kernels in place.",
    Role.BASELINE_PLAIN: "Plain MobileNet of the specialist's shape (the template's weights), for "
                         "bench's overhead ratio; not part of the pipeline.",
}


class Quantization(str, enum.Enum):
    """How an artifact's numbers are stored (the scheme a converter is asked for).

    ``int8``: int8 weights and activations, activation ranges calibrated on real images;
    ``dynamic``: int8 weights, activations quantized per frame at run time;
    ``weight_only``: int8 weights, float activations and arithmetic;
    ``int16x8``: int8 weights and int16 activations, every op integer (TFLite's 16x8 mode;
    ONNX QDQ with int16 activations), activation ranges calibrated on real images."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    INT8 = "int8"
    DYNAMIC = "dynamic"
    WEIGHT_ONLY = "weight_only"
    INT16X8 = "int16x8"

    @property
    def static(self) -> bool:
        """Whether its activation ranges are fixed at export (it needs calibration images)."""
        return self in (Quantization.INT8, Quantization.INT16X8)


class Runtime(str, enum.Enum):
    """The engines that run artifacts on the host (``--runtime``)."""

    LITERT = "litert"
    ONNXRUNTIME = "onnxruntime"


class CoefficientInt8(str, enum.Enum):
    """``--coefficient-int8``: the TFLite int8 scheme of the coefficient-input specialist.

    A filter computed in the graph cannot be per-channel int8 in TFLite (the kernel demands
    zero point 0, and the converter calibrates runtime filters asymmetrically), so either
    ``dynamic`` range (int8 bases and shared weights; float activations and synthesized
    kernels) or ``fakequant`` (full int8; each synthesized kernel symmetric per tensor, within a
    bound taken from the bases)."""

    DYNAMIC = "dynamic"
    FAKEQUANT = "fakequant"
