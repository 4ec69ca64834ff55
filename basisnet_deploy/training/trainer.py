"""Joint training of both stages, with the paper's recipe scaled to small data.

What follows BASISNET.md, and what is ours (README "Training" repeats this):
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

import dataclasses
import math
import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from basisnet_deploy.model.config import STRATEGIES, ArchConfig, BasisNetConfig, TrainSettings
from basisnet_deploy.data import Preprocessing
from basisnet_deploy.data import Dataset
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.model.network import BasisNet

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


def _strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise UserError(f"--strategy: unknown {name!r}; choose one of {list(STRATEGIES)}")


def _l2(variables) -> tf.Tensor:
    kernels = [v for v in variables if v.path.endswith("kernel")]
    return tf.add_n([tf.reduce_sum(tf.square(v)) for v in kernels])


@dataclass
class TrainResult:
    net: BasisNet
    config: BasisNetConfig
    metrics: dict


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


def train(dataset: Dataset, arch: ArchConfig, pre: Preprocessing, settings: TrainSettings,
          progress=None) -> TrainResult:
    """Train a BasisNet on ``dataset``; ``progress(step, total, logs)`` is called per step."""
    arch = dataclasses.replace(arch, num_classes=len(dataset.class_names)).validate()
    keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    train_set, test_set = dataset.split(settings.held_out, settings.seed)
    if len(train_set.labels) < settings.batch_size:
        raise UserError(f"{dataset.source}: {len(train_set.labels)} training images is fewer "
                        f"than one batch of {settings.batch_size}; add images or lower --batch-size")
    labels = train_set.labels
    strategy = _strategy(settings.strategy)
    steps_per_epoch = len(labels) // settings.batch_size
    with strategy.scope():
        net = BasisNet(arch)
        optimizer = _optimizer(settings, steps_per_epoch)
        variables = net.lightweight.trainable_variables + net.specialist.trainable_variables
        optimizer.build(variables)
    step_fn = _train_step(net, optimizer, variables, strategy, settings,
                          steps_per_epoch * settings.epochs)
    ds = (tf.data.Dataset.from_tensor_slices((train_set.tensors(arch.light_resolution, pre),
                                              train_set.tensors(arch.resolution, pre), labels))
          .shuffle(len(labels), seed=settings.seed, reshuffle_each_iteration=True)
          .batch(settings.batch_size, drop_remainder=True)
          .repeat(settings.epochs))
    start = time.perf_counter()
    _loop(strategy.experimental_distribute_dataset(ds), step_fn, settings, steps_per_epoch, progress)
    seconds = time.perf_counter() - start
    held = evaluate(net, test_set.tensors(arch.light_resolution, pre),
                    test_set.tensors(arch.resolution, pre), test_set.labels)
    metrics = {"held_out": held, "train_seconds": round(seconds, 1),
               "steps": steps_per_epoch * settings.epochs,
               "train_examples": int(len(labels)), "skipped": dict(dataset.skipped),
               "skipped_files": list(dataset.skipped_files)[:20]}
    training = {"dataset": dataset.source, "settings": dataclasses.asdict(settings), **metrics}
    config = BasisNetConfig(arch, pre, dataset.class_names, training).validate()
    return TrainResult(net, config, metrics)


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


def _loop(batches, train_step, settings: TrainSettings, steps_per_epoch: int, progress) -> None:
    """Run every batch; smoothed loss/accuracy to ``progress``; stop on a non-finite loss."""
    total, step, loss_avg, acc_avg = steps_per_epoch * settings.epochs, 0, None, None
    for batch in batches:
        loss, hits = train_step(batch, tf.constant(step, tf.int64))
        loss, acc = float(loss), float(hits) / settings.batch_size
        loss_avg = loss if loss_avg is None else 0.9 * loss_avg + 0.1 * loss
        acc_avg = acc if acc_avg is None else 0.9 * acc_avg + 0.1 * acc
        step += 1
        if not math.isfinite(loss):
            raise UserError(f"training diverged at step {step} (loss {loss}); "
                            "lower --learning-rate")
        if progress:
            progress(step, total, {"loss": loss_avg, "acc": acc_avg,
                                   "epoch": step / max(steps_per_epoch, 1)})


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


def train_checkpoint(dataset_spec: str, out, arch: ArchConfig, pre: Preprocessing,
                     settings: TrainSettings, progress=None) -> dict:
    """Train on ``dataset_spec`` ('digits' or a folder) and write the checkpoint to ``out``.

    Refuses an existing non-empty ``out`` that is not a checkpoint before any work.
    """
    from basisnet_deploy.common.files import check_output_dir
    from basisnet_deploy.data import load_dataset
    from basisnet_deploy.model import checkpoint

    out = str(out)
    check_output_dir(out, "checkpoint", legacy=checkpoint.legacy_checkpoint)
    ds = load_dataset(dataset_spec)
    result = train(ds, arch, pre, settings, progress)
    checkpoint.save(out, result.net, result.config)
    return {"checkpoint": out, **result.metrics}


def evaluate_checkpoint(checkpoint_dir, dataset_spec: str | None = None) -> dict:
    """Held-out top-1 of both stages; on the training dataset, its held-out split only."""
    from basisnet_deploy.data import load_dataset
    from basisnet_deploy.model import checkpoint

    net, cfg = checkpoint.load(checkpoint_dir)
    settings = cfg.training.get("settings", {})
    trained_on = cfg.training.get("dataset")
    dataset_spec = dataset_spec or trained_on
    if not dataset_spec:
        raise UserError(f"{checkpoint_dir}: config.json does not say what it was trained on; "
                        "pass --dataset digits or --dataset DIR")
    ds = load_dataset(dataset_spec)
    if ds.class_names != cfg.labels:
        raise UserError(f"{dataset_spec}: classes {list(ds.class_names)[:5]}... do not match the "
                        f"checkpoint's labels {list(cfg.labels)[:5]}...")
    split = "all"
    if dataset_spec == trained_on and "held_out" in settings:
        ds = ds.split(settings["held_out"], settings.get("seed", 0))[1]
        split = "held-out"
    a, pre = cfg.architecture, cfg.preprocessing
    return {"dataset": dataset_spec, "split": split,
            **evaluate(net, ds.tensors(a.light_resolution, pre), ds.tensors(a.resolution, pre), ds.labels)}
