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
    folders: list = field(default_factory=list)  # each image's class folder ('.': the root)

    def warnings(self) -> list[str]:
        """What makes these images a weak basis for int8 ranges: too
        few of them, or every one from one class folder."""
        out = []
        if len(self.images) < MIN_USABLE:
            out.append(f"{self.source}: only {len(self.images)} usable calibration images (fewer "
                       f"than {MIN_USABLE}); int8 ranges from so few may clip on other images. "
                       "Add images or raise --calibration-size")
        classes = set(self.folders)
        if len(classes) == 1 and classes != {"."}:
            out.append(f"{self.source}: every calibration image comes from one class folder "
                       f"({next(iter(classes))!r}); ranges calibrated on one class may clip on "
                       "the others. Calibrate on images of every class")
        return out

    def report(self) -> dict:
        return {"source": self.source, "used": len(self.images), "considered": self.considered,
                "skipped": dict(self.skipped), "skipped_files": self.skipped_files[:20],
                "warnings": self.warnings()}


def calibration_images(source: str, count: int, seed: int = 0,
                       exclude: set[int] | None = None, min_side: int = 0) -> CalibrationImages:
    """Up to ``count`` images from ``digits`` (indices in ``exclude`` left out, e.g. the
    held-out split) or from every file under a folder, in a seeded random order.
    ``min_side``: the model's ``decode_side``, so calibration sees the pixels ``predict`` sees."""
    rng = np.random.default_rng(seed)
    if source == "digits":
        ds = digits()
        idx = [i for i in range(len(ds.images)) if not exclude or i not in exclude]
        rng.shuffle(idx)
        chosen = [ds.images[i] for i in idx[:count]]
        if not chosen:
            raise DataError("digits: no images left for calibration once the verification "
                            "images are excluded")
        return CalibrationImages(chosen, "digits", len(chosen),
                                 folders=[str(ds.labels[i]) for i in idx[:count]])
    if not Path(source).is_dir():
        raise DataError(f"{source}: no such calibration folder; pass --calibration digits or a "
                        "folder of images")
    sample = sample_folder(source, count, seed, min_side)
    return _without_tiny(CalibrationImages(sample.images, str(source), sample.considered,
                                           sample.skipped, sample.skipped_files, sample.folders))


MIN_SIDE = 8  # pixels; the digits are 8x8. A 1x1 image calibrates int8 ranges to a constant.
MIN_USABLE = 32  # fewer calibration images than this get a warning


def _without_tiny(calib: CalibrationImages) -> CalibrationImages:
    """Images under MIN_SIDE pixels on a side skipped (named, counted); none left is an error."""
    kept = [i for i, im in enumerate(calib.images) if min(im.size) >= MIN_SIDE]
    keep = [calib.images[i] for i in kept]
    tiny = len(calib.images) - len(keep)
    if not tiny:
        return calib
    if not keep:
        raise DataError(f"{calib.source}: every readable image is smaller than {MIN_SIDE}x{MIN_SIDE} "
                        "pixels; int8 calibration needs real images of the kind the model will see")
    skipped = Counter(calib.skipped)
    skipped[f"smaller than {MIN_SIDE}x{MIN_SIDE}"] += tiny
    names = calib.skipped_files + [f"({tiny} images under {MIN_SIDE} px)"]
    folders = [calib.folders[i] for i in kept] if calib.folders else []
    return CalibrationImages(keep, calib.source, calib.considered, skipped, names, folders)
