"""Early-exit threshold calibration: the paper's accuracy vs average-MAdds trade-off.

For every candidate threshold t (each distinct LM confidence, plus "never exit"), frames
with ``max softmax(LM logits) >= t`` take the LM's answer and skip the specialist. Accuracy
and the exit rate are measured on labelled images with the exported artifacts; average MAdds
come from the manifest's cost model at that exit rate.
"""

from __future__ import annotations

import numpy as np

from basisnet_deploy.artifacts.manifest import MANIFEST_FILE, expected_madds, load_manifest
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.runtime.runner import RunnerOptions, TwoStageRunner


def tradeoff(dep, factory, images, labels, form: str = "presynth") -> dict:
    """LM and specialist answers per image, and the curve over all thresholds."""
    runner = TwoStageRunner(dep, factory, factory, RunnerOptions(threshold=None, form=form,
                                                                 mode="sequential"))
    conf, lm_pred, sp_pred = [], [], []
    for r in runner.run(dep.frame(im) for im in images):  # never exits: both answers
        conf.append(r.lightweight_confidence)
        lm_pred.append(r.lightweight_label)
        sp_pred.append(r.label)
    conf, lm_pred, sp_pred, labels = map(np.asarray, (conf, lm_pred, sp_pred, labels))
    cost = dep.cost()
    curve = []
    for t in sorted(set(conf.tolist())) + [float("inf")]:
        exits = conf >= t
        pred = np.where(exits, lm_pred, sp_pred)
        rate = float(exits.mean())
        curve.append({"threshold": t if np.isfinite(t) else None, "accuracy": float((pred == labels).mean()),
                      "exit_rate": rate, "avg_madds": float(expected_madds(cost, rate))})
    return {"curve": curve, "no_exit_accuracy": curve[-1]["accuracy"],
            "lightweight_accuracy": float((lm_pred == labels).mean()),
            "full_madds": cost["madds"], "images": int(len(labels))}


def choose(result: dict, max_drop: float | None = None, target_madds: float | None = None) -> dict:
    """The cheapest threshold within ``max_drop`` points of no-exit accuracy, or the most
    accurate one within ``target_madds`` average MAdds. "Never exit" (threshold None) is a
    candidate too: it is the answer when no threshold keeps accuracy within the drop."""
    curve = result["curve"]
    if max_drop is not None:
        floor = result["no_exit_accuracy"] - max_drop / 100.0
        ok = [c for c in curve if c["accuracy"] >= floor - 1e-12]
        if not ok:
            raise UserError(f"no threshold keeps top-1 within {max_drop} points; allow more")
        return min(ok, key=lambda c: (c["avg_madds"], -c["accuracy"]))
    if target_madds is not None:
        ok = [c for c in curve if c["avg_madds"] <= target_madds]
        if not ok:
            raise UserError(f"no threshold reaches {target_madds:.0f} average MAdds; the LM alone "
                            f"costs {min(c['avg_madds'] for c in curve):.0f}")
        return max(ok, key=lambda c: (c["accuracy"], -c["avg_madds"]))
    raise UserError("give --max-drop POINTS or --target-madds MADDS")


def write_threshold(directory, chosen: dict, result: dict, constraint: dict) -> None:
    """Record the threshold in manifest.json (atomically: temp file, then rename)."""
    manifest = load_manifest(directory)
    manifest.early_exit = {
        "threshold": chosen["threshold"], "constraint": constraint,
        "calibrated_on": result["images"], "accuracy": chosen["accuracy"],
        "no_exit_accuracy": result["no_exit_accuracy"], "exit_rate": chosen["exit_rate"],
        "avg_madds": chosen["avg_madds"], "full_madds": result["full_madds"],
        "madds_cut": 1.0 - chosen["avg_madds"] / result["full_madds"]}
    manifest.save(directory)


def plot(result: dict, chosen: dict, path) -> None:
    """Accuracy against average MAdds over all thresholds, as a PNG (Pillow only)."""
    from PIL import Image, ImageDraw

    w, h, m = 720, 460, 70
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    xs = [c["avg_madds"] / 1e6 for c in result["curve"]]
    ys = [c["accuracy"] * 100 for c in result["curve"]]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys) - 0.5, max(ys) + 0.5

    def px(x, y):
        return (m + (x - x0) / (x1 - x0) * (w - 2 * m), h - m - (y - y0) / (y1 - y0) * (h - 2 * m))
    d.rectangle([m, m, w - m, h - m], outline="black")
    for i in range(5):
        xv, yv = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        d.text((px(xv, y0)[0] - 15, h - m + 8), f"{xv:.2f}", fill="black")
        d.text((8, px(x0, yv)[1] - 6), f"{yv:.1f}%", fill="black")
    pts = sorted(zip(xs, ys))
    d.line([px(x, y) for x, y in pts], fill=(30, 90, 200), width=2)
    cx, cy = px(chosen["avg_madds"] / 1e6, chosen["accuracy"] * 100)
    d.ellipse([cx - 6, cy - 6, cx + 6, cy + 6], outline=(200, 30, 30), width=3)
    d.text((m, 20), "BasisNet early exit: top-1 vs average MAdds per frame (M)", fill="black")
    label = "never exit" if chosen["threshold"] is None else f"threshold {chosen['threshold']:.4f}"
    d.text((m, 38), f"chosen {label}: {chosen['accuracy']:.1%} top-1, "
                    f"{chosen['avg_madds'] / 1e6:.2f}M MAdds, exit rate {chosen['exit_rate']:.1%}",
           fill=(200, 30, 30))
    d.text((w // 2 - 60, h - 30), "average MAdds per frame (M)", fill="black")
    img.save(path)


def calibrate(directory, held, max_drop: float | None = None, target_madds: float | None = None,
              form: str = "presynth", plot_path=None) -> dict:
    """Choose the early-exit threshold on labelled held-out images and record it.

    ``held`` is a :class:`~basisnet_deploy.data.datasets.HeldOut` with labels. The plot is
    drawn before the manifest is touched, so a bad ``plot_path`` changes nothing.
    """
    from pathlib import Path

    from basisnet_deploy.runtime.backends import make_factory
    from basisnet_deploy.runtime.deployment import Deployment

    if (max_drop is None) == (target_madds is None):
        raise UserError("give exactly one of --max-drop POINTS or --target-madds MADDS")
    if held.labels is None:
        raise UserError(f"{held.source}: threshold calibration needs labels: DIR/<class>/<images> "
                        "with the manifest's class names")
    plot_path = Path(plot_path or Path(directory) / "early_exit_tradeoff.png")
    if not plot_path.parent.is_dir():
        raise UserError(f"--plot {plot_path}: its folder does not exist; create it or choose another")
    dep = Deployment(directory)
    runtime = "litert" if dep.manifest.target == "tflite" else "onnxruntime"
    result = tradeoff(dep, make_factory(runtime, "xnnpack"), held.images, held.labels, form)
    chosen = choose(result, max_drop, target_madds)
    try:
        plot(result, chosen, plot_path)
    except OSError as e:
        raise UserError(f"--plot {plot_path}: cannot write it ({e.strerror}); nothing was changed") from None
    constraint = {"max_drop_points": max_drop} if max_drop is not None else {"target_madds": target_madds}
    write_threshold(directory, chosen, result, constraint)
    return {"chosen": chosen, **{k: v for k, v in result.items() if k != "curve"},
            "source": held.source, "plot": str(plot_path), "manifest": str(Path(directory) / MANIFEST_FILE)}
