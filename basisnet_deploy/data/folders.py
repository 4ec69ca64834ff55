"""Image folders as file lists: listed without decoding, split, and recorded.

Training streams a folder from its file list (``training.stream``), so nothing here decodes
more than the images it is asked for. The held-out split is a list of paths relative to the
folder, recorded in the checkpoint's ``config.json`` (``training.held_out_files``) so that
``evaluate``, ``export`` and ``verify`` score exactly those images and never a training one.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from basisnet_deploy.common.errors import UserError
from basisnet_deploy.data.preprocessing import IMAGE_SUFFIXES, DataError, load_image, skip_reason


@dataclass
class FileList:
    """Labelled image files under ``root`` (paths relative to it), not yet decoded."""

    root: str
    paths: list[str]
    labels: np.ndarray
    class_names: tuple[str, ...]

    @property
    def source(self) -> str:
        return self.root

    def absolute(self) -> list[str]:
        return [os.path.join(self.root, p) for p in self.paths]

    def subset(self, idx) -> "FileList":
        idx = list(idx)
        return FileList(self.root, [self.paths[i] for i in idx], self.labels[idx], self.class_names)

    def split_indices(self, held_out: float, seed: int) -> tuple[list[int], list[int]]:
        """The same seeded stratified split as :meth:`Dataset.split_indices`."""
        return stratified_split(self.labels, len(self.class_names), held_out, seed)

    def split(self, held_out: float, seed: int) -> tuple["FileList", "FileList"]:
        train_idx, test_idx = self.split_indices(held_out, seed)
        return self.subset(train_idx), self.subset(test_idx)


def stratified_split(labels: np.ndarray, classes: int, held_out: float,
                     seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) indices: ``held_out`` of every class, chosen with ``seed``. The one
    definition for in-memory sets and streamed folders, so both split the same way."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in range(classes):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n = int(round(len(idx) * held_out))
        test_idx.extend(int(i) for i in idx[:n])
        train_idx.extend(int(i) for i in idx[n:])
    return sorted(train_idx), sorted(test_idx)


def class_folders(root: Path) -> list[str]:
    """The sorted class sub-folder names of an image folder; a :class:`DataError` when it is
    missing or has fewer than two (one definition for in-memory and streamed folders)."""
    if not root.is_dir():
        raise DataError(f"{root}: no such directory; expected DIR/<class>/<image files>")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root}: found {len(classes)} class folders; an image folder needs at "
                        "least two sub-folders, one per class")
    return classes


def list_folder(root: str | os.PathLike) -> FileList:
    """``root/<class>/<files>`` as a :class:`FileList`; nothing is decoded.

    Every non-hidden file is listed (unreadable ones are skipped and counted while streaming).
    One-line :class:`DataError` for: no such folder, fewer than two classes, an empty class
    folder, a folder without a single image file.
    """
    root = Path(root)
    classes = class_folders(root)
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(str(p.relative_to(root)) for p in (root / name).rglob("*")
                       if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"{root / name}: class folder is empty; add images or remove it")
        paths.extend(files)
        labels.extend([label] * len(files))
    if not any(Path(p).suffix.lower() in IMAGE_SUFFIXES for p in paths):
        raise DataError(f"{root}: no image files in {len(classes)} class folders "
                        f"(expected {', '.join(sorted(IMAGE_SUFFIXES))})")
    return FileList(str(root), paths, np.asarray(labels, np.int64), tuple(classes))


def split_record(held: FileList) -> dict:
    """What ``config.json`` records about the held-out split of a folder."""
    digest = hashlib.sha256("\n".join(held.paths).encode()).hexdigest()
    return {"held_out_files": list(held.paths), "held_out_sha256": digest}


def recorded_held_out(training: dict, root: str | os.PathLike) -> FileList | None:
    """The held-out files a checkpoint recorded, under ``root``; None if none were recorded."""
    files = training.get("held_out_files")
    if files is None:
        return None
    listed = list_folder(root)
    index = {p: i for i, p in enumerate(listed.paths)}
    missing = [p for p in files if p not in index]
    if missing:
        raise UserError(f"{root}: held-out file {missing[0]!r} recorded in the checkpoint is "
                        f"missing ({len(missing)} of {len(files)}); pass the folder it was trained on")
    return listed.subset([index[p] for p in files])


def read_files(files: FileList, min_side: int = 0) -> tuple[list, np.ndarray, Counter]:
    """Decode every file of a (small) list: images, their labels, skipped files by reason.
    ``min_side``: :func:`~basisnet_deploy.data.preprocessing.load_image`'s."""
    images, labels, skipped = [], [], Counter()
    for path, label in zip(files.absolute(), files.labels):
        try:
            images.append(load_image(path, min_side))
            labels.append(int(label))
        except DataError as e:
            skipped[skip_reason(str(e))] += 1
    return images, np.asarray(labels, np.int64), skipped
