"""Calibration feeds as one plain protocol for both targets.

:class:`FeedReader` is an onnxruntime ``CalibrationDataReader`` (``get_next`` / ``rewind``)
and, called, a TFLite ``representative_dataset``. Feeds are dicts keyed by input name
("image", "coefficients"), because converters may reorder inputs.
"""

from __future__ import annotations

import numpy as np
from onnxruntime.quantization import CalibrationDataReader


class FeedReader(CalibrationDataReader):
    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        if not feeds:
            raise ValueError("no calibration feeds")
        self.feeds = [{k: np.asarray(v, np.float32) for k, v in f.items()} for f in feeds]
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
