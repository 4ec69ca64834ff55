"""Quantization-aware tuning of a model's int8 weights: the lightweight model of the
``fidelity-int8-lm`` recipe.

Rounding each weight to its nearest int8 step moves the lightweight model's coefficients by
up to 0.09 on held-out photos, most of it from the first, narrowest layers
(benchmarks/results/fidelity_photos.md). No post-training scheme we measured brought that
under 0.05. Here the model learns weights whose int8 rounding gives the float model's
answers: a short distillation on the calibration images, in which every kernel is rounded to
its int8 grid on the forward pass and the gradient passes straight through the rounding
(the straight-through estimator of quantization-aware training). The targets are the float
model's own logits and coefficients, never labels, so the tuned model answers for the
checkpoint it was exported from.

The grid is the one the weight-only exporters write (``converters/tflite.py`` and
``converters/onnx.py`` ``_weight_only``): symmetric int8, one scale per output channel,
``max |w| / 127``. Batch normalization folds into a kernel as one factor per output
channel, which scales that channel's grid with it, so rounding the unfolded Keras kernel is
exactly what the exporter does to the folded one. The returned kernels lie on that grid: the
exporter's rounding then leaves them as they are.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

INT8_MAX = 127


@dataclass(frozen=True)
class WeightTuning:
    """The distillation schedule. Measured on the photo checkpoint of
    benchmarks/results/fidelity_photos.md (200 calibration images, 480 held-out photos)."""

    # Held-out coefficient error of the benchmark's photo checkpoint (one-off runs in Keras,
    # which give the TFLite figures exactly): 2,000 steps at 3e-5: 0.024-0.030 over three
    # seeds; 1,000 at 1e-5: 0.053-0.060 over two; 2,000 at 1e-4: 0.064.
    steps: int = 2000
    learning_rate: float = 3e-5
    batch: int = 32
    seed: int = 0


@dataclass(frozen=True)
class TunedWeights:
    """A model's weights (``model.get_weights()`` order) with every kernel on its int8 grid."""

    weights: list
    kernels: int  # how many kernels were tuned
    steps: int
    # Distillation loss on the calibration images (mean squared error against the float
    # outputs, each output divided by its variance), with nearest rounding and after tuning.
    loss_nearest: float
    loss_tuned: float
    kept: str  # "tuned", or "nearest" where tuning did not lower the calibration loss
    seconds: float

    def report(self) -> dict:
        return {"method": "int8 weights tuned on the calibration images against the float "
                          "model's logits and coefficients (straight-through rounding)",
                "kernels": self.kernels, "steps": self.steps, "kept": self.kept,
                "calibration_loss": {"nearest_rounding": _finite(self.loss_nearest),
                                     "tuned": _finite(self.loss_tuned)},
                "seconds": round(self.seconds, 1)}


def _finite(loss: float) -> float | None:
    return float(f"{loss:.6g}") if math.isfinite(loss) else None  # JSON has no NaN


def channel_axis(variable) -> int:
    """The output-channel axis of a Keras kernel: the last, except a depthwise kernel's
    [h, w, channels, 1], whose channels are the third."""
    rank = len(variable.shape)
    return rank - 2 if "depthwise" in variable.path else rank - 1


def on_int8_grid(w, axis: int):
    """``w`` rounded to symmetric int8 with one scale per channel along ``axis`` (float)."""
    import tensorflow as tf

    reduce = [a for a in range(len(w.shape)) if a != axis]
    scale = tf.reduce_max(tf.abs(w), axis=reduce, keepdims=True) / INT8_MAX
    scale = tf.where(scale > 0, scale, tf.ones_like(scale))  # an all-zero channel stays zero
    return tf.clip_by_value(tf.round(w / scale), -INT8_MAX, INT8_MAX) * scale


def tune_int8_weights(model, images: np.ndarray, tuning: WeightTuning = WeightTuning(),
                      progress=None) -> TunedWeights:
    """Tune ``model``'s kernels (Conv2D, DepthwiseConv2D, Dense) so that their per-channel
    int8 rounding reproduces the model's float outputs on ``images`` [N, r, r, 3]. The model
    itself is not changed; biases and batch-norm statistics are left as they are."""
    import tensorflow as tf

    say = progress or (lambda msg: None)
    started = time.perf_counter()
    trainable = model.trainable_variables
    kernels = {i: channel_axis(v) for i, v in enumerate(trainable) if v.path.endswith("kernel")}
    shadow = [tf.Variable(v.numpy()) for v in trainable]
    frozen = [v.value for v in model.non_trainable_variables]
    x = tf.constant(images, tf.float32)

    def rounded():
        # straight-through: int8 values forward, the identity's gradient backward
        return [w + tf.stop_gradient(on_int8_grid(w, kernels[i]) - w) if i in kernels else w
                for i, w in enumerate(shadow)]

    def outputs(weights, inputs):
        return dict(model.stateless_call(weights, frozen, inputs, training=False)[0])

    target = {k: tf.constant(v) for k, v in outputs([v.value for v in trainable], x).items()}
    # each output weighs the same: its squared error relative to its spread
    scale = {k: 1.0 / float(max(np.var(v.numpy()), 1e-12)) for k, v in target.items()}

    def loss(inputs, wanted):
        out = outputs(rounded(), inputs)
        return tf.add_n([scale[k] * tf.reduce_mean(tf.square(out[k] - wanted[k])) for k in wanted])

    loss_nearest = float(loss(x, target))
    _descend(loss, [shadow[i] for i in kernels], x, target, tuning, say)
    loss_tuned = float(loss(x, target))
    # A guard against a diverged run only: both losses are measured on the images the tuning
    # fitted, so "tuned" does not promise a lower error on other images.
    kept = "tuned" if loss_tuned < loss_nearest else "nearest"
    if kept == "nearest":
        say("tuning did not lower the calibration loss: nearest rounding is used")
        for w, v in zip(shadow, trainable):
            w.assign(v)
    final = [on_int8_grid(w, kernels[i]) if i in kernels else w for i, w in enumerate(shadow)]
    return TunedWeights(_in_model_order(model, trainable, final), len(kernels), tuning.steps,
                        loss_nearest, loss_tuned, kept, time.perf_counter() - started)


def _descend(loss, variables, x, target: dict, tuning: WeightTuning, say) -> None:
    """``tuning.steps`` Adam steps on random batches of the images ``x`` and their targets."""
    import tensorflow as tf

    optimizer = _optimizer(tuning)

    @tf.function
    def step(inputs, wanted):
        with tf.GradientTape() as tape:
            value = loss(inputs, wanted)
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))

    rng = np.random.default_rng(tuning.seed)
    count = len(x)
    for done in range(tuning.steps):
        picked = rng.choice(count, min(tuning.batch, count), replace=False)
        step(tf.gather(x, picked), {k: tf.gather(v, picked) for k, v in target.items()})
        if (done + 1) % max(1, tuning.steps // 4) == 0:
            say(f"tuning int8 weights: step {done + 1}/{tuning.steps}")


def _optimizer(tuning: WeightTuning):
    """Adam with a cosine decay to zero, so the last steps settle rather than jump."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(tuning.learning_rate, max(1, tuning.steps))
    return keras.optimizers.Adam(schedule)


def _in_model_order(model, trainable, values) -> list:
    """``model.get_weights()`` with each trainable variable replaced by its new value."""
    new = {id(v): np.asarray(t) for v, t in zip(trainable, values)}
    return [new.get(id(v), v.numpy()) for v in model.weights]
