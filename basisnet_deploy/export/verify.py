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

from basisnet_deploy.artifacts.manifest import Manifest, Role


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


def verify_directory(directory, manifest: Manifest, net, images, labels, source: str) -> dict:
    """Verification results for every artifact in ``directory`` (see module docstring)."""
    import tensorflow as tf

    from basisnet_deploy.data import preprocess
    from basisnet_deploy.runtime.sessions import open_session
    from basisnet_deploy.artifacts.synthesis import load_presynth, synthesize

    directory = Path(directory)
    arts = manifest.artifacts
    pre = manifest.preprocessing
    light = np.stack([preprocess(im, manifest.light_resolution, pre) for im in images])
    image = np.stack([preprocess(im, manifest.resolution, pre) for im in images])
    ref = net.lightweight(tf.constant(light), training=False)
    ref_lm_logits, ref_coeff = ref["logits"].numpy(), ref["coefficients"].numpy()
    ref_sp = net.specialist([tf.constant(image), ref["coefficients"]], training=False).numpy()
    labels = None if labels is None else np.asarray(labels)
    results = {"images": len(images), "source": source}

    lm = open_session(directory / arts[Role.LIGHTWEIGHT].file)
    lm_out = [lm.run({"image": x[None]}) for x in light]
    got_logits = np.concatenate([o["logits"] for o in lm_out]).astype(np.float32)
    got_coeff = np.concatenate([o["coefficients"] for o in lm_out]).astype(np.float32)
    results["lightweight"] = {**_scores(ref_lm_logits, got_logits, labels),
                              "coefficients": _compare(ref_coeff, got_coeff)}
    # The exported LM's coefficients (got_coeff) drive the end-to-end checks, as on a device.

    if Role.SPECIALIST_COEFFICIENT in arts:
        sp = open_session(directory / arts[Role.SPECIALIST_COEFFICIENT].file)

        def run_coeff(coeff):
            return np.concatenate([sp.run({"image": x[None], "coefficients": c[None]})["logits"]
                                   for x, c in zip(image, coeff)]).astype(np.float32)
        coeff_iso = run_coeff(ref_coeff)
        results["specialist_coefficient"] = {"isolated": _scores(ref_sp, coeff_iso, labels),
                                             "end_to_end": _scores(ref_sp, run_coeff(got_coeff), labels)}

    if Role.SPECIALIST_PRESYNTH in arts:
        ps = load_presynth(directory, arts[Role.SPECIALIST_PRESYNTH])

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
        if Role.SPECIALIST_COEFFICIENT in arts:
            results["presynth_vs_coefficient"] = _compare(coeff_iso, iso)
    return results


def verify_export(directory, images: str | None = None, limit: int | None = None) -> dict:
    """Verify an export directory against its checkpoint on held-out images.

    ``images``: 'digits' or a folder; default the checkpoint's own held-out split.
    """
    from basisnet_deploy.artifacts.manifest import check_files, load_manifest
    from basisnet_deploy.data.datasets import evaluation_set
    from basisnet_deploy.model import checkpoint

    manifest = load_manifest(directory)
    check_files(directory, manifest)
    net, cfg = checkpoint.load(manifest.checkpoint.get("path", ""))
    held = evaluation_set(cfg, images)
    n = limit or len(held.images)
    labels = None if held.labels is None else held.labels[:n]
    return verify_directory(directory, manifest, net, held.images[:n], labels, held.source)
