"""Early-exit threshold calibration: the paper's accuracy vs average-MAdds trade-off.

For every candidate threshold t (each distinct LM confidence, plus "never exit"), frames
with ``max softmax(LM logits) >= t`` take the LM's answer and skip the specialist. Accuracy
and the exit rate are measured on labelled images with the exported artifacts; average MAdds
come from the manifest's cost model at that exit rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from basisnet_deploy.artifacts.manifest import MANIFEST_FILE, load_manifest
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.common.files import write_bytes_atomically
from basisnet_deploy.common.jsonable import jsonable_fields
from basisnet_deploy.report.analysis import tradeoff_curve
from basisnet_deploy.report.plots import tradeoff_png
from basisnet_deploy.runtime.runner import RunnerOptions, TwoStageRunner


PLOT_FILE = "early_exit_tradeoff.png"  # the trade-off plot, by default in the export

@dataclass(frozen=True)
class TradeoffPoint:
    """One threshold on the trade-off curve: top-1, the share of frames that exit at the
    lightweight model, and the average MAdds per frame. ``threshold`` None: never exit."""

    threshold: float | None
    accuracy: float
    exit_rate: float
    avg_madds: float

    def to_json(self) -> dict:
        return jsonable_fields(self)


@dataclass(frozen=True)
class Calibration:
    """``calibrate-threshold``'s result: the threshold chosen and recorded in ``manifest``,
    never exiting's top-1 and MAdds (``no_exit_accuracy``, ``full_madds``) and the
    lightweight model's top-1 alone, on ``images`` labelled images from ``source``
    (``classes``: images per class; ``skipped``: the unreadable files); ``plot``: the
    trade-off PNG."""

    chosen: TradeoffPoint
    no_exit_accuracy: float
    lightweight_accuracy: float
    full_madds: int
    images: int
    skipped: dict  # {"count", "by_reason", "first"}
    classes: dict[str, int]
    source: str
    plot: Path
    manifest: Path
    replaced: dict | None = None  # the calibrated threshold it replaced: threshold, calibrated_on

    def to_json(self) -> dict:
        return jsonable_fields(self)


def tradeoff(dep, factory, images, labels, form: str = "presynth") -> dict:
    """LM and specialist answers per image, and the curve over all thresholds. ``images``
    may be any iterable; each is preprocessed as it is reached."""
    answers = _answers(dep, factory, (dep.frame(im) for im in images), form)
    return _curve(dep, answers, labels)


def tradeoff_streamed(dep, factory, held, form: str = "presynth", progress=None) -> dict:
    """:func:`tradeoff` on a :class:`~basisnet_deploy.data.heldout.HeldOut`, decoded one
    image at a time; unreadable files are skipped and counted. ``progress(done, total, logs)``
    is called after each image."""
    from basisnet_deploy.data.heldout import class_counts

    labels = []

    def frames():
        if progress:  # the sessions are open once the first frame is asked for: rates count from here
            progress(0, len(held), {})
        for example in held.examples():
            labels.append(example.label)
            yield dep.frame(example.image)
            if progress:
                progress(example.index + 1, len(held), {})
    answers = _answers(dep, factory, frames(), form)
    if progress:
        progress(len(held), len(held), {})  # unreadable files at the end are done too
    if not labels:
        raise UserError(f"{held.source}: none of its {len(held)} files is a readable image")
    return {**_curve(dep, answers, labels), "skipped": held.skipped.to_json(),
            "classes": class_counts(labels, held.class_names)}


def _answers(dep, factory, frames, form: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(LM confidence, LM label, specialist label) per frame, never exiting early."""
    runner = TwoStageRunner(dep, factory, factory, RunnerOptions(threshold=None, form=form,
                                                                 mode="sequential"))
    conf, lm_pred, sp_pred = [], [], []
    for r in runner.run(frames):  # never exits: both answers
        conf.append(r.lightweight_confidence)
        lm_pred.append(r.lightweight_label)
        sp_pred.append(r.label)
    return np.asarray(conf), np.asarray(lm_pred), np.asarray(sp_pred)


def _curve(dep, answers, labels) -> dict:
    conf, lm_pred, sp_pred = answers
    labels = np.asarray(labels)
    cost = dep.cost()
    curve = tradeoff_curve(conf, lm_pred, sp_pred, labels, cost)
    return {"curve": curve, "no_exit_accuracy": curve[-1]["accuracy"],
            "lightweight_accuracy": float((lm_pred == labels).mean()),
            "full_madds": cost.madds, "images": int(len(labels))}


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
    """Accuracy against average MAdds over all thresholds, as a 720x460 PNG (matplotlib)."""
    png = tradeoff_png(result["curve"], chosen,
                       "BasisNet early exit: top-1 vs average MAdds per frame")
    write_bytes_atomically(Path(path), png)


def calibrate(directory, held, max_drop: float | None = None, target_madds: float | None = None,
              form: str = "presynth", plot_path=None, progress=None) -> Calibration:
    """Choose the early-exit threshold on labelled held-out images and record it.

    ``held`` is a :class:`~basisnet_deploy.data.heldout.HeldOut` with labels, decoded one
    image at a time. The plot is drawn before the manifest is touched, so a bad
    ``plot_path`` changes nothing.
    """
    from basisnet_deploy.runtime.backends import make_factory
    from basisnet_deploy.runtime.deployment import Deployment

    if (max_drop is None) == (target_madds is None):
        raise UserError("give exactly one of --max-drop POINTS or --target-madds MADDS")
    if held.labels is None:
        raise UserError(f"{held.source}: threshold calibration needs labels: DIR/<class>/<images> "
                        "with the manifest's class names")
    plot_path = Path(plot_path or Path(directory) / PLOT_FILE)
    if not plot_path.parent.is_dir():
        raise UserError(f"--plot {plot_path}: its folder does not exist; create it or choose another")
    dep = Deployment(directory)
    result = tradeoff_streamed(dep, make_factory(dep.manifest.runtime, "xnnpack"), held, form, progress)
    chosen = choose(result, max_drop, target_madds)
    try:
        plot(result, chosen, plot_path)
    except OSError as e:
        raise UserError(f"--plot {plot_path}: cannot write it ({e.strerror}); nothing was changed") from None
    constraint = {"max_drop_points": max_drop} if max_drop is not None else {"target_madds": target_madds}
    previous = dep.manifest.early_exit
    replaced = ({"threshold": previous.get("threshold"), "calibrated_on": previous["calibrated_on"]}
                if "calibrated_on" in previous else None)
    write_threshold(directory, chosen, result, constraint)
    return Calibration(chosen=TradeoffPoint(**chosen), no_exit_accuracy=result["no_exit_accuracy"],
                       lightweight_accuracy=result["lightweight_accuracy"],
                       full_madds=result["full_madds"], images=result["images"],
                       skipped=result["skipped"], classes=result["classes"], source=held.source,
                       plot=plot_path, manifest=Path(directory) / MANIFEST_FILE, replaced=replaced)
