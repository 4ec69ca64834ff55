"""Experiment: where a full-16x8 export's end-to-end misses come from, crop by crop.

For each held-out crop, four top-1 answers against the float pipeline's (float LM ->
coefficients -> float specialist):
- ``float_spec_int_coef``: the float specialist fed the exported LM's coefficients (the
  coefficient error alone);
- ``isolated``: the patched int16x8 template fed the float LM's coefficients (the template's
  own error alone);
- ``end_to_end``: the patched template fed the exported LM's coefficients (what a device runs);
- ``float_spec_noise``: the float specialist fed the float coefficients plus Gaussian noise
  with the same per-element RMS as the exported LM's coefficient error (is the float
  specialist that sensitive to any error of that size, or to this error?), ``--noise-draws``
  draws from ``--noise-seed``.
For each miss it records the float margin (top-1 minus top-2 logit) and the float logit gap
between the float answer and the answer given (the margin when the answer is the runner-up).

    .venv/bin/python benchmarks/results/full_16x8_stronger_checkpoint/e2e_sources.py \
        CKPT EXPORT_DIR HELDOUT [--images 480] [--noise-draws 10] [--noise-seed 0] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))


def top1(logits: np.ndarray) -> np.ndarray:
    return np.argmax(logits, -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("export_dir")
    ap.add_argument("heldout")
    ap.add_argument("--images", type=int, default=480)
    ap.add_argument("--noise-draws", type=int, default=10)
    ap.add_argument("--noise-seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()

    from basisnet_deploy.artifacts.manifest import load_manifest
    from basisnet_deploy.data.datasets import evaluation_set
    from basisnet_deploy.export.verify import Artifacts, float_batch, top2_gaps
    from basisnet_deploy.model import checkpoint

    net, cfg = checkpoint.load(args.checkpoint)
    directory = Path(args.export_dir)
    manifest = load_manifest(directory)
    held = evaluation_set(cfg, args.heldout).sample(args.images)
    arts = Artifacts(directory, manifest)
    rng = np.random.default_rng(args.noise_seed)

    cols = {k: [] for k in ("float", "float_margin", "float_spec_int_coef", "isolated",
                            "end_to_end", "coef_err_max", "labels", "index")}
    answers = ("float_spec_int_coef", "isolated", "end_to_end")
    float_logits, noise_cols = [], [[] for _ in range(args.noise_draws)]
    batches = []
    for examples in held.batches(32):
        ref = float_batch(net, manifest, examples)
        _, got_coeff = arts.lightweight(ref.light)
        batches.append((ref, got_coeff, [e.index for e in examples]))
    # Noise RMS from the whole set's coefficient error, per element.
    err = np.concatenate([(got - ref.coefficients).ravel() for ref, got, _ in batches])
    rms = float(np.sqrt(np.mean(err ** 2)))
    for ref, got_coeff, index in batches:
        float_logits.append(ref.logits)
        cols["float"].append(top1(ref.logits))
        cols["float_margin"].append(top2_gaps(ref.logits))
        cols["labels"].append(ref.labels)
        cols["index"].append(np.asarray(index))
        cols["coef_err_max"].append(np.abs(got_coeff - ref.coefficients).reshape(len(got_coeff), -1).max(-1))
        cols["float_spec_int_coef"].append(top1(net.specialist([ref.image, got_coeff], training=False).numpy()))
        cols["isolated"].append(top1(arts.specialist_presynth(ref.image, ref.coefficients)))
        cols["end_to_end"].append(top1(arts.specialist_presynth(ref.image, got_coeff)))
        for d in range(args.noise_draws):
            noisy = ref.coefficients + rng.normal(0, rms, ref.coefficients.shape).astype(np.float32)
            noise_cols[d].append(top1(net.specialist([ref.image, noisy], training=False).numpy()))
    c = {k: np.concatenate(v) for k, v in cols.items()}
    logits = np.concatenate(float_logits)
    rows = np.arange(len(logits))

    def given_up(answer: np.ndarray) -> np.ndarray:
        """Float logit of the float answer minus the float logit of ``answer``."""
        return logits[rows, c["float"]] - logits[rows, answer]

    n = len(c["float"])
    near_tie = c["float_margin"] < 0.05
    miss = {k: c[k] != c["float"] for k in answers}
    noise = [np.concatenate(v) for v in noise_cols]
    noise_miss = [np.flatnonzero(a != c["float"]) for a in noise]
    noise_moved = np.unique(np.concatenate(noise_miss)) if noise_miss else np.array([], int)  # any draw
    any_idx = np.flatnonzero(np.logical_or.reduce(list(miss.values())))
    record = {
        "checkpoint": args.checkpoint, "export": str(directory), "images": n,
        "noise_seed": args.noise_seed,
        "coefficient_error": {"max_abs": float(np.abs(err).max()), "rms": rms},
        "misses": {k: int(v.sum()) for k, v in miss.items()},
        "float_spec_noise_misses": [len(m) for m in noise_miss],
        "float_spec_noise": {
            "crops_missed_in_any_draw": int(len(noise_moved)),
            "of_them_float_margin_below_0.05": int(near_tie[noise_moved].sum()),
            "largest_given_up_gap": round(max((float(given_up(a)[m].max())
                                               for a, m in zip(noise, noise_miss) if m.size), default=0.0), 4),
        },
        "end_to_end_misses_also": {
            "float_spec_int_coef": int(np.sum(miss["end_to_end"] & miss["float_spec_int_coef"])),
            "isolated": int(np.sum(miss["end_to_end"] & miss["isolated"])),
        },
        "float_margin": {"median_all": float(np.median(c["float_margin"])),
                         "crops_below": {str(t): int(np.sum(c["float_margin"] < t))
                                         for t in (0.01, 0.05, 0.1, 0.25)}},
        "crops": [{"index": int(c["index"][i]), "file": Path(str(held.entries[c["index"][i]])).name,
                   "label": int(c["labels"][i]), "float": int(c["float"][i]),
                   "float_margin": round(float(c["float_margin"][i]), 4),
                   "coef_err_max": round(float(c["coef_err_max"][i]), 4),
                   **{k: int(c[k][i]) for k in answers},
                   **{f"{k}_given_up": round(float(given_up(c[k])[i]), 4) for k in answers}}
                  for i in any_idx],
        "command": shlex.join([".venv/bin/python", *sys.argv]),
    }
    text = json.dumps(record, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
