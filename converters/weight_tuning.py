"""Quantization-aware tuning of a model's int8 weights: the lightweight model and the
template's static layers of the ``fidelity-int8-lm`` recipe.

Rounding each weight to its nearest int8 step moves the lightweight model's coefficients by
up to 0.09-0.20 on held-out photos (two trainings of the benchmark checkpoint,
benchmarks/results/fidelity_photos.md), and no post-training scheme we measured brought that
under 0.05. The weight-only template's error comes from its static layers the same way: their
nearest rounding alone loses the template's 2 of 480 held-out photos. Here the model learns weights whose int8 rounding gives the float model's
answers: a short distillation on the calibration images, in which every kernel is rounded to
its int8 grid on the forward pass and the gradient passes straight through the rounding
(the straight-through estimator of quantization-aware training). The targets are the float
model's own logits and coefficients, never labels, so the tuned model answers for the
checkpoint it was exported from. A quarter of the calibration images is held back from the
tuning to choose its step, nearest rounding included, because fitting the rest can make the
held-back images worse (the test checkpoint of tests/test_fidelity_photos.py: 300x better on
the images tuned on, 2x worse on those held back).

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

    # Chosen in session 10, tuning on all 200 images (no hold-back) of the earlier training of
    # the benchmark checkpoint (one-off Keras runs, which give the TFLite figures exactly):
    # held-out coefficient error 0.024-0.030 at 2,000 steps of 3e-5 over three seeds; 1,000
    # at 1e-5: 0.053-0.060; 2,000 at 1e-4: 0.064. With the held-back quarter, on the retrained
    # checkpoint: 0.048.
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
    best_step: int  # the step whose weights were kept (0: nearest rounding)
    held_back: int  # calibration images held back from the tuning to choose that step
    # Distillation loss on the held-back images (mean squared error against the float
    # outputs, each output divided by its variance), with nearest rounding and as kept.
    loss_nearest: float
    loss_tuned: float
    kept: str  # "tuned", or "nearest" where no step lowered the held-back loss
    seconds: float

    def report(self) -> dict:
        return {"method": "int8 weights tuned on the calibration images against the float "
                          "model's logits and coefficients (straight-through rounding)",
                "kernels": self.kernels, "steps": self.steps, "best_step": self.best_step,
                "kept": self.kept,
                "held_back_loss": {"images": self.held_back,
                                   "nearest_rounding": _finite(self.loss_nearest),
                                   "tuned": _finite(self.loss_tuned)},
                "seconds": round(self.seconds, 1)}


def _finite(loss: float) -> float | None:
    return float(f"{loss:.6g}") if math.isfinite(loss) else None  # JSON has no NaN


def channel_axis(variable) -> int:
    """The output-channel axis of a Keras kernel: the last, except a depthwise kernel's
    [h, w, channels, 1], whose channels are the third."""
    rank = len(variable.shape)
    return rank - 2 if "depthwise" in variable.path else rank - 1


def tuned_kernels(variables) -> dict[int, int]:
    """{index: channel axis} of the kernels to tune. A basis stack [K, h, w, in, out] (a
    specialist's non-shared layer) is not among them: its kernel is mixed per image and
    rounded after mixing, at run time (artifacts/synthesis.py). Measured on the benchmark's
    photo checkpoint, the weight-only template's error comes from its static layers: rounding
    only those in Keras loses the same 2 of 480 held-out photos as the template."""
    return {i: channel_axis(v) for i, v in enumerate(variables)
            if v.path.endswith("kernel") and len(v.shape) <= 4}


def on_int8_grid(w, axis: int):
    """``w`` rounded to symmetric int8 with one scale per channel along ``axis`` (float)."""
    import tensorflow as tf

    reduce = [a for a in range(len(w.shape)) if a != axis]
    scale = tf.reduce_max(tf.abs(w), axis=reduce, keepdims=True) / INT8_MAX
    scale = tf.where(scale > 0, scale, tf.ones_like(scale))  # an all-zero channel stays zero
    return tf.clip_by_value(tf.round(w / scale), -INT8_MAX, INT8_MAX) * scale


def tune_int8_weights(model, inputs, tuning: WeightTuning = WeightTuning(),
                      progress=None) -> TunedWeights:
    """Tune ``model``'s kernels (Conv2D, DepthwiseConv2D, Dense) so that their per-channel
    int8 rounding reproduces the model's float outputs on ``inputs``: the images [N, r, r, 3],
    or a list of arrays of N rows each (the specialist's images and coefficients). The model
    itself is not changed; biases, batch-norm statistics and basis stacks are left as they
    are (see :func:`tuned_kernels`).

    A quarter of the images is held back: the tuning never sees them, and the weights kept are
    those of the step with the lowest loss on them, nearest rounding (step 0) included. Tuning
    on all of them fitted the calibration images 100-500x better than nearest rounding and
    could still be worse on held-out photos (benchmarks/results/fidelity_photos.md)."""
    import tensorflow as tf

    say = progress or (lambda msg: None)
    started = time.perf_counter()
    trainable = model.trainable_variables
    kernels = tuned_kernels(trainable)
    shadow = [tf.Variable(v.numpy()) for v in trainable]
    frozen = [v.value for v in model.non_trainable_variables]
    single = not isinstance(inputs, list)
    x = [tf.constant(a, tf.float32) for a in ([inputs] if single else inputs)]

    def rounded():
        # straight-through: int8 values forward, the identity's gradient backward
        return [w + tf.stop_gradient(on_int8_grid(w, kernels[i]) - w) if i in kernels else w
                for i, w in enumerate(shadow)]

    def outputs(weights, xs):
        out = model.stateless_call(weights, frozen, xs[0] if single else xs, training=False)[0]
        return dict(out) if isinstance(out, dict) else {"logits": out}

    target = {k: tf.constant(v) for k, v in outputs([v.value for v in trainable], x).items()}
    # each output weighs the same: its squared error relative to its spread
    scale = {k: 1.0 / float(max(np.var(v.numpy()), 1e-12)) for k, v in target.items()}

    def loss(xs, wanted):
        out = outputs(rounded(), xs)
        return tf.add_n([scale[k] * tf.reduce_mean(tf.square(out[k] - wanted[k])) for k in wanted])

    def rows(picked):
        return [tf.gather(a, picked) for a in x], {k: tf.gather(v, picked) for k, v in target.items()}

    count = int(x[0].shape[0])
    fit, held = _split(count, tuning.seed)
    tuned = [shadow[i] for i in kernels]
    best = _descend(loss, tuned, rows(fit), rows(held), tuning, say)
    for w, value in zip(tuned, best.values):
        w.assign(value)
    kept = "tuned" if best.step else "nearest"
    if kept == "nearest":
        say("tuning did not lower the loss on the held-back calibration images: nearest rounding is used")
    final = [on_int8_grid(w, kernels[i]) if i in kernels else w for i, w in enumerate(shadow)]
    return TunedWeights(_in_model_order(model, trainable, final), len(kernels), tuning.steps,
                        best.step, len(held) if count > 1 else 0, best.loss_nearest, best.loss, kept,
                        time.perf_counter() - started)


def _split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices to tune on and a held-back quarter (at least one image). With one image in
    all it is both, and nothing is held back (``TunedWeights.held_back`` 0)."""
    order = np.random.default_rng(seed).permutation(count)
    held = max(1, count // 4)
    return (order[held:] if count > 1 else order), order[:held]


@dataclass
class _Best:
    """The step whose weights had the lowest held-back loss so far, and those weights."""

    step: int
    loss: float
    loss_nearest: float
    values: list


def _descend(loss, variables, fit: tuple, held: tuple, tuning: WeightTuning, say) -> _Best:
    """``tuning.steps`` Adam steps on random batches of ``fit`` (inputs, targets); the held-back
    loss is checked 20 times along the way."""
    import tensorflow as tf

    optimizer = _optimizer(tuning)

    @tf.function
    def step(inputs, wanted):
        with tf.GradientTape() as tape:
            value = loss(inputs, wanted)
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))

    nearest = float(loss(*held))
    best = _Best(0, nearest, nearest, [v.numpy() for v in variables])
    rng = np.random.default_rng(tuning.seed)
    inputs, target = fit
    count, check = int(inputs[0].shape[0]), max(1, tuning.steps // 20)
    for done in range(1, tuning.steps + 1):
        picked = rng.choice(count, min(tuning.batch, count), replace=False)
        step([tf.gather(a, picked) for a in inputs], {k: tf.gather(v, picked) for k, v in target.items()})
        if done % check == 0 or done == tuning.steps:
            value = float(loss(*held))
            if value < best.loss:  # NaN never is
                best = _Best(done, value, nearest, [v.numpy() for v in variables])
        if done % max(1, tuning.steps // 4) == 0:
            say(f"tuning int8 weights: step {done}/{tuning.steps}, held-back loss {best.loss:.3g} "
                f"(nearest rounding {nearest:.3g})")
    return best


def _optimizer(tuning: WeightTuning):
    """Adam with a cosine decay to zero, so the last steps settle rather than jump."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(tuning.learning_rate, max(1, tuning.steps))
    return keras.optimizers.Adam(schedule)


def _in_model_order(model, trainable, values) -> list:
    """``model.get_weights()`` with each trainable variable replaced by its new value."""
    new = {id(v): np.asarray(t) for v, t in zip(trainable, values)}
    return [new.get(id(v), v.numpy()) for v in model.weights]
