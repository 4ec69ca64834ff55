"""Real images for calibration: digits, or any folder of images, chosen with a seed.

Every file goes through :func:`basisnet_deploy.data.load_image` (EXIF transpose, RGB,
decompression-bomb refusal); files that fail are skipped and counted, never fatal, and a
folder with no usable image is a clear error. Calibrating on random noise is not offered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from basisnet_deploy.data import DataError, digits
from basisnet_deploy.data.datasets import sample_folder


@dataclass
class CalibrationImages:
    images: list
    source: str
    considered: int
    skipped: Counter = field(default_factory=Counter)
    skipped_files: list = field(default_factory=list)

    def report(self) -> dict:
        return {"source": self.source, "used": len(self.images), "considered": self.considered,
                "skipped": dict(self.skipped), "skipped_files": self.skipped_files[:20]}


def calibration_images(source: str, count: int, seed: int = 0,
                       exclude: set[int] | None = None) -> CalibrationImages:
    """Up to ``count`` images from ``digits`` (indices in ``exclude`` left out, e.g. the
    held-out split) or from every file under a folder, in a seeded random order."""
    rng = np.random.default_rng(seed)
    if source == "digits":
        ds = digits()
        idx = [i for i in range(len(ds.images)) if not exclude or i not in exclude]
        rng.shuffle(idx)
        chosen = [ds.images[i] for i in idx[:count]]
        if not chosen:
            raise DataError("digits: no images left for calibration once the verification "
                            "images are excluded")
        return CalibrationImages(chosen, "digits", len(chosen))
    if not Path(source).is_dir():
        raise DataError(f"{source}: no such calibration folder; pass --calibration digits or a "
                        "folder of images")
    sample = sample_folder(source, count, seed)
    return CalibrationImages(sample.images, str(source), sample.considered, sample.skipped,
                             sample.skipped_files)
