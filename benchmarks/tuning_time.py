"""Time of the int8 weight tuning per step and per epoch, at a preset's size.

The tuning (basisnet_deploy/quantization/weight_tuning.py) costs per step, not per image: each
step is one batch of 32 random views, forward and backward, whatever the number of images
(the held-back quarter's loss, checked 20 times, is the part that grows with it). So one figure
per step, for the lightweight model and for the template's static layers, gives the time of a
tuning of any length, and an epoch over N images is N / 32 steps.

Each model is tuned twice, for ``--steps`` and for 3x ``--steps`` steps, on ``--images``
images (digits, a quarter held back), and the time per step is the difference over the
difference in steps (set-up, tracing and the 20 held-back checks of each run cancel out:
``--steps`` is a multiple of 20); the held-back check's time is measured apart on
``--check-images`` images (the quarter of 1,500). The tuning of 2,000 steps on 1,500 images
is projected from the two: 2,000 steps plus 20 checks. The weights
are random with batch-norm statistics from real images (_random_init.py): timing only.

    .venv/bin/python benchmarks/tuning_time.py --preset mv3 --steps 20 --json benchmarks/results/tuning_time_mv3.json
    .venv/bin/python benchmarks/tuning_time.py --preset demo --steps 100 --json benchmarks/results/tuning_time_demo.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from _bench_utils import recorded


def _inputs(net, arch, pre, count: int):
    from basisnet_deploy.data import digits, preprocess

    images = (digits().images * (count // 1797 + 1))[:count]
    light = np.stack([preprocess(im, arch.light_resolution, pre) for im in images])
    image = np.stack([preprocess(im, arch.resolution, pre) for im in images])
    coeff = net.lightweight(light[:256], training=False)["coefficients"].numpy()
    coeff = np.concatenate([coeff] * (count // len(coeff) + 1))[:count]
    return light, image, coeff


def _named(out) -> dict:
    return dict(out) if isinstance(out, dict) else {"logits": out}


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mv3")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--check-images", type=int, default=375)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.steps < 20 or args.steps % 20:
        ap.error("--steps: a multiple of 20, so both runs check the held-back images 20 times")

    import tensorflow as tf

    from _random_init import normalize_bn
    from basisnet_deploy.data import Preprocessing
    from basisnet_deploy.model.config import PRESETS
    from basisnet_deploy.model.network import BasisNet
    from basisnet_deploy.quantization.settings import Augmentation, WeightTuning
    from basisnet_deploy.quantization.weight_tuning import _in_batches, tune_int8_weights

    arch, pre = PRESETS[args.preset], Preprocessing(resize="squash")
    net = BasisNet(arch)
    light, image, coeff = _inputs(net, arch, pre, max(args.images, args.check_images))
    normalize_bn(net.lightweight, light[:16])
    normalize_bn(net.specialist, [image[:16], coeff[:16]])
    views = Augmentation(pre.input_range)
    models = {"lightweight": (net.lightweight, lambda n: light[:n]),
              "template (specialist's static layers)": (net.specialist, lambda n: [image[:n], coeff[:n]])}
    out = {"preset": args.preset, "batch": WeightTuning.batch, "images_tuned_on": args.images,
           "steps": [args.steps, 3 * args.steps], "models": {}}
    for name, (model, feed) in models.items():
        runs = {s: _seconds(lambda: tune_int8_weights(model, feed(args.images), WeightTuning(steps=s), None, views))
                for s in (args.steps, 3 * args.steps)}
        per_step = (runs[3 * args.steps] - runs[args.steps]) / (2 * args.steps)
        batch = feed(args.check_images)
        x = batch if isinstance(batch, list) else [batch]
        # in the tuning's own batches (FORWARD_BATCH images a pass), as its checks run
        forward = lambda: _in_batches(lambda b: _named(model(b if len(b) > 1 else b[0], training=False)), x)  # noqa: E731
        forward()
        check = min(_seconds(forward) for _ in range(3))
        out["models"][name] = {"run_seconds": {str(s): round(t, 2) for s, t in runs.items()},
                               "seconds_per_step": round(per_step, 4),
                               f"held_back_check_seconds_{args.check_images}_images": round(check, 3),
                               "epoch_seconds_1500_images": round(per_step * 1500 / WeightTuning.batch, 1),
                               "projected_tuning_seconds_2000_steps_1500_images": round(2000 * per_step + 20 * check, 1)}
        print(name, json.dumps(out["models"][name]), flush=True)
    out["recorded"] = recorded()  # after the timings: its load average covers them
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
