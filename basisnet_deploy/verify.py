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

import hashlib
import json
from pathlib import Path

import numpy as np

from basisnet_deploy.errors import UserError


def evaluation_set(cfg, images_dir: str | None = None):
    """(images, labels or None, source, indices into digits or []) for verification.

    Default: the checkpoint's own held-out split when it was trained on digits.
    """
    from basisnet_deploy import data

    trained_on_digits = cfg.training.get("dataset") == "digits"
    if images_dir is None and not trained_on_digits:
        raise UserError("this checkpoint was not trained on digits: pass --images DIR with "
                        "held-out images (DIR/<class>/<images> to also score accuracy)")
    if images_dir in (None, "digits"):
        # By default the checkpoint's own held-out split; for an explicit "digits", a held-out
        # fifth (seed 0). Digits calibration uses the rest.
        settings = cfg.training.get("settings", {}) if images_dir is None else {}
        ds = data.digits()
        _, test_idx = ds.split_indices(settings.get("held_out", 0.2), settings.get("seed", 0))
        held = ds.subset(test_idx)
        return held.images, held.labels, "held-out digits", test_idx
    root = Path(images_dir)
    try:
        ds = data.image_folder(root)
        if tuple(ds.class_names) == tuple(cfg.labels):
            return ds.images, ds.labels, str(root), []
        return ds.images, None, str(root), []
    except data.DataError:
        from basisnet_deploy.calibration.images import calibration_images

        imgs = calibration_images(str(root), 10**9)
        return imgs.images, None, str(root), []


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
    from basisnet_deploy.runtime import open_session
    from basisnet_deploy.synthesis import load_presynth, synthesize

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


def manifest_preprocessing(manifest):
    """The manifest's preprocessing as a :class:`Preprocessing` (stage resolutions aside)."""
    from basisnet_deploy.config import Preprocessing

    p = manifest["preprocessing"]
    return Preprocessing(resize=p["resize"], crop_fraction=p["crop_fraction"],
                         input_range=tuple(p["input_range"]), interpolation=p["interpolation"])


def load_manifest(directory) -> dict:
    directory = Path(directory)
    path = directory / "manifest.json"
    if not path.is_file():
        raise UserError(f"{path}: missing; pass a directory written by basisnet-deploy export")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}") from None
    if manifest.get("schema_version") != 1:
        raise UserError(f"{path}: unsupported schema_version {manifest.get('schema_version')!r}")
    return manifest


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_files(directory, manifest) -> None:
    """Every artifact file present, with the size and sha256 the manifest records."""
    directory = Path(directory)
    for role, entry in manifest["artifacts"].items():
        path = directory / entry["file"]
        if not path.is_file():
            raise UserError(f"{path}: missing ({role}); re-run basisnet-deploy export")
        data = path.read_bytes()
        if len(data) != entry["bytes"] or sha256_hex(data) != entry["sha256"]:
            raise UserError(f"{path}: {len(data)} bytes, sha256 differs from the manifest "
                            f"({entry['bytes']} bytes expected): truncated or modified; "
                            "re-run basisnet-deploy export")
