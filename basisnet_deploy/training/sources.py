"""Where training batches come from: a small set in memory (digits) or a streamed folder.

Both give the trainer the same interface: ``count`` training images, ``batches(epoch, steps,
ctx, global_batch)`` for ``strategy.distribute_datasets_from_function``, ``evaluate(net)`` on
the held-out split, ``skipped()`` and ``record()`` (what ``config.json`` keeps of the split).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from basisnet_deploy.data.datasets import Dataset
from basisnet_deploy.data.folders import FileList, split_record
from basisnet_deploy.data.preprocessing import Preprocessing
from basisnet_deploy.training import stream


def evaluate_batches(net, batches) -> dict:
    """Held-out top-1 of both stages over a dataset of (light, image, label) batches."""
    lm_hits = sp_hits = n = 0
    for light, image, y in batches:
        out, logits = net(light, image)
        y = y.numpy()
        lm_hits += int(np.sum(np.argmax(out["logits"], -1) == y))
        sp_hits += int(np.sum(np.argmax(logits, -1) == y))
        n += len(y)
    d = max(n, 1)
    return {"lightweight_top1": lm_hits / d, "specialist_top1": sp_hits / d, "examples": n}


def _shard_batch(ds, ctx, steps: int, global_batch: int):
    if ctx.num_input_pipelines > 1:
        ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
    ds = ds.batch(ctx.get_per_replica_batch_size(global_batch), drop_remainder=True).take(steps)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(stream.dataset_options())


class MemorySource:
    """A data set already in memory (the 1,797 digits): preprocessed once, permuted per epoch."""

    augment = False

    def __init__(self, dataset: Dataset, arch, pre: Preprocessing, settings):
        train_set, self.test = dataset.split(settings.held_out, settings.seed)
        self.arch, self.pre, self.seed, self.dataset = arch, pre, settings.seed, dataset
        self.light = train_set.tensors(arch.light_resolution, pre)
        self.image = train_set.tensors(arch.resolution, pre)
        self.labels = train_set.labels
        self.count = len(self.labels)

    def batches(self, epoch: int, steps: int, ctx, global_batch: int):
        # Epoch ``epoch`` of one seeded, reshuffled-per-iteration tf.data shuffle: the order the
        # trainer used before streaming existed, so digits runs (and the documented demo figures) keep it.
        n = self.count
        ds = (tf.data.Dataset.from_tensor_slices((self.light, self.image, self.labels))
              .shuffle(n, seed=self.seed, reshuffle_each_iteration=True).repeat()
              .skip(epoch * n).take(n))
        return _shard_batch(ds, ctx, steps, global_batch)

    def evaluate(self, net) -> dict:
        a = self.arch
        ds = tf.data.Dataset.from_tensor_slices((self.test.tensors(a.light_resolution, self.pre),
                                                 self.test.tensors(a.resolution, self.pre),
                                                 self.test.labels)).batch(256)
        return evaluate_batches(net, ds)

    def skipped(self) -> dict:
        return {"skipped": dict(self.dataset.skipped)}

    def record(self) -> dict:
        return {}


class FolderSource:
    """An image folder streamed from disk (training.stream); the split is recorded by name."""

    def __init__(self, files: FileList, arch, pre: Preprocessing, settings, run):
        self.train, self.test = files.split(settings.held_out, settings.seed)
        self.augment = True if run.augment is None else bool(run.augment)
        spec = stream.StreamSpec(arch.light_resolution, arch.resolution, pre, self.augment,
                                 settings.seed, run.cache_dir)
        self.skips = stream.SkipLog()
        self.decoder = stream.Decoder(spec, self.skips)
        self.eval_decoder = stream.Decoder(stream.StreamSpec(
            arch.light_resolution, arch.resolution, pre, False, settings.seed, run.cache_dir),
            self.skips)
        self.count = len(self.train.paths)

    def batches(self, epoch: int, steps: int, ctx, global_batch: int):
        return stream.train_batches(self.train, self.decoder, epoch, steps, ctx, global_batch)

    def evaluate(self, net) -> dict:
        return evaluate_batches(net, stream.eval_batches(self.test, self.eval_decoder))

    def skipped(self) -> dict:
        s = self.skips.summary()
        return {"skipped": s["by_reason"], "skipped_files": s["first"]}

    def record(self) -> dict:
        return split_record(self.test)


def make_source(dataset, arch, pre: Preprocessing, settings, run):
    if isinstance(dataset, FileList):
        return FolderSource(dataset, arch, pre, settings, run)
    return MemorySource(dataset, arch, pre, settings)
