"""What the report computes from one fresh run: NumPy only, no TensorFlow, no plotting.

Every function takes the arrays of :class:`FreshRun` (one row per image) and returns a small
dataclass of plain numbers, so the page and its JSON show the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from basisnet_deploy.artifacts.manifest import PipelineCost
from basisnet_deploy.common.answers import agreeing, answers
from basisnet_deploy.runtime.runner import softmax


@dataclass
class FreshRun:
    """The exported artifacts' outputs on the report's images."""

    labels: np.ndarray  # [N] true class index (into the manifest's labels)
    lm_logits: np.ndarray  # [N, C]
    coefficients: np.ndarray  # [N, L, K], the exported LM's
    specialist_logits: dict  # role name -> [N, C], end to end (the exported LM's coefficients)
    primary: str  # the specialist role the early-exit analysis uses


@dataclass
class BasisClasses:
    basis: int
    classes: list  # [{"name", "mean_coefficient", "images"}], highest mean first
    thumbnails: list  # per class: image indices of that class, highest coefficient first


@dataclass
class Specialization:
    block: str
    layer: int
    bases: list[BasisClasses]


def class_means(run: FreshRun, classes: int) -> np.ndarray:
    """[C, L, K] mean coefficient per true class; NaN for classes without images."""
    out = np.full((classes,) + run.coefficients.shape[1:], np.nan)
    for c in range(classes):
        rows = run.coefficients[run.labels == c]
        if len(rows):
            out[c] = rows.mean(axis=0)
    return out


def specialization(run: FreshRun, names, blocks, layer: int, top: int = 3,
                   thumbs: int = 3) -> Specialization:
    """For each basis of ``layer``: the classes with the highest mean coefficient (paper Fig. 3)."""
    means = class_means(run, len(names))[:, layer, :]  # [C, K]
    present = np.flatnonzero(~np.isnan(means[:, 0]))
    bases = []
    for k in range(means.shape[1]):
        order = present[np.argsort(-means[present, k], kind="stable")][:top]
        classes, pictures = [], []
        for c in order:
            idx = np.flatnonzero(run.labels == c)
            best = idx[np.argsort(-run.coefficients[idx, layer, k], kind="stable")][:thumbs]
            classes.append({"name": names[c], "mean_coefficient": round(float(means[c, k]), 4),
                            "images": int(len(idx))})
            pictures.append([int(i) for i in best])
        bases.append(BasisClasses(k, classes, pictures))
    return Specialization(blocks[layer], layer, bases)


@dataclass
class SimilarClasses:
    classes: list[str]
    chosen_by: str  # "user" or "confusion"
    blocks: list[str]
    mean_coefficients: dict  # class name -> [L][K]
    confusion: dict = field(default_factory=dict)  # "a|b" -> symmetric mean LM probability


def soft_confusion(run: FreshRun, classes: int) -> np.ndarray:
    """[C, C]: mean LM probability given to class j by images of class i (0 where no images)."""
    p = softmax(run.lm_logits.astype(np.float64))
    out = np.zeros((classes, classes))
    for c in range(classes):
        rows = p[run.labels == c]
        if len(rows):
            out[c] = rows.mean(axis=0)
    return out


def similar_classes(run: FreshRun, names, blocks, chosen=None, size: int = 4) -> SimilarClasses:
    """Per-layer mean coefficients for a set of classes (paper Fig. 4): the user's, or the
    classes the LM confuses most (a greedy set around the most-confused pair)."""
    conf = soft_confusion(run, len(names))
    sym = conf + conf.T
    np.fill_diagonal(sym, -1.0)
    present = set(np.unique(run.labels).tolist())
    if chosen:
        picked = [names.index(n) for n in chosen]
    else:
        mask = np.full(sym.shape, -1.0)
        ids = sorted(present)
        mask[np.ix_(ids, ids)] = sym[np.ix_(ids, ids)]
        i, j = np.unravel_index(int(np.argmax(mask)), mask.shape)
        picked = [int(i), int(j)] if i != j else ids[:1]
        while len(picked) < min(size, len(ids)):
            rest = [c for c in ids if c not in picked]
            picked.append(max(rest, key=lambda c: (sum(mask[c, p] for p in picked), -c)))
    means = class_means(run, len(names))
    pairs = {f"{names[a]}|{names[b]}": round(float(conf[a, b] + conf[b, a]), 4)
             for n, a in enumerate(picked) for b in picked[n + 1:]}
    return SimilarClasses([names[c] for c in picked], "user" if chosen else "confusion",
                          list(blocks), {names[c]: np.round(means[c], 4).tolist() for c in picked},
                          pairs)


@dataclass
class BasisHealth:
    blocks: list[str]
    max_entropy: float  # log K, nats
    mean_entropy: list[float]  # per layer: mean over images of H(alpha[l])
    usage_entropy: list[float]  # per layer: H(mean over images of alpha[l])
    largest_frequency: list  # [L][K]: share of images where basis k has the largest coefficient
    mean_coefficient: list  # [L][K]
    unused: list  # [{"block", "basis"}]: never the largest coefficient on any image


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=-1)


def basis_health(run: FreshRun, blocks) -> BasisHealth:
    a = run.coefficients.astype(np.float64)
    n, layers, k = a.shape
    top = a.argmax(axis=-1)  # [N, L]
    freq = np.stack([np.bincount(top[:, l], minlength=k) / n for l in range(layers)])
    unused = [{"block": blocks[l], "basis": int(b)} for l in range(layers) for b in range(k)
              if freq[l, b] == 0]
    return BasisHealth(list(blocks), round(float(np.log(k)), 4),
                       np.round(_entropy(a).mean(axis=0), 4).tolist(),
                       np.round(_entropy(a.mean(axis=0)), 4).tolist(),
                       np.round(freq, 4).tolist(), np.round(a.mean(axis=0), 4).tolist(), unused)


def tradeoff_curve(conf, lm_pred, sp_pred, labels, cost: PipelineCost) -> list[dict]:
    """Accuracy, exit rate and average MAdds for every threshold (each distinct LM
    confidence) plus "never exit" (threshold None, last)."""
    conf, lm_pred, sp_pred, labels = map(np.asarray, (conf, lm_pred, sp_pred, labels))
    curve = []
    for t in sorted(set(conf.tolist())) + [float("inf")]:
        exits = conf >= t
        pred = np.where(exits, lm_pred, sp_pred)
        rate = float(exits.mean())
        curve.append({"threshold": t if np.isfinite(t) else None,
                      "accuracy": float((pred == labels).mean()), "exit_rate": rate,
                      "avg_madds": float(cost.expected_madds(rate))})
    return curve


@dataclass
class EarlyExit:
    threshold: float | None  # the manifest's calibrated threshold (None: never exit)
    curve: list[dict]
    at_threshold: dict  # accuracy, exit_rate, avg_madds on these images at ``threshold``
    per_class_exit_rate: dict  # class name -> share of its images that exit at ``threshold``
    manifest: dict  # the manifest's early_exit record, as stored


def early_exit(run: FreshRun, names, cost: PipelineCost, early: dict) -> EarlyExit:
    p = softmax(run.lm_logits.astype(np.float32))  # float32, as the runner decides exits
    conf, lm_pred = p.max(axis=-1).astype(np.float64), p.argmax(axis=-1)
    sp_pred = run.specialist_logits[run.primary].argmax(axis=-1)
    t = early.get("threshold")
    exits = np.zeros(len(conf), bool) if t is None else conf >= t
    pred = np.where(exits, lm_pred, sp_pred)
    rate = float(exits.mean())
    at = {"accuracy": round(float((pred == run.labels).mean()), 4), "exit_rate": round(rate, 4),
          "avg_madds": round(float(cost.expected_madds(rate)))}
    per_class = {names[c]: round(float(exits[run.labels == c].mean()), 4)
                 for c in range(len(names)) if np.any(run.labels == c)}
    curve = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in c.items()}
             for c in tradeoff_curve(conf, lm_pred, sp_pred, run.labels, cost)]
    return EarlyExit(t, curve, at, per_class, dict(early))


def fresh_fidelity(run: FreshRun) -> dict:
    """Agreement of the exported artifacts among themselves and with the labels."""
    lm_pred = answers(run.lm_logits)
    out = {"lightweight": {"accuracy": round(float((lm_pred == run.labels).mean()), 4)}}
    for role, logits in run.specialist_logits.items():
        out[role] = {"accuracy": round(float((answers(logits) == run.labels).mean()), 4),
                     "agreement_with_lightweight": round(float(agreeing(logits, run.lm_logits).mean()), 4)}
    if len(run.specialist_logits) == 2:
        a, b = (run.specialist_logits[r] for r in ("specialist_coefficient", "specialist_presynth"))
        scale = max(float(np.abs(a).max()), 1e-12)
        out["presynth_vs_coefficient"] = {
            "top1_agreement": round(float(agreeing(a, b).mean()), 4),
            "logits_max_abs": float(np.abs(a - b).max()),
            "logits_max_rel": float(np.abs(a - b).max() / scale)}
    return out


def verification_rows(v: dict | None) -> list[dict]:
    """The manifest's stored verification (against the float TF model) as one row per
    artifact: top-1 agreement, accuracy and its drop from the float model, logit and
    coefficient error. [] when the export recorded none."""
    if not v:
        return []

    def row(name, s, coeff=None):
        acc, ref = s.get("accuracy"), s.get("float_accuracy")
        return {"artifact": name, "top1_agreement": s["top1_agreement"], "accuracy": acc,
                "float_accuracy": ref,
                "accuracy_drop": None if acc is None or ref is None else round(ref - acc, 6),
                "logits_max_rel": s["logits"]["max_rel"], "logits_max_abs": s["logits"]["max_abs"],
                "coefficients_max_abs": None if coeff is None else coeff["max_abs"]}
    rows = [row("lightweight", v["lightweight"], v["lightweight"].get("coefficients"))]
    for role in ("specialist_coefficient", "specialist_presynth"):
        if role in v:
            rows.append(row(f"{role} (float LM coefficients)", v[role]["isolated"]))
            rows.append(row(f"{role} (end to end)", v[role]["end_to_end"]))
    return rows
