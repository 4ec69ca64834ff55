"""Images in, input tensors out: the built-in digits set, image folders, and preprocessing.

Preprocessing here is the single definition that training, calibration and verification use
(the manifest repeats it for on-device code): EXIF transpose, RGB, resize by the config's rule,
scale to the config's input range.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from basisnet_deploy.config import Preprocessing
from basisnet_deploy.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
MAX_PIXELS = 64_000_000  # refuse larger images: a decompression bomb, or nothing we can use

_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


class DataError(UserError):
    pass


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image as RGB, upright. Raises :class:`DataError` naming the file.

    Greyscale, palette, CMYK and alpha images are converted (alpha composited on white);
    truncated files, non-images and images over ``MAX_PIXELS`` are refused.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise DataError(f"{path}: {im.width}x{im.height} is larger than "
                                    f"{MAX_PIXELS} pixels; refused as a possible decompression bomb")
                im = ImageOps.exif_transpose(im)
                im.load()
                im = _sixteen_bit_to_8(im)
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    im = im.convert("RGBA")
                    background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                    return Image.alpha_composite(background, im).convert("RGB")
                return im.convert("RGB")
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: refused as a possible decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: unreadable or truncated image ({e})") from None


def _sixteen_bit_to_8(im: Image.Image) -> Image.Image:
    """16-bit greyscale (PNG 'I;16*') to 'L' by its full range: Pillow's convert('RGB')
    clips such values at 255, which turns most of a 16-bit photo white."""
    if not im.mode.startswith("I;16"):
        return im
    x = np.asarray(im, dtype=np.float32) / 257.0
    return Image.fromarray(np.clip(np.round(x), 0, 255).astype(np.uint8), mode="L")


def preprocess(image: Image.Image, resolution: int, pre: Preprocessing) -> np.ndarray:
    """An RGB PIL image -> float32 [resolution, resolution, 3] in ``pre.input_range``."""
    resample = _RESAMPLE[pre.interpolation]
    if pre.resize == "squash":
        image = image.resize((resolution, resolution), resample)
    else:  # center_crop: short side to resolution / crop_fraction, then the central square
        short = round(resolution / pre.crop_fraction)
        w, h = image.size
        scale = short / min(w, h)
        nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
        image = image.resize((nw, nh), resample)
        left, top = (nw - resolution) // 2, (nh - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
    x = np.asarray(image, dtype=np.float32) / 255.0
    lo, hi = pre.input_range
    return x * (hi - lo) + lo


@dataclass
class Dataset:
    """Labelled RGB images at their source size, plus what was skipped while reading."""

    images: list
    labels: np.ndarray
    class_names: tuple[str, ...]
    skipped: Counter = field(default_factory=Counter)
    source: str = ""

    def tensors(self, resolution: int, pre: Preprocessing) -> np.ndarray:
        return np.stack([preprocess(im, resolution, pre) for im in self.images])

    def split_indices(self, held_out: float, seed: int) -> tuple[list[int], list[int]]:
        """Deterministic stratified split: ``held_out`` of every class goes to the second list."""
        rng = np.random.default_rng(seed)
        train_idx, test_idx = [], []
        for c in range(len(self.class_names)):
            idx = np.flatnonzero(self.labels == c)
            rng.shuffle(idx)
            n = int(round(len(idx) * held_out))
            test_idx.extend(int(i) for i in idx[:n])
            train_idx.extend(int(i) for i in idx[n:])
        return sorted(train_idx), sorted(test_idx)

    def split(self, held_out: float, seed: int) -> tuple["Dataset", "Dataset"]:
        train_idx, test_idx = self.split_indices(held_out, seed)
        return self.subset(train_idx), self.subset(test_idx)

    def subset(self, idx) -> "Dataset":
        return Dataset([self.images[i] for i in idx], self.labels[list(idx)], self.class_names,
                       Counter(self.skipped), self.source)


def digits() -> Dataset:
    """The 1,797 8x8 handwritten digits that ship inside scikit-learn, as RGB images."""
    from sklearn.datasets import load_digits

    d = load_digits()
    pixels = np.clip(d.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    images = [Image.fromarray(p, mode="L").convert("RGB") for p in pixels]
    return Dataset(images, d.target.astype(np.int64), tuple(str(i) for i in range(10)),
                   source="digits")


def image_folder(root: str | os.PathLike) -> Dataset:
    """``root/<class>/<image>``; class names are the sorted sub-folder names.

    Files that are not readable images are skipped and counted by reason, never fatal.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory; expected DIR/<class>/<image files>")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root}: found {len(classes)} class folders; an image folder needs at "
                        "least two sub-folders, one per class")
    images, labels, skipped = [], [], Counter()
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            try:
                images.append(load_image(path))
                labels.append(label)
            except DataError as e:
                skipped[skip_reason(str(e))] += 1
    if not images:
        raise DataError(f"{root}: no readable images in {len(classes)} class folders "
                        f"(skipped: {dict(skipped) or 'nothing found'})")
    return Dataset(images, np.asarray(labels, np.int64), tuple(classes), skipped, str(root))


def skip_reason(message: str) -> str:
    """The counting bucket for a DataError message from :func:`load_image`."""
    for key in ("not an image", "truncated", "decompression bomb"):
        if key in message:
            return key
    return "unreadable"


def load_dataset(spec: str) -> Dataset:
    """``digits`` or a path to an image folder."""
    return digits() if spec == "digits" else image_folder(spec)
