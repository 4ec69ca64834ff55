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
    target: str
    suffix: str

    def convert(self, graph: Graph, quantize: str,
                calibration: Callable[[], Iterable[dict]] | None = None) -> bytes:
        """Model bytes for ``graph``; ``calibration`` is required for int8."""

    def decompose_hard_swish(self, quantize: str) -> bool:
        """Whether graphs for ``quantize`` should spell hard-swish out rather than use the op."""

    def patch_table(self, template: bytes, folded: dict, baked, quantize: str) -> tuple[list, dict]:
        """(patches, bases in the template's layout) for a converted pre-synthesis template.

        ``folded`` is ``export.fold_bases``'s output; ``baked`` [L, K] the template's
        coefficients. Bias arrays are keyed ``<layer>/bias``.
        """
