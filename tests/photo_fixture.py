"""A real-photo image-folder fixture, built from photographs that ship inside PyPI packages.

Twelve classes, one real photograph each (no drawn or synthetic images), taken from files
inside installed wheels, so nothing is downloaded:

- scikit-learn (``sklearn/datasets/images``): china.jpg, flower.jpg;
- matplotlib (``mpl-data/sample_data``): grace_hopper.jpg;
- scikit-image (``skimage/data``, files that ship in the wheel, not the pooch downloads):
  astronaut, chelsea, coffee, rocket, hubble_deep_field, ihc, motorcycle_left, retina,
  camera (greyscale).

A class is "which photograph this crop comes from". Each photograph is cut into a 4x4 grid
of cells; four cells, one in every row and every column, are held out, the other twelve are
for training and calibration, and every crop lies inside one cell, so no held-out crop shares
a pixel with a training or calibration crop while both splits still sample the whole scene.
Crops have a random scale and aspect, random flips, and are written in a cycle of formats
a user's folder holds: JPEG with an EXIF orientation tag (the stored pixels rotated so that
an EXIF-aware reader sees the upright crop), RGB PNG, greyscale L PNG, palette P PNG, RGBA
PNG and 16-bit greyscale PNG ('I;16').

``build(DIR)`` writes ``DIR/train/<class>/...`` and ``DIR/heldout/<class>/...``; it is
deterministic for a seed. ``python tests/photo_fixture.py DIR`` does the same from a shell.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
from PIL import Image

# class name -> (package, path of the photograph inside the installed package)
PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "camera": ("skimage", "data/camera.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "coffee": ("skimage", "data/coffee.png"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "hubble": ("skimage", "data/hubble_deep_field.jpg"),
    "ihc": ("skimage", "data/ihc.png"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "rocket": ("skimage", "data/rocket.jpg"),
}
PACKAGES = ("scikit-learn", "matplotlib", "scikit-image")  # the PyPI names, for the test extra
FORMATS = ("jpeg_exif", "png_rgb", "png_l", "png_p", "png_rgba", "png_i16")
GRID = 4
HELD_CELLS = {(0, 1), (1, 3), (2, 0), (3, 2)}  # (row, column): one per row and per column
# EXIF orientation -> the transpose that *undoes* ImageOps.exif_transpose, so the stored
# pixels are what a camera would write for an upright scene under that tag.
_EXIF_STORE = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
               8: Image.Transpose.ROTATE_270}


def photo_path(name: str) -> Path:
    package, rel = PHOTOS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise FileNotFoundError(f"{name}: package {package!r} is not installed")
    path = Path(spec.origin).parent / rel
    if not path.is_file():
        raise FileNotFoundError(f"{name}: {path} is not in the installed {package}")
    return path


def load_photo(name: str) -> Image.Image:
    with Image.open(photo_path(name)) as im:
        return im.convert("RGB")


def regions(size: tuple[int, int]) -> dict[str, list[tuple[int, int, int, int]]]:
    """(left, top, right, bottom) cells of a photo for 'train' and 'heldout'; disjoint."""
    w, h = size
    xs = [round(w * i / GRID) for i in range(GRID + 1)]
    ys = [round(h * i / GRID) for i in range(GRID + 1)]
    out = {"train": [], "heldout": []}
    for r in range(GRID):
        for c in range(GRID):
            split = "heldout" if (r, c) in HELD_CELLS else "train"
            out[split].append((xs[c], ys[r], xs[c + 1], ys[r + 1]))
    return out


def random_crop(photo: Image.Image, box, rng, out_size: int) -> Image.Image:
    """A crop inside ``box``: side 50-100% of the box's short side, aspect 3:4 to 4:3."""
    left, top, right, bottom = box
    bw, bh = right - left, bottom - top
    side = rng.uniform(0.5, 1.0) * min(bw, bh)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw, ch = min(bw, round(side * np.sqrt(aspect))), min(bh, round(side / np.sqrt(aspect)))
    x0, y0 = left + int(rng.integers(0, bw - cw + 1)), top + int(rng.integers(0, bh - ch + 1))
    crop = photo.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = out_size / max(cw, ch)
    return crop.resize((max(8, round(cw * scale)), max(8, round(ch * scale))), Image.BILINEAR)


def save_as(crop: Image.Image, fmt: str, stem: Path, rng) -> Path:
    """Write an RGB crop in one of :data:`FORMATS`; returns the file written."""
    if fmt == "jpeg_exif":
        orientation = int(rng.choice(list(_EXIF_STORE)))
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = stem.with_suffix(".jpg")
        crop.transpose(_EXIF_STORE[orientation]).save(path, quality=90, exif=exif)
        return path
    path = stem.with_suffix(".png")
    if fmt == "png_rgb":
        crop.save(path)
    elif fmt == "png_l":
        crop.convert("L").save(path)
    elif fmt == "png_p":
        crop.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(path)
    elif fmt == "png_rgba":
        crop.convert("RGBA").save(path)  # opaque alpha: composited on white it is unchanged
    elif fmt == "png_i16":
        grey = np.asarray(crop.convert("L"), np.uint16) * 257  # full 16-bit range
        Image.fromarray(grey).save(path)  # mode I;16
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return path


def build(root, train_per_class: int = 60, heldout_per_class: int = 40, size: int = 64,
          seed: int = 0, classes: tuple[str, ...] | None = None) -> dict:
    """Write the fixture under ``root``; returns a summary (counts, formats, seconds)."""
    started = time.perf_counter()
    root = Path(root)
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "heldout": 0}
    formats: dict[str, int] = {}
    for name in classes or tuple(PHOTOS):
        photo = load_photo(name)
        for split, n in (("train", train_per_class), ("heldout", heldout_per_class)):
            cells = regions(photo.size)[split]
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            offset = int(rng.integers(len(FORMATS)))  # every format equally often per class
            for i in range(n):
                crop = random_crop(photo, cells[int(rng.integers(len(cells)))], rng, size)
                fmt = FORMATS[(i + offset) % len(FORMATS)]
                save_as(crop, fmt, folder / f"{name}_{i:04d}", rng)
                formats[fmt] = formats.get(fmt, 0) + 1
                counts[split] += 1
    return {"root": str(root), "classes": list(classes or PHOTOS), "counts": counts,
            "formats": formats, "size": size, "seed": seed,
            "seconds": round(time.perf_counter() - started, 2)}


if __name__ == "__main__":
    import argparse
    import json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root")
    p.add_argument("--train", type=int, default=60)
    p.add_argument("--heldout", type=int, default=40)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(json.dumps(build(args.root, args.train, args.heldout, args.size, args.seed), indent=1))
