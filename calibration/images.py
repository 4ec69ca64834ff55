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

from basisnet_deploy.data import IMAGE_SUFFIXES, DataError, digits, load_image, skip_reason


@dataclass
class CalibrationImages:
    images: list
    source: str
    considered: int
    skipped: Counter = field(default_factory=Counter)

    def report(self) -> dict:
        return {"source": self.source, "used": len(self.images), "considered": self.considered,
                "skipped": dict(self.skipped)}


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
    root = Path(source)
    if not root.is_dir():
        raise DataError(f"{root}: no such calibration folder; pass --calibration digits or a "
                        "folder of images")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"{root}: the calibration folder is empty; add real images "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    order = rng.permutation(len(files))
    images, skipped, considered = [], Counter(), 0
    for i in order:
        if len(images) >= count:
            break
        considered += 1
        try:
            images.append(load_image(files[i]))
        except DataError as e:
            skipped[skip_reason(str(e))] += 1
    if not images:
        raise DataError(f"{root}: none of its {len(files)} files is a readable image "
                        f"(skipped: {dict(skipped)}); calibration needs real images")
    return CalibrationImages(images, str(root), considered, skipped)
