"""Joint training of both stages, with the paper's recipe scaled to small data.

What follows the paper (arXiv 2105.03014), and what is ours (docs/training.md repeats this):
- RMSProp (decay 0.9, momentum 0.9), linear learning-rate warm-up, then decay by 0.99 every
  ``decay_epochs``; L2 weight decay on conv/dense kernels; gradient clip by global norm.
- Coefficient warm-up ``alpha' = (1 - eps) alpha + eps / K``: eps = 1 for the first
  ``eps_hold`` of the steps, then linear to 0 over the next ``eps_decay``. The paper's 10K and
  40K of 400K steps are 2.5% and 10%; at a few hundred steps that is a handful, and the
  specialist's gradient through the coefficients then stalls both stages (measured on digits:
  42%/30% train top-1 after 6 epochs, against 80%/92% with the coefficients held uniform).
  Ours: 25% hold, 25% decay.
- Basis-model dropout, rate 1/8 for K <= 8 and 1/16 for K >= 16 (ours: 1/8 for 9..15 too):
  each coefficient of a block is dropped with that rate, at least one is kept (ours: the
  largest), the rest are renormalized to sum 1 (ours).
- Loss: cross-entropy of the lightweight logits plus cross-entropy of the specialist logits,
  on labels (ours: no distillation teacher ships here; the paper distils from EfficientNet-b2).
- The step is built under a ``tf.distribute`` strategy: ``default`` (one device) or
  ``mirrored`` (all local devices). The paper's TPU pod would be a TPUStrategy; untested here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from pathlib import Path

from basisnet_deploy.model.config import ArchConfig, BasisNetConfig, TrainSettings
from basisnet_deploy.data import Preprocessing
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.common.jsonable import jsonable_fields
from basisnet_deploy.model.network import BasisNet
from basisnet_deploy.model.pretrained import PretrainedInit, init_from_files
from basisnet_deploy.training.distribute import make_strategy
from basisnet_deploy.training.resume import ResumeState, StopSignals, TrainingInterrupted, resume_dir
from basisnet_deploy.training.sources import make_source

def coefficient_schedule(step, total_steps: int, hold: float, decay: float):
    """eps for the coefficient warm-up: 1 for ``hold`` of the run, then linear to 0."""
    t = tf.cast(step, tf.float32) / float(max(total_steps, 1))
    return tf.clip_by_value(1.0 - (t - hold) / max(decay, 1e-9), 0.0, 1.0)


def regularize_coefficients(alpha, eps, rate: float, seed):
    """Warm-up mix towards uniform, then basis dropout (keep >= 1, renormalize).

    ``alpha`` is [B, L, K]; ``seed`` is a stateless-RNG seed pair so runs are repeatable.
    """
    k = alpha.shape[-1]
    alpha = (1.0 - eps) * alpha + eps / k
    if rate <= 0 or k == 1:
        return alpha
    keep = tf.random.stateless_uniform(tf.shape(alpha), seed) >= rate
    top = tf.one_hot(tf.argmax(alpha, axis=-1), k, on_value=True, off_value=False)
    keep = tf.logical_or(keep, tf.logical_and(top, tf.logical_not(
        tf.reduce_any(keep, axis=-1, keepdims=True))))
    kept = alpha * tf.cast(keep, alpha.dtype)
    return kept / tf.reduce_sum(kept, axis=-1, keepdims=True)


def _l2(variables) -> tf.Tensor:
    kernels = [v for v in variables if v.path.endswith("kernel")]
    return tf.add_n([tf.reduce_sum(tf.square(v)) for v in kernels])


@dataclass
class TrainResult:
    net: BasisNet
    config: BasisNetConfig
    metrics: dict
    state: ResumeState | None = None
    chief: bool = True


@dataclass(frozen=True)
class TrainingSummary:
    """What :func:`train_checkpoint` reports; ``to_json()`` is the ``train`` command's JSON.

    ``checkpoint`` is None on a worker that is not the chief (its copy is not kept)."""

    checkpoint: str | None
    chief: bool
    held_out: dict  # held-out top-1 of both stages: lightweight_top1, specialist_top1, examples
    train_seconds: float
    steps: int
    resumed_from_epoch: int  # 0: a fresh run
    epochs: list  # one record per epoch run (epoch, seconds, loss, ...)
    train_examples: int
    skipped: dict  # unreadable training files, by reason
    skipped_files: list | None = None  # the first of them (image folders)
    init_from: list | None = None  # the pretrained weight files loaded, each described

    def to_json(self) -> dict:
        out = {"checkpoint": self.checkpoint, "chief": self.chief, "held_out": self.held_out,
               "train_seconds": self.train_seconds, "steps": self.steps,
               "resumed_from_epoch": self.resumed_from_epoch, "epochs": self.epochs,
               "train_examples": self.train_examples, "skipped": self.skipped}
        if self.skipped_files is not None:
            out["skipped_files"] = self.skipped_files
        if self.init_from is not None:
            out["init_from"] = self.init_from
        return out


def evaluate(net: BasisNet, light: np.ndarray, image: np.ndarray, labels: np.ndarray,
             batch_size: int = 256) -> dict:
    """Held-out top-1 of the lightweight model alone and of the specialist it drives."""
    lm_hits = sp_hits = 0
    for i in range(0, len(labels), batch_size):
        out, logits = net(tf.constant(light[i:i + batch_size]), tf.constant(image[i:i + batch_size]))
        y = labels[i:i + batch_size]
        lm_hits += int(np.sum(np.argmax(out["logits"], -1) == y))
        sp_hits += int(np.sum(np.argmax(logits, -1) == y))
    n = max(len(labels), 1)
    return {"lightweight_top1": lm_hits / n, "specialist_top1": sp_hits / n, "examples": len(labels)}


@dataclass(frozen=True)
class RunOptions:
    """How a run reads its data and where it keeps its resume state (not the recipe)."""

    augment: bool | None = None  # None: on for image folders, off for in-memory sets (digits)
    cache_dir: str | None = None  # on-disk cache of shrunk decoded images (folders only)
    resume_dir: str | None = None  # where per-epoch resume state goes; None: not resumable
    require_resume: bool = False  # --resume: refuse to start from scratch
    probe_seconds: float = 120.0  # multi-worker: how long to wait for every worker
    # keras.applications MobileNetV3 weights files to start from (fresh runs only); not in
    # the resume fingerprint, since a resumed run's saved weights win whatever is given here
    init_from: tuple[str, ...] = ()
    classes: int | None = None  # --classes as given: refused unless the dataset has that many


def train(dataset, arch: ArchConfig, pre: Preprocessing, settings: TrainSettings,
          progress=None, run: RunOptions = RunOptions()) -> TrainResult:
    """Train a BasisNet on ``dataset`` (a :class:`Dataset` in memory or a streamed
    :class:`FileList`); ``progress(step, total, logs)`` is called per step.

    The same arguments give bit-identical weights in any process on one machine
    (single-process strategies; see :func:`reproducible_graphs`); another CPU model may
    round differently."""
    with reproducible_graphs():
        return _train(dataset, arch, pre, settings, progress, run)


_GRAPHS_LOCK = threading.Lock()
_GRAPHS = {"depth": 0, "before": False}  # trainings running in this process; the setting before


@contextlib.contextmanager
def reproducible_graphs():
    """Turn Grappler's graph rewrites off while training, then restore the setting.

    With them on, the gradient reaching the lightweight model through the coefficients
    differed in its last bits from one process to the next (same seed, same batches, same
    weights: the demo preset on digits parted at the first step where eps < 1, one intra-
    and one inter-op thread and oneDNN off made no difference); with them off, the same
    runs were bit-identical and eager-equal. Cost measured: about 2% a step at ``demo``.

    The setting is process-wide: the last of overlapping trainings restores it. TensorFlow
    caches it per thread, so a function another thread first runs meanwhile keeps it off.
    """
    key = "disable_meta_optimizer"
    with _GRAPHS_LOCK:
        if _GRAPHS["depth"] == 0:
            _GRAPHS["before"] = tf.config.optimizer.get_experimental_options().get(key, False)
            tf.config.optimizer.set_experimental_options({key: True})
        _GRAPHS["depth"] += 1
    try:
        yield
    finally:
        with _GRAPHS_LOCK:
            _GRAPHS["depth"] -= 1
            if _GRAPHS["depth"] == 0:
                tf.config.optimizer.set_experimental_options({key: _GRAPHS["before"]})


def _train(dataset, arch: ArchConfig, pre: Preprocessing, settings: TrainSettings,
           progress, run: RunOptions) -> TrainResult:
    strategy, chief = make_strategy(settings.strategy, run.probe_seconds)  # before other TF ops
    arch = dataclasses.replace(arch, num_classes=len(dataset.class_names)).validate()
    keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    source = make_source(dataset, arch, pre, settings, run)
    if source.count < settings.batch_size:
        raise UserError(f"{dataset.source}: {source.count} training images is fewer "
                        f"than one batch of {settings.batch_size}; add images or lower --batch-size")
    steps_per_epoch = source.count // settings.batch_size
    with strategy.scope():
        net = BasisNet(arch)
        optimizer = _optimizer(settings, steps_per_epoch)
        variables = net.lightweight.trainable_variables + net.specialist.trainable_variables
        optimizer.build(variables)
    state = ResumeState(Path(run.resume_dir) if run.resume_dir else None,
                        _state_variables(net, optimizer), _fingerprint(source, arch, pre, settings, run),
                        chief)
    first_epoch = state.restore(run.require_resume)
    init = _initialize(net, run.init_from, settings.seed, first_epoch, progress)
    step_fn = _train_step(net, optimizer, variables, strategy, settings,
                          steps_per_epoch * settings.epochs)
    meter = _Meter(settings, steps_per_epoch, progress, first_epoch)
    with StopSignals() as stop:
        for epoch in range(first_epoch, settings.epochs):
            batches = strategy.distribute_datasets_from_function(
                lambda ctx, e=epoch: source.batches(e, steps_per_epoch, ctx, settings.batch_size))
            _loop(batches, step_fn, meter, stop)
            if meter.epoch_steps < steps_per_epoch and not stop.received:
                raise UserError(f"{dataset.source}: epoch {epoch + 1} ran {meter.epoch_steps} of "
                                f"{steps_per_epoch} steps: too many unreadable files")
            if stop.received:
                break
            state.save(epoch + 1)
            meter.end_epoch(epoch + 1)
    if stop.received:
        raise TrainingInterrupted(
            f"stopped by {stop.received} during epoch {meter.epoch + 1}; {meter.epoch} completed "
            f"epochs are saved in {run.resume_dir or '(nowhere: no resume directory)'}; run the same "
            "command to resume", stop.received)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _sync_workers(strategy, net)
    held = source.evaluate(net)
    metrics = {"held_out": held, "train_seconds": round(meter.seconds, 1),
               "steps": steps_per_epoch * settings.epochs, "resumed_from_epoch": first_epoch,
               "epochs": meter.epochs, "train_examples": int(source.count),
               **source.skipped()}
    if init:
        metrics["init_from"] = [i.to_json() for i in init]
    training = {"dataset": dataset.source, "settings": dataclasses.asdict(settings),
                "augment": source.augment, **metrics, **source.record()}
    config = BasisNetConfig(arch, pre, dataset.class_names, training).validate()
    return TrainResult(net, config, metrics, state, chief)


def _initialize(net: BasisNet, files: tuple[str, ...], seed: int, first_epoch: int,
                progress) -> tuple[PretrainedInit, ...]:
    """``--init-from`` on a fresh run; a resumed run's saved weights win, and it says so."""
    if not files:
        return ()
    if first_epoch:
        reason = f"the run resumed after epoch {first_epoch} and its saved weights win"
        results = tuple(PretrainedInit(str(f), ignored=reason) for f in files)
    else:
        results = init_from_files(net, files, seed)
    if progress is not None and hasattr(progress, "note"):
        for result in results:
            progress.note(result.summary())
    return results


def _sync_workers(strategy, net: BasisNet) -> None:
    """Every worker ends with the same model: each weight (BN statistics included, which each
    worker updates from its own batches) becomes its mean over the replicas."""
    weights = net.weights

    @tf.function
    def averaged():
        ctx = lambda: tf.distribute.get_replica_context()  # noqa: E731
        return strategy.run(lambda: ctx().all_reduce(
            tf.distribute.ReduceOp.MEAN, [tf.identity(w.value) for w in weights]))

    values = strategy.experimental_local_results(averaged())[0]
    for w, v in zip(weights, values):
        w.assign(v)


def _state_variables(net: BasisNet, optimizer) -> dict:
    """What the resume state holds: every model weight, every optimizer variable and the
    dropout layers' seed-generator states (Keras keeps those out of ``weights``)."""
    weights = {id(w) for w in net.weights}
    rng = [v for v in net.lightweight.variables + net.specialist.variables if id(v) not in weights]
    return {"weights": {w.path: w for w in net.weights},
            "optimizer": {str(i): v for i, v in enumerate(optimizer.variables)},
            "rng": {str(i): v for i, v in enumerate(rng)}}


def _fingerprint(source, arch: ArchConfig, pre: Preprocessing, settings: TrainSettings,
                 run: RunOptions) -> dict:
    """What must match for a saved run to be resumed: the command, in effect."""
    return json.loads(json.dumps({
        "dataset": getattr(source, "train", None) and source.train.root or "memory",
        "train_examples": int(source.count), "architecture": dataclasses.asdict(arch),
        "preprocessing": dataclasses.asdict(pre), "settings": dataclasses.asdict(settings),
        "augment": source.augment}))


def _optimizer(settings: TrainSettings, steps_per_epoch: int):
    """RMSProp (decay 0.9, momentum 0.9) on a warm-up then x0.99 staircase schedule."""
    warmup = max(1, int(settings.warmup_epochs * steps_per_epoch))
    decay = keras.optimizers.schedules.ExponentialDecay(
        settings.learning_rate, max(1, int(settings.decay_epochs * steps_per_epoch)), 0.99,
        staircase=True)
    schedule = _Warmup(settings.learning_rate, warmup, decay)
    return keras.optimizers.RMSprop(schedule, rho=0.9, momentum=0.9, epsilon=1e-3,
                                    global_clipnorm=settings.clip_norm)


def _train_step(net, optimizer, variables, strategy, settings: TrainSettings, total_steps: int):
    """The distributed training step: (batch, step) -> (summed loss, hits)."""
    rate = settings.dropout_rate(net.cfg.bases)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")

    def replica_step(light, image, y, step):
        eps = coefficient_schedule(step, total_steps, settings.eps_hold, settings.eps_decay)
        with tf.GradientTape() as tape:
            out = net.lightweight(light, training=True)
            alpha = regularize_coefficients(out["coefficients"], eps, rate,
                                            tf.stack([tf.cast(settings.seed, tf.int64), step]))
            logits = net.specialist([image, alpha], training=True)
            per_example = ce(y, out["logits"]) + ce(y, logits)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=settings.batch_size)
            loss += settings.weight_decay * _l2(variables) / strategy.num_replicas_in_sync
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        hits = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), y), tf.float32))
        return loss, hits

    @tf.function
    def train_step(batch, step):
        loss, hits = strategy.run(replica_step, args=(*batch, step))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, hits, axis=None))
    return train_step


def _loop(batches, train_step, meter: "_Meter", stop) -> None:
    """One epoch: every batch, then stop early if a signal came; a non-finite loss is an error."""
    meter.start_epoch()
    for batch in batches:
        loss, hits = train_step(batch, tf.constant(meter.step, tf.int64))
        loss = float(loss)
        if not math.isfinite(loss):
            raise UserError(f"training diverged at step {meter.step + 1} (loss {loss}); "
                            "lower --learning-rate")
        meter.after_step(loss, float(hits))
        if stop.received:
            return


class _Meter:
    """Step counting, smoothed loss/accuracy, images/s and ETA for ``progress``."""

    def __init__(self, settings: TrainSettings, steps_per_epoch: int, progress, first_epoch: int):
        self.batch, self.per_epoch, self.progress = settings.batch_size, steps_per_epoch, progress
        self.total = steps_per_epoch * settings.epochs
        self.epoch, self.step = first_epoch, first_epoch * steps_per_epoch
        self.loss = self.acc = None
        self.epochs, self.seconds, self.epoch_steps, self._t0 = [], 0.0, 0, time.perf_counter()

    def start_epoch(self) -> None:
        self.epoch_steps, self._t0 = 0, time.perf_counter()

    def after_step(self, loss: float, hits: float) -> None:
        acc = hits / self.batch
        self.loss = loss if self.loss is None else 0.9 * self.loss + 0.1 * loss
        self.acc = acc if self.acc is None else 0.9 * self.acc + 0.1 * acc
        self.step += 1
        self.epoch_steps += 1
        rate = self.epoch_steps * self.batch / max(time.perf_counter() - self._t0, 1e-9)
        if self.progress:
            self.progress(self.step, self.total, {
                "loss": self.loss, "acc": self.acc, "epoch": self.step / max(self.per_epoch, 1),
                "img/s": rate, "eta_s": (self.total - self.step) * self.batch / rate})

    def end_epoch(self, completed: int) -> None:
        seconds = time.perf_counter() - self._t0
        self.seconds += seconds
        self.epoch = completed
        rate = self.epoch_steps * self.batch / max(seconds, 1e-9)
        summary = {"epoch": completed, "seconds": round(seconds, 2),
                   "images_per_s": round(rate, 1), "loss": round(self.loss or 0.0, 4),
                   "eta_s": round((self.total - self.step) * self.batch / rate, 1)}
        self.epochs.append(summary)
        if self.progress and hasattr(self.progress, "epoch_done"):
            self.progress.epoch_done(summary)


class _Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak`` over ``steps``, then ``after``."""

    def __init__(self, peak, steps, after):
        self.peak, self.steps, self.after = peak, steps, after

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        ramp = self.peak * (step + 1) / self.steps
        return tf.where(step < self.steps, ramp, self.after(step - self.steps))

    def get_config(self):
        return {"peak": self.peak, "steps": self.steps}


def train_checkpoint(dataset_spec: str, out, recipe: tuple[ArchConfig, Preprocessing],
                     settings: TrainSettings, progress=None, run: RunOptions = RunOptions()) -> TrainingSummary:
    """Train on ``dataset_spec`` ('digits' or a folder, streamed) and write ``out``;
    ``recipe`` is the (architecture, preprocessing) pair the checkpoint will record.

    Refuses, before any work, an existing non-empty ``out`` that is not a checkpoint and an
    ``out`` whose parent cannot be written. Per-epoch resume state goes to ``.<out>.resume/``
    (see :mod:`training.resume`); a run stopped there resumes with the same command.
    """
    from basisnet_deploy.data import digits
    from basisnet_deploy.data.folders import list_folder

    arch, pre = recipe
    from basisnet_deploy.model import checkpoint

    from basisnet_deploy.common.files import check_output_dir

    out = str(out)
    check_output_dir(out, "checkpoint", legacy=checkpoint.legacy_checkpoint)
    _check_writable(Path(out).parent)
    ds = digits() if dataset_spec == "digits" else list_folder(dataset_spec)
    if run.classes is not None and run.classes != len(ds.class_names):
        raise UserError(f"--classes {run.classes}: {dataset_spec} has {len(ds.class_names)} classes "
                        f"({', '.join(ds.class_names[:5])}{', ...' if len(ds.class_names) > 5 else ''}), "
                        "which set the model's; drop --classes or pass its number")
    if run.resume_dir is None:
        run = dataclasses.replace(run, resume_dir=str(resume_dir(out)))
    result = train(ds, arch, pre, settings, progress, run)
    if result.chief:
        checkpoint.save(out, result.net, result.config)
    else:  # the TF multi-worker pattern: every worker saves, only the chief's copy is kept
        import shutil
        import tempfile

        scratch = tempfile.mkdtemp(prefix="basisnet-worker-ckpt-")
        checkpoint.save(os.path.join(scratch, "ckpt"), result.net, result.config)
        shutil.rmtree(scratch, ignore_errors=True)
    result.state.finish()
    return TrainingSummary(checkpoint=out if result.chief else None, chief=result.chief, **result.metrics)


def _check_writable(parent: Path) -> None:
    """Refuse a checkpoint folder whose parent cannot be written, creating nothing: a refused
    command leaves no folders behind (the parent is made when the run saves)."""
    from basisnet_deploy.common.files import existing_ancestor

    try:
        with tempfile.NamedTemporaryFile(dir=existing_ancestor(parent.absolute()), prefix=".write-test-"):
            pass
    except OSError as e:
        raise UserError(f"{parent}: cannot write the checkpoint there ({e.strerror or e}); "
                        "choose another --out") from None


@dataclass(frozen=True)
class ClassScore:
    """Top-1 of both stages on one class's images."""

    examples: int
    lightweight_top1: float
    specialist_top1: float

    def to_json(self) -> dict:
        return jsonable_fields(self)


@dataclass(frozen=True)
class HeldOutScores:
    """Top-1 of both stages on labelled images, overall and per class (class name -> score,
    for the classes that have images); ``skipped`` unreadable files, the first few named in
    ``skipped_files``; ``seconds`` and ``images_per_s`` of the run."""

    lightweight_top1: float
    specialist_top1: float
    examples: int
    skipped: int
    skipped_files: list[str]
    classes: dict[str, ClassScore]
    seconds: float
    images_per_s: float

    def to_json(self) -> dict:
        return jsonable_fields(self)


@dataclass(frozen=True)
class Evaluation(HeldOutScores):
    """``evaluate``'s result: :class:`HeldOutScores` on ``dataset`` ('digits' or a folder),
    ``split`` 'held-out' (the checkpoint's held-out images) or 'all'."""

    dataset: str
    split: str

    def to_json(self) -> dict:
        """dataset and split first, then the scores."""
        out = jsonable_fields(self)
        return {"dataset": out.pop("dataset"), "split": out.pop("split"), **out}


def evaluate_held_out(net: BasisNet, held, pre: Preprocessing, light_resolution: int,
                      resolution: int, progress=None, batch_size: int | None = None) -> HeldOutScores:
    """Top-1 of both stages on a labelled :class:`~basisnet_deploy.data.heldout.HeldOut`,
    streamed: images are decoded ``batch_size`` at a time (default: at most 128, fewer for
    larger inputs, :func:`~basisnet_deploy.data.heldout.batch_size_for`) and only running
    counts are kept, overall and per class. Unreadable files are counted in ``skipped``;
    ``progress(done, total, logs)`` is called after each batch."""
    from basisnet_deploy.data import DataError, preprocess
    from basisnet_deploy.data.datasets import describe_skipped
    from basisnet_deploy.data.heldout import batch_size_for

    names = held.class_names
    started, total = time.perf_counter(), len(held)
    per_class = np.zeros((len(names), 3), np.int64)  # examples, LM hits, specialist hits
    if progress:
        progress(0, total, {})  # the work starts: rates count from here
    for examples in held.batches(batch_size or batch_size_for(resolution, 128)):
        light = np.stack([preprocess(e.image, light_resolution, pre) for e in examples])
        image = np.stack([preprocess(e.image, resolution, pre) for e in examples])
        y = np.asarray([e.label for e in examples], np.int64)
        out, logits = net(tf.constant(light), tf.constant(image))
        np.add.at(per_class, (y, 0), 1)
        np.add.at(per_class, (y, 1), np.argmax(out["logits"], -1) == y)
        np.add.at(per_class, (y, 2), np.argmax(logits, -1) == y)
        if progress:
            progress(examples[-1].index + 1, total, {})
    if progress:
        progress(total, total, {})
    n = int(per_class[:, 0].sum())
    if not n:
        raise DataError(f"{held.source}: none of its {total} files is a readable image "
                        f"({describe_skipped(held.skipped.counts, held.skipped.files)})")
    seconds = time.perf_counter() - started
    classes = {names[c]: ClassScore(int(k), int(lm) / int(k), int(sp) / int(k))
               for c, (k, lm, sp) in enumerate(per_class) if k}
    return HeldOutScores(
        lightweight_top1=int(per_class[:, 1].sum()) / n, specialist_top1=int(per_class[:, 2].sum()) / n,
        examples=n, skipped=held.skipped.total, skipped_files=held.skipped.to_json()["first"],
        classes=classes, seconds=round(seconds, 2), images_per_s=round(n / max(seconds, 1e-9), 2))


def evaluate_checkpoint(checkpoint_dir, dataset_spec: str | None = None, limit: int | None = None,
                        progress=None) -> Evaluation:
    """Held-out top-1 of both stages, overall and per class; on the training dataset, its
    held-out split only (for a folder, exactly the held-out files the checkpoint recorded).

    Streamed (:func:`evaluate_held_out`): the folder is listed and its class folders checked
    against the checkpoint's labels before any image is decoded. ``limit``: at most this
    many images, a seeded sample spread over the classes."""
    from basisnet_deploy.model import checkpoint

    net, cfg = checkpoint.load(checkpoint_dir)  # a broken checkpoint is the first thing said
    trained_on = cfg.training.get("dataset")
    dataset_spec = dataset_spec or trained_on
    if not dataset_spec:
        raise UserError(f"{checkpoint_dir}: config.json does not say what it was trained on; "
                        "pass --dataset digits or --dataset DIR")
    held, split = _evaluation_images(cfg, dataset_spec, trained_on)
    held = held.sample(limit)
    a = cfg.architecture
    result = evaluate_held_out(net, held, cfg.preprocessing, a.light_resolution, a.resolution,
                               progress)
    return Evaluation(**{f.name: getattr(result, f.name) for f in dataclasses.fields(result)},
                      dataset=dataset_spec, split=split)


def _evaluation_images(cfg, dataset_spec: str, trained_on):
    """(the labelled images ``evaluate`` scores, listed and not decoded; 'held-out' or 'all')."""
    from basisnet_deploy.data import digits
    from basisnet_deploy.data.preprocessing import decode_side
    from basisnet_deploy.data.folders import list_folder, recorded_held_out
    from basisnet_deploy.data.heldout import HeldOut, check_classes

    a = cfg.architecture
    side = decode_side(cfg.preprocessing, a.resolution, a.light_resolution)
    if dataset_spec != "digits":
        same = trained_on not in (None, "digits") and _same_path(dataset_spec, trained_on)
        files = recorded_held_out(cfg.training, dataset_spec) if same else None
        split = "held-out" if files is not None else "all"
        files = files if files is not None else list_folder(dataset_spec)
        remap = check_classes(files.class_names, cfg.labels, dataset_spec)
        return HeldOut(files.absolute(), remap[files.labels], dataset_spec, [],
                       tuple(cfg.labels), side), split
    ds = digits()
    remap = check_classes(ds.class_names, cfg.labels, dataset_spec)
    settings = cfg.training.get("settings", {})
    idx, split = list(range(len(ds.labels))), "all"
    if dataset_spec == trained_on and "held_out" in settings:
        idx, split = ds.split_indices(settings["held_out"], settings.get("seed", 0))[1], "held-out"
    return HeldOut([ds.images[i] for i in idx], remap[ds.labels[idx]], dataset_spec, list(idx),
                   tuple(cfg.labels)), split


def _same_path(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


