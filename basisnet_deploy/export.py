"""``export``: checkpoint -> deployable artifacts + manifest, verified before they land.

Artifacts (README "Artifacts" describes each):
- ``lightweight``: image [1, r, r, 3] -> logits [1, classes], coefficients [1, L, K];
- ``specialist_coefficient``: image + coefficients -> logits; the bases are in the file and
  synthesis is in the graph (a runtime-filter conv);
- ``specialist_presynth``: a static-weight template, ``specialist_bases.npz`` (BN folded,
  template layout) and ``specialist_patches.json``; :func:`synthesize` writes a coefficient
  set's kernels into the template in place.

Everything is written into a temporary sibling directory, verified there, and renamed into
place, so a failed export leaves no half-written model.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np

from basisnet_deploy import __version__
from basisnet_deploy.atomic import staged_directory
from basisnet_deploy.converters import get_exporter
from basisnet_deploy.converters.base import QUANTIZATIONS, ExportError
from basisnet_deploy.errors import UserError
from basisnet_deploy.verify import sha256_hex

# TF's converter calibrates with its own deprecated tf.lite.Interpreter; not ours to fix.
warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated.*")

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
SPECIALIST_FORMS = ("coefficient", "presynth", "all")
ROLES = {
    "lightweight": "Lightweight model: previews the image on the CPU; class logits and the "
                   "per-block coefficients.",
    "specialist_coefficient": "Specialist, coefficient-input: image + coefficients in, logits "
                              "out; bases inside, synthesis in the graph.",
    "specialist_presynth": "Specialist, pre-synthesized: static-weight template; synthesize() "
                           "patches one coefficient set's kernels in place.",
    "baseline_plain": "Plain MobileNet of the specialist's shape (the template's weights), for "
                      "bench's overhead ratio; not part of the pipeline.",
}


def fold_bases(specialist) -> dict[str, tuple[str, int, np.ndarray, np.ndarray, np.ndarray]]:
    """layer -> (kind, slot, bases [K, *TFLite layout] with BN folded, folded bias [C],
    BN scale [C]).

    BN is shared across bases, so it folds exactly into every basis before mixing:
    ``fold(sum_k a_k W_k) = sum_k a_k fold(W_k)``.
    """
    from basisnet_deploy.layers import BasisConv1x1, BasisDepthwiseConv2D

    out = {}
    for layer in specialist.layers:
        if not isinstance(layer, (BasisConv1x1, BasisDepthwiseConv2D)):
            continue
        bn = specialist.get_layer(f"{layer.name}_bn")
        gamma, beta, mean, var = (w.numpy() for w in bn.weights)
        scale = gamma / np.sqrt(var + bn.epsilon)
        kernel = layer.kernel.numpy()  # [K, kh, kw, Cin, Cout] or [K, k, k, C, 1]
        if isinstance(layer, BasisConv1x1):
            folded = kernel * scale  # scale the output channels
            kind = "conv"
        else:
            folded = kernel * scale[:, None]
            kind = "depthwise"
        # Keras HWIO -> TFLite OHWI; depthwise HWC1 -> 1HWC: the same transpose.
        tfl = np.transpose(folded, (0, 4, 1, 2, 3)).astype(np.float32)
        out[layer.name] = (kind, layer.slot, tfl, (beta - mean * scale).astype(np.float32),
                           scale.astype(np.float32))
    return out


def _graphs(net, cfg, baked, decompose_hard_swish: bool = False):
    """The three graphs to convert; ``baked`` [L, K] are the template's coefficients.

    The models are rebuilt from the checkpoint's weights, so an export can choose the form of
    hard-swish (:func:`basisnet_deploy.layers.hard_swish_decomposed`) without touching them.
    """
    import tensorflow as tf

    from basisnet_deploy.converters.base import Graph
    from basisnet_deploy.layers import decomposed_hard_swish
    from basisnet_deploy.model import (build_lightweight, build_plain_specialist,
                                       build_specialist, copy_basis_into_plain)

    a = cfg.architecture
    n_blocks = len(a.nonshared_blocks)
    with decomposed_hard_swish(decompose_hard_swish):
        lm = build_lightweight(a)
        coeff_model = build_specialist(a, synthesis="batch")
        template = build_plain_specialist(a)
    lm.set_weights(net.lightweight.get_weights())
    coeff_model.set_weights(net.specialist.get_weights())
    copy_basis_into_plain(net.specialist, template, baked)

    light_in = [tf.TensorSpec([1, a.light_resolution, a.light_resolution, 3], tf.float32, name="image")]
    image_in = tf.TensorSpec([1, a.resolution, a.resolution, 3], tf.float32, name="image")
    coeff_in = tf.TensorSpec([1, n_blocks, a.bases], tf.float32, name="coefficients")

    def lm_fn(image):
        out = lm(image, training=False)
        return {"logits": out["logits"], "coefficients": out["coefficients"]}

    def coeff_fn(image, coefficients):
        return {"logits": coeff_model([image, coefficients], training=False)}

    def template_fn(image):
        return {"logits": template(image, training=False)}

    return {
        "lightweight": Graph("lightweight", lm, lm_fn, light_in, ["logits", "coefficients"]),
        "specialist_coefficient": Graph("specialist_coefficient", coeff_model, coeff_fn,
                                        [image_in, coeff_in], ["logits"]),
        "specialist_presynth": Graph("specialist_presynth", template, template_fn, [image_in],
                                     ["logits"], patchable=True),
    }


def export(checkpoint_dir, out_dir, target: str = "tflite", quantize: str | None = None,
           calibration: str | None = None, calibration_size: int = 200,
           specialist: str = "all", input_type: str = "float32", verify_images: int = 100,
           images: str | None = None, coefficient_int8: str = "dynamic", baseline: bool = False,
           seed: int = 0, progress=None) -> dict:
    """Export a checkpoint; returns the manifest. ``progress(message)`` reports each step.

    ``images`` ('digits' or a folder) are the held-out images verification uses; by default
    the checkpoint's own held-out split when it was trained on digits.
    ``coefficient_int8`` picks the TFLite int8 scheme of the coefficient-input specialist:
    ``dynamic`` (int8 weights, float activations) or ``fakequant`` (full int8; synthesized
    kernels symmetric per-tensor within max_k |W_k|).
    """
    from basisnet_deploy import checkpoint
    from basisnet_deploy.calibration.images import calibration_images
    from basisnet_deploy.cost import basisnet_cost
    from basisnet_deploy.verify import evaluation_set, verify_directory

    say = progress or (lambda msg: None)
    quantize = quantize or ("int8" if calibration else "float32")
    if quantize not in QUANTIZATIONS:
        raise UserError(f"--quantize: unknown {quantize!r}; choose one of {list(QUANTIZATIONS)}")
    if specialist not in SPECIALIST_FORMS:
        raise UserError(f"--specialist: unknown {specialist!r}; choose one of {list(SPECIALIST_FORMS)}")
    if coefficient_int8 not in ("dynamic", "fakequant"):
        raise UserError(f"--coefficient-int8: unknown {coefficient_int8!r}; choose dynamic or fakequant")
    if quantize == "int8" and not calibration:
        raise UserError("--quantize int8 needs real calibration images: pass --calibration "
                        "digits or --calibration IMAGE_DIR")
    exporter = get_exporter(target, input_type=input_type)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir())
                                                      and not (out_dir / MANIFEST).is_file())):
        raise UserError(f"{out_dir}: exists and is not an export directory; choose a new --out "
                        "(an existing export is replaced)")
    started = time.perf_counter()

    say(f"loading checkpoint {checkpoint_dir}")
    net, cfg = checkpoint.load(checkpoint_dir)
    a, pre = cfg.architecture, cfg.preprocessing
    held_images, held_labels, held_source, held_indices = evaluation_set(cfg, images)

    calib_report, calib = None, None
    if calibration:
        say(f"reading calibration images from {calibration}")
        calib = calibration_images(calibration, calibration_size, seed,
                                   exclude=set(held_indices) if calibration == "digits" else None)
        calib_report = calib.report()

    # The template is baked with the mean coefficients the LM gives the calibration images
    # (or the held-out images for float exports): typical weights for int8 ranges.
    from basisnet_deploy.data import preprocess

    baked_src = calib.images if calib else held_images[:64]
    light = np.stack([preprocess(im, a.light_resolution, pre) for im in baked_src])
    lm_coeff = net.lightweight(light, training=False)["coefficients"].numpy()
    baked = lm_coeff.mean(axis=0)
    decompose = exporter.decompose_hard_swish(quantize)
    graphs = _graphs(net, cfg, baked, decompose_hard_swish=decompose)
    roles = ["lightweight"] + {"coefficient": ["specialist_coefficient"],
                               "presynth": ["specialist_presynth"],
                               "all": ["specialist_coefficient", "specialist_presynth"]}[specialist]
    if baseline:
        roles.append("baseline_plain")
        graphs["baseline_plain"] = graphs["specialist_presynth"]

    feeds = {}
    if calib:
        image = np.stack([preprocess(im, a.resolution, pre) for im in calib.images])
        n_blocks = len(a.nonshared_blocks)
        onehots = [np.broadcast_to(np.eye(a.bases, dtype=np.float32)[k], (n_blocks, a.bases))
                   for k in range(a.bases)]
        feeds["lightweight"] = [{"image": x[None]} for x in light]
        feeds["specialist_presynth"] = [{"image": x[None]} for x in image]
        feeds["baseline_plain"] = feeds["specialist_presynth"]
        # Real LM coefficients, plus one-hot extremes so ranges cover every basis alone.
        feeds["specialist_coefficient"] = (
            [{"image": x[None], "coefficients": c[None]} for x, c in zip(image, lm_coeff)]
            + [{"image": image[k % len(image)][None], "coefficients": oh[None]}
               for k, oh in enumerate(onehots)])

    try:
        with staged_directory(out_dir) as tmp:
            artifacts = {}
            for role in roles:
                q = quantize
                if role == "specialist_coefficient" and quantize == "int8":
                    q = _coefficient_int8_scheme(target, coefficient_int8)
                    if q == "int8" and target == "tflite":
                        _bound_synthesized_kernels(graphs[role].model)
                q = _int8_recipe(target, role, q)
                say(f"converting {role} to {target} ({q})")
                reader = _reader(feeds.get(role)) if q not in ("float32", "float16", "dynamic") else None
                if role == "specialist_presynth" and q == "int8" and hasattr(exporter, "convert_presynth_int8"):
                    data, template_calibration = exporter.convert_presynth_int8(
                        graphs[role], reader, fold_bases(net.specialist), baked, lm_coeff)
                else:
                    data, template_calibration = exporter.convert(graphs[role], q, reader), None
                name = role + exporter.suffix
                (tmp / name).write_bytes(data)
                entry = {"role": ROLES[role], "file": name, "sha256": sha256_hex(data), "bytes": len(data),
                         "quantization": q}
                if role == "specialist_presynth":
                    entry.update(_write_presynth_sidecars(tmp, exporter, data, net, baked, q))
                if template_calibration:
                    entry["template_calibration"] = template_calibration
                artifacts[role] = entry
            manifest = {
                "schema_version": MANIFEST_VERSION,
                "generator": f"basisnet-deploy {__version__}",
                "target": target,
                "quantization": quantize,
                "hard_swish": ("decomposed: ADD+MUL+MUL, which XNNPACK runs in int8"
                               if decompose else "HARD_SWISH op"),
                "checkpoint": {"path": str(checkpoint_dir),
                               "config_sha256": sha256_hex((Path(checkpoint_dir) / "config.json").read_bytes())},
                "architecture": cfg.to_json()["architecture"],
                "preprocessing": {**cfg.to_json()["preprocessing"],
                                  "lightweight_resolution": a.light_resolution,
                                  "specialist_resolution": a.resolution},
                "labels": list(cfg.labels),
                "coefficients": {
                    "shape": [len(a.nonshared_blocks), a.bases],
                    "blocks": [f"L{i}" for i in a.nonshared_blocks],
                    "layout": "row l mixes the expand, depthwise and project kernels of block "
                              "blocks[l]; each row is a softmax over the K bases",
                    "batch_policy": "a batch shares one synthesized specialist, made from the mean "
                                    "of its frames' coefficients",
                },
                "cost": basisnet_cost(a),
                "early_exit": {"threshold": None},
                "artifacts": artifacts,
                "calibration": calib_report,
            }
            from basisnet_deploy.runtime import describe

            for role, entry in artifacts.items():
                entry.update(describe(tmp / entry["file"]))
                if target == "tflite":
                    from basisnet_deploy.converters.tflite import gpu_compatibility

                    entry["gpu_compatibility"] = gpu_compatibility(tmp / entry["file"])
            say(f"verifying against the float TF model on {min(verify_images, len(held_images))} "
                f"{held_source} images")
            manifest["verification"] = verify_directory(
                tmp, manifest, net, held_images[:verify_images], held_labels[:verify_images]
                if held_labels is not None else None, source=held_source)
            manifest["export_seconds"] = round(time.perf_counter() - started, 1)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    except ExportError as e:
        raise UserError(f"export failed: {e}") from None
    return manifest


# Issue #10, measured on held-out real photos (benchmarks/results/fidelity_photos.md): static
# int8 activations cost agreement and coefficient accuracy all through the trunks (the
# per-layer report: no single layer carries it), so these artifacts keep int8 weights with
# activations quantized per frame at run time (TFLite dynamic range; onnxruntime
# quantize_dynamic). Full-int8 TFLite templates get per-image calibrated ranges instead.
INT8_RECIPES = {("tflite", "lightweight"): "dynamic",
                ("onnx", "lightweight"): "dynamic",
                ("onnx", "specialist_coefficient"): "dynamic",
                ("tflite", "specialist_presynth"): "dynamic"}


def _int8_recipe(target: str, role: str, q: str) -> str:
    """The recipe an artifact gets when the export asks for ``q`` (only int8 is changed)."""
    return INT8_RECIPES.get((target, role), q) if q == "int8" else q


def _coefficient_int8_scheme(target: str, choice: str) -> str:
    """The int8 scheme for the coefficient-input specialist that runs on the target.

    TFLite: per-channel int8 is impossible for a filter computed in the graph (the kernel
    demands zero point 0 and the converter calibrates runtime filters asymmetrically). Two
    schemes run: ``dynamic`` range (int8 bases and shared weights, float activations and
    synthesized kernels) and ``fakequant`` (full int8; each synthesized kernel symmetric
    per-tensor within a bound from the bases). ONNX Runtime takes QDQ int8 with the runtime W
    per-tensor.
    """
    if target != "tflite":
        return "int8"
    return "dynamic" if choice == "dynamic" else "int8"


def _bound_synthesized_kernels(model) -> None:
    """Give every basis layer its symmetric range max_k |W_k| (valid for any softmax mix)."""
    from basisnet_deploy.layers import BasisConv1x1, BasisDepthwiseConv2D

    for layer in model.layers:
        if isinstance(layer, (BasisConv1x1, BasisDepthwiseConv2D)):
            layer.kernel_range = float(np.max(np.abs(layer.kernel.numpy())))


def _reader(feeds):
    if feeds is None:
        return None
    from basisnet_deploy.calibration.reader import FeedReader

    return FeedReader(feeds)


def _write_presynth_sidecars(tmp: Path, exporter, template: bytes, net, baked, quantize):
    """Bases (BN folded, template layout) and the patch table for the template."""
    from basisnet_deploy.synthesis import dump_table, overlapping

    patches, arrays = exporter.patch_table(template, fold_bases(net.specialist), baked, quantize)
    shared = overlapping(patches)
    if shared:
        raise ExportError(f"template: {shared}; synthesize() would overwrite one layer with "
                          "another's values")
    buf = tmp / "specialist_bases.npz"
    with open(buf, "wb") as f:
        np.savez(f, **arrays)
    (tmp / "specialist_patches.json").write_text(dump_table(patches))
    return {"bases": buf.name, "patch_table": "specialist_patches.json",
            "bases_sha256": sha256_hex(buf.read_bytes()),
            "baked_coefficients": np.round(baked, 6).tolist(), "patched_layers": len(patches)}
