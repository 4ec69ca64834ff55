"""The streaming input pipeline: files in, batches of both stages' inputs out.

An image folder is never decoded into memory as a whole. Each epoch:

    file list, permuted by (seed, epoch)    (the shuffle holds names, not images)
      -> shard per input pipeline            (one per worker under multi-worker training)
      -> decode + augment + preprocess       (tf.numpy_function, num_parallel_calls=AUTOTUNE)
      -> drop unreadable files (counted)     (filter on a flag the decoder returns)
      -> batch (per replica) -> take(steps) -> prefetch(AUTOTUNE)

Decoding is :func:`basisnet_deploy.data.load_image` then :func:`preprocess`, the one definition
``predict``, calibration and verification use (a test checks the tensors are equal). Memory is
bounded by the prefetch and parallelism depths, not the data set size.

Augmentation (the paper's recipe, without AutoAugment): a random resized crop (Inception
style, area 8%-100%, aspect 3/4-4/3) and a horizontal flip of the decoded image, then each
resolution is resized from that same crop, so the lightweight model and the specialist see the
same view. Random draws come from ``(seed, epoch, file index)``, so a resumed run sees the
same crops as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import threading
from collections import Counter
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from PIL import Image

from basisnet_deploy.data.folders import FileList
from basisnet_deploy.data.preprocessing import (DataError, Preprocessing, decode_side, load_image,
                                                preprocess, skip_reason)

CROP_AREA = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


class SkipLog:
    """Unreadable files seen while streaming: counted once per file, by reason; first names."""

    def __init__(self, keep: int = 5):
        self._lock, self._keep = threading.Lock(), keep
        self.files: dict[str, str] = {}

    def add(self, path: str, reason: str) -> None:
        with self._lock:
            self.files.setdefault(path, reason)

    def summary(self) -> dict:
        with self._lock:
            names = list(self.files)
            return {"count": len(names), "by_reason": dict(Counter(self.files.values())),
                    "first": names[:self._keep]}


def random_resized_crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Inception-style crop: area in CROP_AREA of the image, aspect in CROP_RATIO; 10 tries,
    then the central square-ish crop."""
    w, h = image.size
    for _ in range(10):
        area = w * h * rng.uniform(*CROP_AREA)
        ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return image.crop((left, top, left + cw, top + ch))
    side = min(w, h)
    return image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))


def augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    image = random_resized_crop(image, rng)
    if rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    return image


@dataclass(frozen=True)
class StreamSpec:
    """How files become inputs: resolutions, preprocessing, augmentation, cache."""

    light_resolution: int
    resolution: int
    pre: Preprocessing
    augment: bool = False
    seed: int = 0
    cache_dir: str | None = None  # shrunk decoded images, reused across epochs and runs


class Decoder:
    """The Python side of the pipeline: path -> (light, image, ok). Thread-safe."""

    def __init__(self, spec: StreamSpec, skips: SkipLog):
        self.spec, self.skips = spec, skips
        self.squash = dataclasses.replace(spec.pre, resize="squash")
        self.side = decode_side(spec.pre, spec.resolution, spec.light_resolution, augment=spec.augment)

    def image(self, path: str) -> Image.Image:
        """``load_image(path, side)`` (what ``predict`` decodes, when not augmenting), or the
        same image from the cache."""
        if not self.spec.cache_dir:
            return load_image(path, self.side)
        return _cached_image(path, self.spec.cache_dir, self.side)

    def __call__(self, path, index, epoch):
        path = path.decode() if isinstance(path, bytes) else str(path)
        s = self.spec
        try:
            im = self.image(path)
        except DataError as e:
            self.skips.add(path, skip_reason(str(e)))
            return (np.zeros((s.light_resolution,) * 2 + (3,), np.float32),
                    np.zeros((s.resolution,) * 2 + (3,), np.float32), False)
        if s.augment:
            im = augment(im, np.random.default_rng([s.seed, int(epoch), int(index)]))
            return (preprocess(im, s.light_resolution, self.squash),
                    preprocess(im, s.resolution, self.squash), True)
        return preprocess(im, s.light_resolution, s.pre), preprocess(im, s.resolution, s.pre), True


CACHE_FORMAT = "decode-v2"  # in the key: entries of an older decoding are never reused


def _cached_image(path: str, cache_dir: str, side: int) -> Image.Image:
    """``load_image(path, side)``, from the cache when present; written atomically;
    unreadable files are remembered as such."""
    st = os.stat(path)
    key = hashlib.sha1(f"{CACHE_FORMAT}|{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{side}"
                       .encode()).hexdigest()
    entry = os.path.join(cache_dir, key[:2], key + ".npy")
    if os.path.exists(entry):
        arr = np.load(entry)
        if arr.ndim != 3:
            raise DataError(f"{path}: {bytes(arr).decode()} (cached)")
        return Image.fromarray(arr, "RGB")
    os.makedirs(os.path.dirname(entry), exist_ok=True)
    tmp = f"{entry}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        im = load_image(path, side)
    except DataError as e:
        reason = skip_reason(str(e)).encode()
        with open(tmp, "wb") as f:
            np.save(f, np.frombuffer(reason, np.uint8))
        os.replace(tmp, entry)
        raise
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(im, np.uint8))
    os.replace(tmp, entry)
    return im


def file_dataset(files: FileList, order, decoder: Decoder, epoch: int,
                 shard: tuple[int, int] = (1, 0)) -> tf.data.Dataset:
    """Decoded (light, image, label) elements of ``files`` in ``order``; unreadable dropped."""
    s = decoder.spec
    order = np.asarray(order, np.int64)
    paths = np.asarray(files.absolute(), dtype=object)[order].astype(str)
    ds = tf.data.Dataset.from_tensor_slices((paths, files.labels[order], order))
    if shard[0] > 1:
        ds = ds.shard(*shard)

    def decode(path, label, index):
        light, image, ok = tf.numpy_function(
            decoder, [path, index, tf.constant(epoch, tf.int64)],
            [tf.float32, tf.float32, tf.bool], stateful=False)
        light.set_shape((s.light_resolution, s.light_resolution, 3))
        image.set_shape((s.resolution, s.resolution, 3))
        return light, image, label, ok

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.filter(lambda *e: e[3]).map(lambda light, image, label, ok: (light, image, label))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of the training files for one epoch: a function of (seed, epoch)."""
    return np.random.default_rng([seed, 1_000_003, epoch]).permutation(n)


def dataset_options() -> tf.data.Options:
    """The options of every training and evaluation tf.data pipeline: deterministic, and not
    sharded by tf.distribute (each worker reads its own shard)."""
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    opts.deterministic = True
    return opts


def train_batches(files: FileList, decoder: Decoder, epoch: int, steps: int, ctx,
                  global_batch: int) -> tf.data.Dataset:
    """One epoch of training batches for the input pipeline of ``ctx`` (an InputContext).

    Each pipeline reads its own shard of the permuted files and yields exactly ``steps``
    batches of the per-replica size (files pass twice at most, to replace skipped ones), so
    every worker runs the same number of steps.
    """
    per_replica = ctx.get_per_replica_batch_size(global_batch)
    order = epoch_order(len(files.paths), decoder.spec.seed, epoch)
    order = np.concatenate([order, order])  # a second pass only fills in for skipped files
    ds = file_dataset(files, order, decoder, epoch, (ctx.num_input_pipelines, ctx.input_pipeline_id))
    ds = ds.batch(per_replica, drop_remainder=True).take(steps)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(dataset_options())


def eval_batches(files: FileList, decoder: Decoder, batch_size: int = 128) -> tf.data.Dataset:
    """Every readable file once, in order, without augmentation."""
    ds = file_dataset(files, np.arange(len(files.paths)), decoder, 0)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(dataset_options())
