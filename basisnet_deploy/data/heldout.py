"""Held-out images listed first, decoded as they are reached: the streamed path that
``verify``, export's own verification, ``calibrate-threshold``, ``report`` and ``bench``
score exported models on.

Listing is cheap (paths and labels, or the in-memory digits); each image is decoded with
:func:`~basisnet_deploy.data.preprocessing.load_image` only when its batch is reached, so
memory stays at one batch whatever the folder holds. Unreadable files (corrupt, not an
image, a decompression bomb) are counted by reason and skipped, never fatal. Class folders
are checked against the model's labels while listing, before anything is decoded.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from basisnet_deploy.data.preprocessing import IMAGE_SUFFIXES, DataError, load_image, skip_reason

UNLABELLED = -1

# Images per call of a float TF model on held-out images: at most ``most``, and at most
# BATCH_PIXELS specialist input pixels, since the float specialist synthesizes every image's
# own kernels: at full size (224 px, 16 bases) a batch of 32 took 1.8 GB over the model, one
# of 8 took 0.5 GB.
BATCH_PIXELS = 8 * 224 * 224


def batch_size_for(resolution: int, most: int = 32) -> int:
    """Images per float-model batch for a specialist of this input size (1 to ``most``)."""
    return max(1, min(most, BATCH_PIXELS // (resolution * resolution)))


@dataclass(frozen=True)
class Example:
    """One decoded image, its label (``UNLABELLED`` when unknown) and its listing position."""

    image: object  # PIL.Image.Image, RGB
    label: int
    index: int


@dataclass
class Skipped:
    """Files that could not be decoded: counted by reason, names kept in reading order."""

    counts: Counter = field(default_factory=Counter)
    files: list = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.counts[skip_reason(message)] += 1
        self.files.append(str(path))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_json(self, keep: int = 5) -> dict:
        return {"count": self.total, "by_reason": dict(sorted(self.counts.items())),
                "first": self.files[:keep]}


@dataclass
class HeldOut:
    """Images to score a model on, never ones it trained on: listed, not yet decoded.

    ``entries`` are file paths, or PIL images for an in-memory set (the digits);
    ``labels`` index ``class_names`` (None when the images are unlabelled); ``indices`` are
    positions in the digits, so calibration can leave them out ([] for folders).
    """

    entries: list
    labels: np.ndarray | None
    source: str
    indices: list[int] = field(default_factory=list)
    class_names: tuple[str, ...] = ()
    side: int = 0  # load_image's min_side: the model's decode_side
    skipped: Skipped = field(default_factory=Skipped)

    def __len__(self) -> int:
        return len(self.entries)

    def subset(self, idx) -> "HeldOut":
        """These entries, with a fresh count of skipped files."""
        idx = [int(i) for i in idx]
        labels = None if self.labels is None else self.labels[idx]
        indices = [self.indices[i] for i in idx] if self.indices else []
        return HeldOut([self.entries[i] for i in idx], labels, self.source, indices,
                       self.class_names, self.side)

    def sample(self, limit: int | None, seed: int = 0) -> "HeldOut":
        """All of it, or ``limit`` entries drawn with ``seed`` (spread over the classes when
        labelled), in listing order."""
        labels = np.zeros(len(self), np.int64) if self.labels is None else self.labels
        return self.subset(sample_indices(labels, limit, seed))

    def image(self, i: int):
        """Entry ``i`` decoded (an in-memory image as it is); a :class:`DataError` if unreadable."""
        entry = self.entries[i]
        return load_image(entry, self.side) if isinstance(entry, (str, os.PathLike)) else entry

    def examples(self) -> Iterator[Example]:
        """Every readable entry, decoded one at a time; unreadable ones go to ``skipped``."""
        for i, entry in enumerate(self.entries):
            label = UNLABELLED if self.labels is None else int(self.labels[i])
            try:
                yield Example(self.image(i), label, i)
            except DataError as e:
                self.skipped.add(entry, str(e))

    def batches(self, size: int = 32) -> Iterator[list[Example]]:
        """:meth:`examples` in lists of ``size`` (the last one shorter)."""
        batch = []
        for example in self.examples():
            batch.append(example)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def first_images(self, count: int) -> list:
        """The first ``count`` readable images (decoded), for what needs a few in memory."""
        out = []
        for example in self.examples():
            out.append(example.image)
            if len(out) == count:
                break
        return out


def sample_indices(labels: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray:
    """All indices, or ``limit`` of them spread over the classes (seeded, round robin over
    the classes in a random order within each), sorted."""
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    perm = np.random.default_rng(seed).permutation(len(labels))
    rank = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        members = perm[labels[perm] == c]
        rank[members] = np.arange(len(members))
    position = np.empty(len(labels), np.int64)
    position[perm] = np.arange(len(labels))
    return np.sort(np.lexsort((position, rank))[:limit])


def check_classes(class_names, labels, root) -> np.ndarray:
    """The model's label index of each class folder; a :class:`DataError` naming the folder
    when one is not among ``labels``, before any image is decoded."""
    labels = tuple(labels)
    unknown = [c for c in class_names if c not in labels]
    if unknown:
        shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
        raise DataError(f"{root}: class folders {unknown[:3]} are not among the model's labels "
                        f"({shown}); rename them to match (verify and bench also take a "
                        "folder of images without class folders, scoring agreement only)")
    return np.asarray([labels.index(c) for c in class_names], np.int64)


def list_held_out(root, labels, side: int = 0) -> HeldOut:
    """A folder as a :class:`HeldOut`, listed without decoding.

    ``root/<class>/<images>`` with class folders named as ``labels`` is labelled (a subset of
    the classes is fine); a folder of images without sub-folders is unlabelled. One-line
    :class:`DataError` for a missing or empty folder, an empty class folder, or a class
    folder the model does not know.
    """
    from basisnet_deploy.data.folders import list_folder

    root = Path(root)
    if not root.is_dir():
        what = "a file, not a folder" if root.exists() else "no such folder"
        raise DataError(f"{root}: {what}; pass a folder of images")
    children = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not children:
        raise DataError(f"{root}: the folder is empty; add images "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    if not any(p.is_dir() for p in children):
        files = sorted(str(p) for p in children if p.is_file())
        if not any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files):
            raise DataError(f"{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return HeldOut(files, None, str(root), side=side)
    listed = list_folder(root)
    remap = check_classes(listed.class_names, labels, root)
    return HeldOut(listed.absolute(), remap[listed.labels], str(root), [], tuple(labels), side)


def class_counts(labels, class_names) -> dict[str, int]:
    """Images per class name, for the classes that have any."""
    counts = Counter(int(y) for y in labels)
    return {class_names[c]: counts[c] for c in sorted(counts) if 0 <= c < len(class_names)}
