"""Issue #10: does the int8 weight tuning of the lightweight model generalize to photos it
never saw? Nearest rounding against ``tune_int8_weights`` with and without the random views
(basisnet_deploy/quantization/weight_tuning.py ``Augmentation``), on one checkpoint, side by side in one run.

Each variant tunes the LM on ``PHOTOS/train``'s calibration images (as export picks them:
``--calibration-size``, seed 0; a quarter held back to choose the step) and is scored in Keras
on ``PHOTOS/heldout``, which neither training nor calibration saw: top-1 agreement with the
float LM and the coefficients' error (per photo, the largest over layers and bases; max,
99th percentile, median). The tuned kernels lie on the exporters' int8 grid, so Keras gives
what the weight-only TFLite and ONNX LMs give (tests/test_weight_tuning.py).

    .venv/bin/python benchmarks/lm_weight_tuning_photos.py CKPT PHOTOS [--steps 2000]
        [--calibration-size 200] [--variants nearest,plain,views] [--seeds 0,1,2]
        [--learning-rate 0.01] [--calibration-seed 0|tuning] [--json OUT]

Each tuned variant runs once per seed (``WeightTuning.seed``: which quarter is held back,
the batches, the views): one photo more or less in 480 is 0.2 point of agreement, so a single
run says little about a recipe at the 99.5% target's edge.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bench_utils import write_result  # noqa: E402

VARIANTS = ("nearest", "plain", "views")  # plain: tuned without the random views


def held_out_scores(lm, weights, images, reference) -> dict:
    """Agreement and coefficient error of ``lm`` holding ``weights`` on the held-out images."""
    before = lm.get_weights()
    lm.set_weights(weights)
    try:
        got = lm(images, training=False)
    finally:
        lm.set_weights(before)
    logits, coeff = got["logits"].numpy(), got["coefficients"].numpy()
    err = np.abs(coeff - reference["coefficients"]).reshape(len(coeff), -1).max(axis=1)
    return {"top1_agreement": round(float(np.mean(logits.argmax(1) == reference["logits"].argmax(1))), 4),
            "coefficients_max_abs": round(float(err.max()), 4),
            "coefficients_p99": round(float(np.percentile(err, 99)), 4),
            "coefficients_median": round(float(np.median(err)), 5)}


def variant_weights(name: str, lm, calibration, tuning, input_range) -> tuple[list, dict]:
    """The LM's weights for one variant and the tuning report (None for nearest rounding)."""
    from dataclasses import replace

    from basisnet_deploy.quantization.weight_tuning import Augmentation, tune_int8_weights

    views = Augmentation(input_range) if name == "views" else None
    tuned = tune_int8_weights(lm, calibration, replace(tuning, steps=0) if name == "nearest" else tuning,
                              progress=print, augmentation=views)
    return tuned.weights, (None if name == "nearest" else tuned.report())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt")
    p.add_argument("photos")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--calibration-size", type=int, default=200)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seeds", default="0")
    p.add_argument("--learning-rate", type=float, default=None, help="int8 steps per update "
                   "(default: WeightTuning's)")
    p.add_argument("--calibration-seed", default="0", help="which calibration images are picked: a "
                   "number, or 'tuning' for each tuning seed's own pick, as export's --seed picks both")
    p.add_argument("--json")
    args = p.parse_args()
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"--variants: unknown {sorted(unknown)}; choose from {','.join(VARIANTS)}")
    from basisnet_deploy import data
    from basisnet_deploy.calibration.images import calibration_images
    from basisnet_deploy.quantization.weight_tuning import WeightTuning
    from basisnet_deploy.model import checkpoint

    net, cfg = checkpoint.load(args.ckpt)
    res, pre = cfg.architecture.light_resolution, cfg.preprocessing
    held = data.image_folder(Path(args.photos) / "heldout").tensors(res, pre)

    picked: dict[int, np.ndarray] = {}  # calibration seed -> its images, read once

    def calibration_for(seed: int):
        pick = seed if args.calibration_seed == "tuning" else int(args.calibration_seed)
        if pick not in picked:
            calib = calibration_images(str(Path(args.photos) / "train"), args.calibration_size, seed=pick)
            picked[pick] = np.stack([data.preprocess(im, res, pre) for im in calib.images])
        return picked[pick]

    lm = net.lightweight
    reference = {k: v.numpy() for k, v in lm(held, training=False).items()}
    out = {"args": vars(args), "heldout_images": len(held), "calibration_images": len(calibration_for(0)),
           "machine": platform.processor() or platform.machine(), "variants": {}}
    rate = WeightTuning.learning_rate if args.learning_rate is None else args.learning_rate
    for name in args.variants.split(","):
        for seed in ([0] if name == "nearest" else [int(v) for v in args.seeds.split(",")]):
            tuning = WeightTuning(steps=args.steps, learning_rate=rate, seed=seed)
            weights, report = variant_weights(name, lm, calibration_for(seed), tuning, pre.input_range)
            key = name if name == "nearest" else f"{name} seed {seed}"
            out["variants"][key] = {"held_out": held_out_scores(lm, weights, held, reference), "tuning": report}
            print(key, out["variants"][key]["held_out"], flush=True)
    write_result(out, args.json)


if __name__ == "__main__":
    main()
