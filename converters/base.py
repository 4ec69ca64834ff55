"""The one small interface every target implements.

An exporter turns a :class:`Graph` (a Keras model plus a traced function with named inputs
and outputs) into model bytes, in the spirit of ai-edge-torch's ``convert(model,
sample_args)`` and optimum's per-target exporters. Calibration arrives as a callable that
returns an iterator of feed dicts keyed by input name, never positional lists: converters may
reorder inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

import numpy as np

from basisnet_deploy.targets.kinds import Quantization
from basisnet_deploy.targets.registry import Target

@dataclass
class Graph:
    name: str  # artifact role, e.g. "lightweight"
    model: object  # the keras.Model whose weights the function reads
    fn: Callable  # fn(**inputs) -> {output name: tensor}
    inputs: list  # tf.TensorSpec, each with its name
    outputs: list[str]
    # A pre-synthesis template: every constant must own its bytes, because synthesize()
    # rewrites kernels and biases in place (no deduplication of identical constants).
    patchable: bool = False


class ExportError(Exception):
    """A conversion failed for a reason that is not the user's input."""


@dataclass(frozen=True)
class FoldedLayer:
    """One basis layer of the specialist with its batch norm folded into every basis."""

    kind: str  # "conv" (1x1) or "depthwise"
    slot: int  # its row of the coefficients [L, K]
    bases: np.ndarray  # [K, *TFLite layout]: OHWI for a conv, 1HWC for a depthwise
    bias: np.ndarray  # [C], the folded BN bias
    scale: np.ndarray  # [C], the BN scale folded into the bases


def fold_bases(specialist) -> dict[str, FoldedLayer]:
    """layer name -> :class:`FoldedLayer`, for every basis layer of a Keras specialist.

    BN is shared across bases, so it folds exactly into every basis before mixing:
    ``fold(sum_k a_k W_k) = sum_k a_k fold(W_k)``.
    """
    from basisnet_deploy.model.layers import BasisConv1x1, BasisDepthwiseConv2D

    out = {}
    for layer in specialist.layers:
        if not isinstance(layer, (BasisConv1x1, BasisDepthwiseConv2D)):
            continue
        bn = specialist.get_layer(f"{layer.name}_bn")
        gamma, beta, mean, var = (w.numpy() for w in bn.weights)
        scale = gamma / np.sqrt(var + bn.epsilon)
        kernel = layer.kernel.numpy()  # [K, kh, kw, Cin, Cout] or [K, k, k, C, 1]
        conv = isinstance(layer, BasisConv1x1)
        folded = kernel * scale if conv else kernel * scale[:, None]  # the output channels
        # Keras HWIO -> TFLite OHWI; depthwise HWC1 -> 1HWC: the same transpose.
        tfl = np.transpose(folded, (0, 4, 1, 2, 3)).astype(np.float32)
        out[layer.name] = FoldedLayer("conv" if conv else "depthwise", layer.slot, tfl,
                                      (beta - mean * scale).astype(np.float32), scale.astype(np.float32))
    return out


def is_folded_bias(have: np.ndarray, bias: np.ndarray, rtol: float = 1e-5) -> bool:
    """Whether a template's float bias ``have`` is the folded BN bias ``bias`` that synthesis
    relies on (it never rewrites float biases).

    The converter folds BN in its own order (``beta - mean * (gamma * rsqrt(var + eps))``),
    so a channel can differ from ``fold_bases`` by a few float32 ulps of ``mean * scale``, which
    may be far larger than the bias itself; the absolute tolerance, 1e-4 of the largest bias
    (at least 1e-4), allows that and is still far below a wrong or missing bias.
    """
    have = np.asarray(have, np.float32).reshape(-1)
    return have.shape == bias.shape and bool(np.allclose(
        have, bias, rtol=rtol, atol=1e-4 * max(1.0, float(np.abs(bias).max(initial=0.0)))))


class Exporter(Protocol):
    """What a target's converter implements; its :class:`Target` descriptor (targets/registry.py)
    says everything else (suffix, runtime, schemes offered, hard-swish form)."""

    target: Target

    def __init__(self, target: Target, input_type: str = "float32"): ...

    def convert(self, graph: Graph, scheme: Quantization,
                calibration: Callable[[], Iterable[dict]] | None = None) -> bytes:
        """Model bytes for ``graph``; ``calibration`` is required for static int8."""

    def patch_table(self, template: bytes, folded: dict[str, FoldedLayer], baked,
                    scheme: Quantization) -> tuple[list, dict]:
        """(patches, bases in the template's layout) for a converted pre-synthesis template.

        ``baked`` [L, K] are the template's coefficients. Bias arrays are keyed ``<layer>/bias``.
        """
