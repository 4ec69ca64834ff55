"""Labelled image sets: the built-in digits, image folders, held-out splits."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from basisnet_deploy.common.errors import UserError
from basisnet_deploy.data.heldout import HeldOut, check_classes, list_held_out
from basisnet_deploy.data.preprocessing import (IMAGE_SUFFIXES, DataError, Preprocessing, decode_side,
                                                load_image, preprocess, skip_reason)


@dataclass
class Dataset:
    """Labelled RGB images at their source size, plus what was skipped while reading."""

    images: list
    labels: np.ndarray
    class_names: tuple[str, ...]
    skipped: Counter = field(default_factory=Counter)
    source: str = ""
    skipped_files: list = field(default_factory=list)  # paths, in reading order

    def tensors(self, resolution: int, pre: Preprocessing) -> np.ndarray:
        return np.stack([preprocess(im, resolution, pre) for im in self.images])

    def split_indices(self, held_out: float, seed: int) -> tuple[list[int], list[int]]:
        """Deterministic stratified split: ``held_out`` of every class goes to the second list."""
        from basisnet_deploy.data.folders import stratified_split

        return stratified_split(self.labels, len(self.class_names), held_out, seed)

    def split(self, held_out: float, seed: int) -> tuple["Dataset", "Dataset"]:
        train_idx, test_idx = self.split_indices(held_out, seed)
        return self.subset(train_idx), self.subset(test_idx)

    def subset(self, idx) -> "Dataset":
        return Dataset([self.images[i] for i in idx], self.labels[list(idx)], self.class_names,
                       Counter(self.skipped), self.source, list(self.skipped_files))


def digits() -> Dataset:
    """The 1,797 8x8 handwritten digits that ship inside scikit-learn, as RGB images."""
    from sklearn.datasets import load_digits

    d = load_digits()
    pixels = np.clip(d.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    images = [Image.fromarray(p, mode="L").convert("RGB") for p in pixels]
    return Dataset(images, d.target.astype(np.int64), tuple(str(i) for i in range(10)),
                   source="digits")


def image_folder(root: str | os.PathLike, min_side: int = 0) -> Dataset:
    """``root/<class>/<image>``; class names are the sorted sub-folder names. ``min_side``:
    :func:`load_image`'s (a model's :func:`decode_side`; 0 decodes every pixel).

    Files that are not readable images are skipped and counted by reason, never fatal.
    """
    from basisnet_deploy.data.folders import class_folders

    root = Path(root)
    classes = class_folders(root)
    images, labels, skipped, names = [], [], Counter(), []
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            try:
                images.append(load_image(path, min_side))
                labels.append(label)
            except DataError as e:
                skipped[skip_reason(str(e))] += 1
                names.append(str(path))
    if not images:
        raise DataError(f"{root}: no readable images in {len(classes)} class folders "
                        f"({describe_skipped(skipped, names) or 'nothing found'})")
    return Dataset(images, np.asarray(labels, np.int64), tuple(classes), skipped, str(root), names)


def load_dataset(spec: str) -> Dataset:
    """``digits`` or a path to an image folder."""
    return digits() if spec == "digits" else image_folder(spec)


def evaluation_set(cfg, images_dir: str | None = None) -> HeldOut:
    """Held-out images for verification, listed and not yet decoded: ``images_dir``
    ('digits' or a folder), or by default the checkpoint's own held-out split (digits, or
    the files a folder-trained checkpoint recorded). Class folders are checked against the
    checkpoint's labels here, before any image is decoded."""
    a = cfg.architecture
    side = decode_side(cfg.preprocessing, a.resolution, a.light_resolution)
    trained_on = cfg.training.get("dataset")
    held_folder = _recorded_folder_split(cfg, trained_on, images_dir, side)
    if held_folder is not None:
        return held_folder
    if images_dir is None and trained_on != "digits":
        raise UserError("this checkpoint was not trained on digits: pass --images DIR with "
                        "held-out images (DIR/<class>/<images> to also score accuracy)")
    if images_dir in (None, "digits"):
        # The checkpoint's own held-out split when it was trained on digits (never a training
        # image); for another checkpoint's explicit "digits", a held-out fifth (seed 0).
        # Digits calibration uses the rest.
        settings = cfg.training.get("settings", {}) if trained_on == "digits" else {}
        ds = digits()
        _, test_idx = ds.split_indices(settings.get("held_out", 0.2), settings.get("seed", 0))
        return HeldOut([ds.images[i] for i in test_idx], ds.labels[test_idx], "held-out digits",
                       test_idx, ds.class_names)
    return list_held_out(images_dir, cfg.labels, side)


def _recorded_folder_split(cfg, trained_on, images_dir, side: int) -> HeldOut | None:
    """The held-out files a folder-trained checkpoint recorded, when ``images_dir`` is that
    folder (or not given): never a training image."""
    from basisnet_deploy.data.folders import recorded_held_out

    if trained_on in (None, "digits") or "held_out_files" not in cfg.training:
        return None
    if images_dir is not None and os.path.realpath(images_dir) != os.path.realpath(trained_on):
        return None
    files = recorded_held_out(cfg.training, images_dir or trained_on)
    remap = check_classes(files.class_names, cfg.labels, images_dir or trained_on)
    return HeldOut(files.absolute(), remap[files.labels], f"held-out {trained_on}", [],
                   tuple(cfg.labels), side)


@dataclass
class FolderSample:
    """Images read from every file under a folder, in a seeded order, and what was skipped."""

    images: list
    considered: int
    skipped: Counter = field(default_factory=Counter)
    skipped_files: list = field(default_factory=list)
    folders: list = field(default_factory=list)  # each image's class folder ('.': the root)


def _class_folder(relative: Path) -> str:
    """The top-level folder a file sits in, which training takes as its class ('.' at the root)."""
    return relative.parts[0] if len(relative.parts) > 1 else "."


def sample_folder(root: str | os.PathLike, count: int, seed: int = 0,
                  min_side: int = 0) -> FolderSample:
    """Up to ``count`` readable images from every file under ``root`` (any depth), seeded.

    Unreadable files are skipped and counted by reason; a folder with no readable image is a
    :class:`DataError` naming it.
    """
    root = Path(root)
    if not root.is_dir():
        what = "a file, not a folder" if root.exists() else "no such folder"
        raise DataError(f"{root}: {what}; pass a folder of images")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"{root}: the folder is empty; add real images "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    order = np.random.default_rng(seed).permutation(len(files))
    images, skipped, considered, names, folders = [], Counter(), 0, [], []
    for i in order:
        if len(images) >= count:
            break
        considered += 1
        try:
            images.append(load_image(files[i], min_side))
            folders.append(_class_folder(files[i].relative_to(root)))
        except DataError as e:
            skipped[skip_reason(str(e))] += 1
            names.append(str(files[i]))
    if not images:
        raise DataError(f"{root}: none of its {len(files)} files is a readable image "
                        f"({describe_skipped(skipped, names)})")
    return FolderSample(images, considered, skipped, names, folders)


def describe_skipped(skipped: Counter, names: list, limit: int = 5) -> str:
    """'skipped 7 files (not an image: 6, truncated: 1): a.txt, b.png, ... and 2 more'."""
    total = sum(skipped.values())
    if not total:
        return ""
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items()))
    shown = ", ".join(names[:limit]) + (f" and {total - limit} more" if total > limit else "")
    return f"skipped {total} files ({reasons}): {shown}"

