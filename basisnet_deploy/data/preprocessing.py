"""One image file in, one input tensor out: loading and preprocessing.

Preprocessing here is the single definition that training, calibration and verification use
(the manifest repeats it for on-device code): EXIF transpose, RGB, resize by the config's rule,
scale to the config's input range.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from basisnet_deploy.common.errors import ConfigError, UserError
from basisnet_deploy.common.jsonable import finite_number

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
MAX_PIXELS = 64_000_000  # refuse larger images: a decompression bomb, or nothing we can use

RESIZE_RULES = ("squash", "center_crop")
_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


class DataError(UserError):
    pass


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes an input tensor; the manifest repeats it for every runtime."""

    resize: str = "center_crop"  # squash: resize to RxR; center_crop: short side to R/crop, crop
    crop_fraction: float = 0.875
    input_range: tuple[float, float] = (-1.0, 1.0)
    interpolation: str = "bilinear"

    def validate(self, where: str = "preprocessing") -> "Preprocessing":
        if self.resize not in RESIZE_RULES:
            raise ConfigError(f"{where}.resize: unknown rule {self.resize!r}; "
                              f"choose one of {list(RESIZE_RULES)}")
        if not 0 < self.crop_fraction <= 1:
            raise ConfigError(f"{where}.crop_fraction: must be in (0, 1], got {self.crop_fraction}")
        if len(self.input_range) != 2 or not all(finite_number(v) and abs(v) <= _FLOAT32_MAX
                                                 for v in self.input_range):
            raise ConfigError(f"{where}.input_range: two finite numbers [low, high], got "
                              f"{list(self.input_range)!r}")
        lo, hi = self.input_range
        if not lo < hi:
            raise ConfigError(f"{where}.input_range: low must be below high, got {[lo, hi]}")
        if float(hi) - float(lo) > _FLOAT32_MAX:  # each holds, their span need not
            raise ConfigError(f"{where}.input_range: {[lo, hi]} spans more than float32 holds; "
                              "the model's inputs are float32")
        if self.interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ConfigError(f"{where}.interpolation: unknown {self.interpolation!r}")
        return self


_FLOAT32_MAX = float(np.finfo(np.float32).max)  # the model's inputs are float32


DECODE_FACTOR = 2  # the decoded short side, in multiples of what preprocess resizes it to
AUGMENT_FACTOR = 4  # with augmentation: a crop of 8% of the area (1/sqrt(0.08) ~ 3.5x
                    # smaller a side) is then still shrunk, never enlarged, to the input size


def decode_side(pre: Preprocessing, *resolutions: int, augment: bool = False) -> int:
    """The short side an image is decoded to for a model of these input resolutions:
    ``DECODE_FACTOR`` (``AUGMENT_FACTOR`` for augmented training) times what
    :func:`preprocess` resizes the short side to for the largest of them.

    Un-augmented training (and its cache), evaluation, calibration, verification, ``predict``,
    ``report`` and ``bench`` all pass this same figure to :func:`load_image`, so all of them
    see the same pixels.
    """
    need = max(resolutions) / (pre.crop_fraction if pre.resize == "center_crop" else 1.0)
    return (AUGMENT_FACTOR if augment else DECODE_FACTOR) * math.ceil(need)


JPEG_SCALES = (8, 4, 2)  # the DCT scale-downs libjpeg decodes directly


def _draft(im: Image.Image, min_side: int) -> None:
    """Have libjpeg decode a JPEG at the largest of 1/8, 1/4, 1/2 scale whose short side is
    still at least ``min_side`` (``Image.draft``; other formats are left alone).

    Decoding 2000x1500 phone photos dominates streamed training: 47 ms each in full against
    12 ms at 1/4 scale (measured here, Pillow 13). The scaled IDCT is itself a low-pass
    filter, so the image is smaller, not aliased.
    """
    if min_side <= 0 or im.format not in ("JPEG", "MPO"):  # MPO: phone JPEGs with a gain map
        return
    w, h = im.size
    scale = next((s for s in JPEG_SCALES if min(w, h) // s >= min_side), 1)
    if scale > 1:
        im.draft(None, (w // scale, h // scale))


def load_image(path: str | os.PathLike, min_side: int = 0) -> Image.Image:
    """Open an image as RGB, upright. Raises :class:`DataError` naming the file.

    Greyscale, palette, CMYK and alpha images are converted (alpha composited on white);
    truncated files, non-images and images over ``MAX_PIXELS`` are refused. With
    ``min_side`` (from :func:`decode_side`), a large JPEG is decoded at a reduced scale whose
    short side is still at least ``min_side`` (so under twice that, unless the scale steps
    run out), and any image whose short side is still over ``2 * min_side`` (a large PNG, a
    huge JPEG) is shrunk to that (bilinear); 0 decodes and keeps every pixel.

    Why not shrink to ``min_side`` itself: a second resize that close to the input size
    moves the tensor 5x further from a full decode's (mean absolute difference 0.044 against
    0.008 on scikit-learn's china.jpg at the demo size).
    """
    return _shrink(_load_rgb(path, min_side), 2 * min_side)


def _shrink(im: Image.Image, max_short: int) -> Image.Image:
    """``im`` with its short side brought down to ``max_short`` if longer (0: unchanged)."""
    w, h = im.size
    if max_short <= 0 or min(w, h) <= max_short:
        return im
    scale = max_short / min(w, h)
    size = (max_short, max(1, round(h * scale))) if w <= h else (max(1, round(w * scale)), max_short)
    return im.resize(size, Image.BILINEAR)


def _load_rgb(path: str | os.PathLike, min_side: int) -> Image.Image:
    """:func:`load_image` before the shrink."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise DataError(f"{path}: {im.width}x{im.height} is larger than "
                                    f"{MAX_PIXELS} pixels; refused as a possible decompression bomb")
                _draft(im, min_side)
                im = ImageOps.exif_transpose(im)
                im.load()
                im = to_8bit(im)
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


_HIGH_BIT_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0,
                   "I": None, "F": None}


def to_8bit(im: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float greyscale image as 8-bit "L", scaled, not clipped.

    Pillow's ``convert("RGB")`` clips such images at 255 (a 16-bit PNG turns white). 16-bit
    images scale by 255/65535; "I" images holding 16-bit data (Pillow opens 16-bit PNGs as
    "I" or "I;16") scale the same way, wider ones by their maximum; float images by [0, 1]
    when they lie in it, else by their maximum. Other modes pass through.
    """
    if im.mode not in _HIGH_BIT_MODES:
        return im
    x = np.asarray(im, dtype=np.float64)
    full = _HIGH_BIT_MODES[im.mode]
    if full is None:
        top = float(np.nanmax(x)) if x.size else 0.0
        if im.mode == "F" and 0.0 <= np.nanmin(x) and top <= 1.0:
            full = 1.0
        else:
            full = 65535.0 if top <= 65535 else max(top, 1.0)
    y = np.clip(np.nan_to_num(x) * (255.0 / full), 0, 255)
    return Image.fromarray(np.round(y).astype(np.uint8), mode="L")


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




def skip_reason(message: str) -> str:
    """The counting bucket for a DataError message from :func:`load_image`."""
    for key in ("not an image", "truncated", "decompression bomb"):
        if key in message:
            return key
    return "unreadable"
