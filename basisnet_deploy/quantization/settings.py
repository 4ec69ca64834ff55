"""Settings and results of int8 weight tuning (basisnet_deploy/quantization/weight_tuning.py):
plain data, TensorFlow-free, so the CLI and the recipes can name them without importing it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from basisnet_deploy.common.errors import StoppedBySignal

INT8_MAX = 127
# Keras' default, written out because the tuning depends on it: most offsets' gradients are
# below it (see WeightTuning.learning_rate), so another value is another tuning.
ADAM_EPSILON = 1e-7


@dataclass(frozen=True)
class WeightTuning:
    """The distillation schedule. Measured on the photo checkpoints of
    benchmarks/results/fidelity_photos.md and tests/test_fidelity_photos.py (200 calibration
    images, 480 and 240 held-out photos; one-off Keras runs, which give the TFLite figures
    exactly)."""

    steps: int = 2000
    # In int8 steps per update, at most: Adam moves an offset by up to about this much. Most
    # offsets move less: their gradients (median 2.7e-8 on both photo checkpoints, at the
    # first step) are below Adam's epsilon (ADAM_EPSILON), where Adam's update is the gradient
    # times rate/epsilon, so weights the loss barely feels stay near their nearest rounding.
    # Tuning the weights themselves at 3e-5 (a third of a step per update for a small channel
    # and 1/100 for a large one) made the test checkpoint's held-back loss rise up to 10x
    # within 200 steps (20x with the views). Counted in steps, with the views, 2,000 steps, three seeds
    # (benchmarks/lm_weight_tuning_photos.py, results/lm_weight_tuning_photos/): at 0.005 the
    # benchmark checkpoint's LM agrees on 99.58-99.79% of 480 held-out photos, coefficient
    # error 0.022-0.031; at 0.01 on 99.38-100%, 0.014-0.025 (one seed under 99.5%).
    learning_rate: float = 0.005
    batch: int = 32
    seed: int = 0


@dataclass(frozen=True)
class Augmentation:
    """Random views of the calibration images to tune on, each with the float model's outputs
    for that view as its target (no labels: any image is a valid question to the float
    model), so that the tuning sees more than the 150 images it is given. On the test photo
    checkpoint, at 2,000 steps: coefficient error 0.033 without views, 0.013-0.018 with them
    (three seeds); at a rate of 0.01 without views the best step was the 100th and the error
    0.081. Only the first input (the image) is changed; a specialist's coefficients are fed as
    they are."""

    input_range: tuple[float, float]  # the model's input values (Preprocessing.input_range)
    flip: float = 0.5  # probability of a left-right mirror
    crop_area: tuple[float, float] = (0.55, 1.0)  # a square of this share of the image, resized back
    contrast: tuple[float, float] = (0.75, 1.25)  # around each image's mean
    brightness: float = 0.1  # shift, as a share of the input range


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
    seconds: float  # a resumed tuning's: before and after it was stopped
    learning_rate: float  # int8 steps per update (WeightTuning.learning_rate)
    augmented: bool  # tuned on random views of the images (Augmentation)
    resumed_from_step: int = 0  # a tuning resumed from saved state went on after this step

    def report(self) -> dict:
        return {"method": "int8 weights tuned against the float model's outputs on the calibration "
                          "images (straight-through rounding, offsets counted in int8 steps)",
                "kernels": self.kernels, "steps": self.steps, "best_step": self.best_step,
                "kept": self.kept, "learning_rate_int8_steps": self.learning_rate,
                "augmented_views": self.augmented,
                "held_back_loss": {"images": self.held_back,
                                   "nearest_rounding": finite_loss(self.loss_nearest),
                                   "tuned": finite_loss(self.loss_tuned)},
                "resumed_from_step": self.resumed_from_step,
                "seconds": round(self.seconds, 1)}


class TuningInterrupted(StoppedBySignal):
    """SIGINT or SIGTERM stopped the tuning; its state so far is saved where it was asked to be."""


def finite_loss(loss: float) -> float | None:
    return float(f"{loss:.6g}") if math.isfinite(loss) else None  # JSON has no NaN
