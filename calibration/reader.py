"""Calibration feeds as one plain protocol for both targets.

:class:`FeedReader` is an onnxruntime ``CalibrationDataReader`` (``get_next`` / ``rewind``)
and, called, a TFLite ``representative_dataset``. Feeds are dicts keyed by input name
("image", "coefficients"), because converters may reorder inputs.
"""

from __future__ import annotations

import numpy as np
from onnxruntime.quantization import CalibrationDataReader


class FeedReader(CalibrationDataReader):
    """``margin``: each activation range a converter calibrates on these feeds is scaled by it
    around zero (within the op's own bounds), for images beyond the calibration set's extremes
    (:class:`basisnet_deploy.targets.recipes.ActivationRanges`; converters that cannot set
    ranges refuse a margin other than 1)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], margin: float = 1.0, models=None):
        """``models``: for a template whose kernels change per frame, a function of the float
        template giving it with each feed's own kernels, one model per feed in order; a
        converter that takes it calibrates each feed on its own model, so the ranges hold for
        every frame's kernels rather than the template's."""
        if not feeds:
            raise ValueError("no calibration feeds")
        if not margin >= 1.0:
            raise ValueError(f"activation range margin {margin}: at least 1")
        self.feeds = [{k: np.asarray(v, np.float32) for k, v in f.items()} for f in feeds]
        self.margin = float(margin)
        self.models = models
        self._next = 0

    def __len__(self):
        return len(self.feeds)

    def get_next(self):
        if self._next >= len(self.feeds):
            return None
        self._next += 1
        return self.feeds[self._next - 1]

    def rewind(self):
        self._next = 0

    def __call__(self):
        """TFLite representative_dataset: a fresh iterator each call."""
        return iter(self.feeds)
