"""Check every exported artifact against the float TF model from the checkpoint.

For each artifact, on held-out images, one frame at a time as on a device:
- ``top1_agreement`` with the float model, and ``accuracy`` where labels are known;
- logit error: max and mean absolute, and max relative to the largest float logit;
- for the lightweight model, the coefficient error.

Specialists are checked twice: ``isolated`` (fed the float LM's coefficients, so only the
specialist's own error shows) and ``end_to_end`` (fed the exported LM's coefficients, against
the float pipeline), which is what a device computes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from basisnet_deploy.artifacts.manifest import manifest_preprocessing


def _compare(ref: np.ndarray, got: np.ndarray) -> dict:
    diff = np.abs(got - ref)
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "max_rel": float(diff.max() / max(float(np.abs(ref).max()), 1e-12))}


def _scores(ref_logits, got_logits, labels) -> dict:
    agree = np.argmax(ref_logits, -1) == np.argmax(got_logits, -1)
    out = {"top1_agreement": float(agree.mean()), "logits": _compare(ref_logits, got_logits)}
    if labels is not None:
        out["accuracy"] = float((np.argmax(got_logits, -1) == labels).mean())
        out["float_accuracy"] = float((np.argmax(ref_logits, -1) == labels).mean())
    return out


def verify_directory(directory, manifest: dict, net, images, labels, source: str) -> dict:
    """Verification results for every artifact in ``directory`` (see module docstring)."""
    import tensorflow as tf

    from basisnet_deploy.data import preprocess
    from basisnet_deploy.runtime.sessions import open_session
    from basisnet_deploy.artifacts.synthesis import load_presynth, synthesize

    directory = Path(directory)
    arts = manifest["artifacts"]
    a = manifest["architecture"]
    pre = manifest_preprocessing(manifest)
    light = np.stack([preprocess(im, a["light_resolution"], pre) for im in images])
    image = np.stack([preprocess(im, a["resolution"], pre) for im in images])
    ref = net.lightweight(tf.constant(light), training=False)
    ref_lm_logits, ref_coeff = ref["logits"].numpy(), ref["coefficients"].numpy()
    ref_sp = net.specialist([tf.constant(image), ref["coefficients"]], training=False).numpy()
    labels = None if labels is None else np.asarray(labels)
    results = {"images": len(images), "source": source}

    lm = open_session(directory / arts["lightweight"]["file"])
    lm_out = [lm.run({"image": x[None]}) for x in light]
    got_logits = np.concatenate([o["logits"] for o in lm_out]).astype(np.float32)
    got_coeff = np.concatenate([o["coefficients"] for o in lm_out]).astype(np.float32)
    results["lightweight"] = {**_scores(ref_lm_logits, got_logits, labels),
                              "coefficients": _compare(ref_coeff, got_coeff)}
    # The exported LM's coefficients (got_coeff) drive the end-to-end checks, as on a device.

    if "specialist_coefficient" in arts:
        sp = open_session(directory / arts["specialist_coefficient"]["file"])

        def run_coeff(coeff):
            return np.concatenate([sp.run({"image": x[None], "coefficients": c[None]})["logits"]
                                   for x, c in zip(image, coeff)]).astype(np.float32)
        coeff_iso = run_coeff(ref_coeff)
        results["specialist_coefficient"] = {"isolated": _scores(ref_sp, coeff_iso, labels),
                                             "end_to_end": _scores(ref_sp, run_coeff(got_coeff), labels)}

    if "specialist_presynth" in arts:
        ps = load_presynth(directory, arts["specialist_presynth"])

        def run_presynth(coeff):
            outs = []
            for x, c in zip(image, coeff):
                model = synthesize(ps.template, ps.table, ps.bases, c)
                s = open_session(ps.path, model=model)
                outs.append(s.run({"image": x[None]})["logits"])
            return np.concatenate(outs).astype(np.float32)
        iso = run_presynth(ref_coeff)
        results["specialist_presynth"] = {"isolated": _scores(ref_sp, iso, labels),
                                          "end_to_end": _scores(ref_sp, run_presynth(got_coeff), labels)}
        if "specialist_coefficient" in arts:
            results["presynth_vs_coefficient"] = _compare(coeff_iso, iso)
    return results
