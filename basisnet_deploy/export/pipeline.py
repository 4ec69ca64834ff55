"""``export``: checkpoint -> deployable artifacts + manifest, verified before they land.

Artifacts (docs/export.md describes each):
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

import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from basisnet_deploy import __version__
from basisnet_deploy.artifacts import compact_bases
from basisnet_deploy.artifacts.manifest import (BASES_FILE, LAYER_REPORT_FILE, PATCH_TABLE_FILE, Artifact,
                                                Manifest, PresynthFiles, Quantization, Role, legacy_export)
from basisnet_deploy.calibration.images import calibration_images
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.common.files import (check_output_dir, sha256_hex, staged_directory,
                                          write_json_atomically)
from basisnet_deploy.converters import get_exporter
from basisnet_deploy.converters.base import ExportError
from basisnet_deploy.converters.weight_tuning import Augmentation, WeightTuning, tune_int8_weights
from basisnet_deploy.data.preprocessing import decode_side, preprocess
from basisnet_deploy.data.datasets import describe_skipped, evaluation_set
from basisnet_deploy.export.check import gpu_verdicts
from basisnet_deploy.export.verify import rate_lines, verify_directory
from basisnet_deploy.model import checkpoint
from basisnet_deploy.model.cost import basisnet_cost
from basisnet_deploy.runtime.sessions import describe

# TF's converter calibrates with its own deprecated tf.lite.Interpreter; not ours to fix.
warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated.*")

SPECIALIST_FORMS = ("coefficient", "presynth", "all")

# What ``--quantize int8`` makes of each artifact, per recipe (docs/export.md "Int8 recipes"). Measured
# on held-out real photographs in benchmarks/results/fidelity_photos.md:
# - full: static int8 activations everywhere XNNPACK runs int8 (fastest on CPU);
# - fidelity: precision where int8 costs agreement. The lightweight model stays float32:
#   its coefficients choose every synthesized kernel, and the nearest int8 rounding of its
#   weights alone moves them by up to 0.09-0.20 (three photo checkpoints; the specialists
#   then disagree on 1-2.5% of photos). The specialists keep int8 weights, with activations quantized per frame at run
#   time (the coefficient-input specialists: TFLite dynamic range, onnxruntime
#   quantize_dynamic of the bases) or float (the templates: weight-only int8, which XNNPACK and
#   onnxruntime dequantize once at load, so they run at float speed);
# - fidelity-int8-lm: fidelity with a weight-only int8 lightweight model, its weights and the
#   template's static ones tuned first (TUNED_INT8_WEIGHTS) on random views of the
#   calibration images, the step kept where a held-back quarter of them says tuning helps,
#   else nearest rounding. Figures: docs/export.md "Int8 recipes" (on both photo checkpoints
#   measured, every artifact agrees with float on >= 99.5% of held-out photos).
_FIDELITY = {("onnx", "specialist_coefficient"): "dynamic",
             ("tflite", "specialist_presynth"): "weight_only",
             ("onnx", "specialist_presynth"): "weight_only"}
INT8_RECIPES = {
    "full": {},
    "fidelity": {("tflite", "lightweight"): "float32", ("onnx", "lightweight"): "float32", **_FIDELITY},
    "fidelity-int8-lm": {("tflite", "lightweight"): "weight_only", ("onnx", "lightweight"): "weight_only",
                         **_FIDELITY},
}
# Artifacts whose int8 weights are tuned on the calibration images before conversion, per
# recipe (converters/weight_tuning.py): rounded so that they give the float model's outputs.
# The template's are the specialist's static kernels; its synthesized ones are rounded per frame.
TUNED_INT8_WEIGHTS = {"fidelity-int8-lm": ("lightweight", "specialist_presynth")}
EXPORT_QUANTIZATIONS = ["int8", "float16", "float32"]  # what a whole export may ask for


def fold_bases(specialist) -> dict[str, tuple[str, int, np.ndarray, np.ndarray, np.ndarray]]:
    """layer -> (kind, slot, bases [K, *TFLite layout] with BN folded, folded bias [C],
    BN scale [C]).

    BN is shared across bases, so it folds exactly into every basis before mixing:
    ``fold(sum_k a_k W_k) = sum_k a_k fold(W_k)``.
    """
    from basisnet_deploy.model.layers import BasisConv1x1, BasisDepthwiseConv2D

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


def _graphs(net, cfg, baked, decompose_hard_swish: bool = False, tuned: dict | None = None):
    """The three graphs to convert; ``baked`` [L, K] are the template's coefficients;
    ``tuned`` {role: weights} replace the lightweight model's or the template's weights (their
    int8-tuned weights, if any; the template's come from a specialist's weights).

    The models are rebuilt from the checkpoint's weights, so an export can choose the form of
    hard-swish (:func:`basisnet_deploy.model.layers.hard_swish_decomposed`) without touching them.
    """
    import tensorflow as tf

    from basisnet_deploy.converters.base import Graph
    from basisnet_deploy.model.layers import decomposed_hard_swish
    from basisnet_deploy.model.network import (build_lightweight, build_plain_specialist,
                                       build_specialist, copy_basis_into_plain)

    a = cfg.architecture
    n_blocks = len(a.nonshared_blocks)
    with decomposed_hard_swish(decompose_hard_swish):
        lm = build_lightweight(a)
        coeff_model = build_specialist(a, synthesis="batch")
        template = build_plain_specialist(a)
    tuned = tuned or {}
    lm.set_weights(tuned.get(Role.LIGHTWEIGHT.value, net.lightweight.get_weights()))
    coeff_model.set_weights(net.specialist.get_weights())
    copy_basis_into_plain(_specialist_with(net.specialist, a, tuned.get(Role.SPECIALIST_PRESYNTH.value)),
                          template, baked)

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


def _specialist_with(specialist, architecture, weights):
    """``specialist`` itself, or a copy of it holding ``weights``."""
    if weights is None:
        return specialist
    from basisnet_deploy.model.network import build_specialist

    copy = build_specialist(architecture)
    copy.set_weights(weights)
    return copy


@dataclass(frozen=True)
class ExportOptions:
    """What ``export`` makes; the CLI's flags map one to one (docs/cli.md)."""

    target: str = "tflite"
    quantize: Quantization | None = None  # None: int8 with calibration images, else float32
    calibration: str | None = None  # 'digits' or an image folder
    calibration_size: int = 200
    specialist: str = "all"  # one of SPECIALIST_FORMS
    input_type: str = "float32"
    verify_images: int = 100
    images: str | None = None  # held-out images for verification; default: the checkpoint's split
    coefficient_int8: str = "dynamic"  # TFLite int8 scheme of the coefficient-input specialist
    baseline: bool = False  # also export a plain MobileNet for bench's overhead ratio
    seed: int = 0
    int8_recipe: str = "full"  # one of INT8_RECIPES: what --quantize int8 makes of each artifact
    min_agreement: float = 99.0  # percent; an artifact below it fails the export (the gate)
    allow_low_agreement: bool = False  # write it anyway, recorded in the manifest
    tuning_steps: int | None = None  # int8 weight tuning (TUNED_INT8_WEIGHTS); None: WeightTuning.steps; 0: none

    def validated(self) -> "ExportOptions":
        """A copy with ``quantize`` resolved; a :class:`UserError` for a bad combination."""
        try:
            quantize = Quantization(self.quantize or ("int8" if self.calibration else "float32"))
        except ValueError:
            raise UserError(f"--quantize: unknown {self.quantize!r}; choose one of "
                            f"{EXPORT_QUANTIZATIONS}") from None
        if quantize.value not in EXPORT_QUANTIZATIONS:
            raise UserError(f"--quantize: {quantize.value} is chosen per artifact, not for a whole "
                            f"export; choose one of {EXPORT_QUANTIZATIONS}")
        if self.specialist not in SPECIALIST_FORMS:
            raise UserError(f"--specialist: unknown {self.specialist!r}; choose one of {list(SPECIALIST_FORMS)}")
        if self.coefficient_int8 not in ("dynamic", "fakequant"):
            raise UserError(f"--coefficient-int8: unknown {self.coefficient_int8!r}; choose dynamic or fakequant")
        if self.int8_recipe not in INT8_RECIPES:
            raise UserError(f"--int8-recipe: unknown {self.int8_recipe!r}; choose one of {list(INT8_RECIPES)}")
        if self.tuning_steps is not None:
            _check_tuning_steps(self.tuning_steps, quantize, self.int8_recipe)
        if not 0 <= self.min_agreement <= 100:
            raise UserError(f"--min-agreement {self.min_agreement}: a percentage from 0 to 100")
        if quantize is Quantization.INT8 and not self.calibration:
            raise UserError("--quantize int8 needs real calibration images: pass --calibration "
                            "digits or --calibration IMAGE_DIR")
        return dataclasses.replace(self, quantize=quantize)

    @property
    def tuned_roles(self) -> tuple[str, ...]:
        """Roles whose int8 weights this export tunes (TUNED_INT8_WEIGHTS)."""
        if self.quantize is not Quantization.INT8:
            return ()
        return TUNED_INT8_WEIGHTS.get(self.int8_recipe, ())

    @property
    def roles(self) -> list[Role]:
        forms = {"coefficient": [Role.SPECIALIST_COEFFICIENT], "presynth": [Role.SPECIALIST_PRESYNTH],
                 "all": [Role.SPECIALIST_COEFFICIENT, Role.SPECIALIST_PRESYNTH]}[self.specialist]
        return [Role.LIGHTWEIGHT, *forms] + ([Role.BASELINE_PLAIN] if self.baseline else [])


@dataclass
class _Inputs:
    """Everything read before conversion: the model, held-out and calibration images."""

    net: object
    cfg: object
    held: object  # data.heldout.HeldOut: listed, decoded when verification reaches each image
    calib: object | None  # calibration.images.CalibrationImages
    images: list  # the calibration images (without calibration: held-out images)
    light: np.ndarray  # their preprocessed LM inputs
    lm_coeff: np.ndarray  # the float LM's coefficients for them [N, L, K]


def export(checkpoint_dir, out_dir, options: ExportOptions = ExportOptions(), progress=None) -> Manifest:
    """Export a checkpoint into ``out_dir``; returns the manifest written there.

    ``progress(message)`` reports each step. Everything is written into a temporary sibling,
    verified there, and renamed into place.
    """
    say = progress or (lambda msg: None)
    opts = options.validated()
    exporter = get_exporter(opts.target, input_type=opts.input_type)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    started = time.perf_counter()
    inputs = _read_inputs(checkpoint_dir, opts, say)
    baked = inputs.lm_coeff.mean(axis=0)
    tuned = _tuned_weights(inputs, opts, say)
    graphs = _role_graphs(inputs, baked, exporter, opts, {r: t.weights for r, t in tuned.items()})
    feeds = _feeds(inputs) if inputs.calib else {}
    try:
        with staged_directory(out_dir, "export", legacy=legacy_export) as tmp:
            artifacts, job = {}, _Job(exporter, opts, tmp, say)
            for role in opts.roles:
                artifacts[role] = _convert(role, graphs[role], feeds.get(role.value), job)
                if role is Role.SPECIALIST_PRESYNTH:
                    artifacts[role].presynth = _write_presynth_sidecars(
                        tmp, exporter, (tmp / artifacts[role].file).read_bytes(), inputs.net, baked,
                        artifacts[role].quantization.value)
            manifest = _manifest(checkpoint_dir, inputs, opts, artifacts, exporter)
            manifest.info["weight_tuning"] = {r: t.report() for r, t in tuned.items()} or None
            manifest.info["layer_report"] = _write_layer_report(graphs, feeds, artifacts, job)
            _describe(tmp, manifest, say)
            held = inputs.held.sample(opts.verify_images)
            say(f"verifying against the float TF model on {len(held)} {held.source} images")
            manifest.info["verification"] = verify_directory(tmp, manifest, inputs.net, held,
                                                               rate_lines(say))
            if held.skipped.total:
                say(f"verification: {describe_skipped(held.skipped.counts, held.skipped.files)}")
            manifest.info["agreement_gate"] = _gate(manifest.info["verification"], opts)
            manifest.info["export_seconds"] = round(time.perf_counter() - started, 1)
            manifest.save(tmp)
    except ExportError as e:
        raise UserError(f"export failed: {e}") from None
    return manifest


def lowest_agreements(verification: dict) -> dict[str, float]:
    """Top-1 agreement with float per artifact check, in percent (isolated and end to end)."""
    out = {}
    for role, result in verification.items():
        if not isinstance(result, dict):
            continue
        if "top1_agreement" in result:
            out[role] = 100.0 * result["top1_agreement"]
        for check in ("isolated", "end_to_end"):
            if check in result:
                out[f"{role} ({check.replace('_', ' ')})"] = 100.0 * result[check]["top1_agreement"]
    return out


def _gate(verification: dict, opts: ExportOptions) -> dict:
    """Refuse (nothing lands) when an artifact agrees with float on fewer held-out images than
    ``min_agreement``; with ``allow_low_agreement`` record that it was forced through."""
    agreements = lowest_agreements(verification)
    low = {k: round(v, 2) for k, v in agreements.items() if v < opts.min_agreement}
    if low and not opts.allow_low_agreement:
        worst = min(low, key=low.get)
        raise LowAgreement(f"{worst} agrees with the float model on {low[worst]:.2f}% of "
                           f"{verification['images']} held-out images, below --min-agreement "
                           f"{opts.min_agreement:g}% ({len(low)} check(s) low); nothing was written. "
                           "Try --int8-recipe fidelity, more --calibration-size, or pass "
                           "--allow-low-agreement to write it anyway")
    return {"min_agreement": opts.min_agreement, "forced": bool(low), "below": low}


class LowAgreement(UserError):
    """An export refused by the agreement gate (the CLI exits 1: the input was fine)."""

    exit_code = 1


def _check_out_dir(out_dir: Path) -> None:
    check_output_dir(out_dir, "export", legacy=legacy_export)


def _read_inputs(checkpoint_dir, opts: ExportOptions, say) -> _Inputs:
    """The checkpoint, the held-out images, calibration images and the LM's coefficients.

    The template is baked with the mean coefficients the LM gives the calibration images (or
    the held-out images for float exports): typical weights for int8 ranges.
    """
    held = evaluation_set(checkpoint.load_config(checkpoint_dir), opts.images)  # listed, checked
    say(f"loading checkpoint {checkpoint_dir}")
    net, cfg = checkpoint.load(checkpoint_dir)
    a, pre = cfg.architecture, cfg.preprocessing
    calib = None
    if opts.calibration:
        say(f"reading calibration images from {opts.calibration}")
        calib = calibration_images(opts.calibration, opts.calibration_size, opts.seed,
                                   exclude=set(held.indices) if opts.calibration == "digits" else None,
                                   min_side=decode_side(pre, a.resolution, a.light_resolution))
        if calib.skipped:
            say(f"calibration: {describe_skipped(calib.skipped, calib.skipped_files)}")
        for warning in calib.warnings():
            say(f"warning: {warning}")
    source = calib.images if calib else held.first_images(64)
    light = np.stack([preprocess(im, a.light_resolution, pre) for im in source])
    lm_coeff = net.lightweight(light, training=False)["coefficients"].numpy()
    return _Inputs(net, cfg, held, calib, source, light, lm_coeff)


def _feeds(inputs: _Inputs) -> dict[str, list[dict]]:
    """Calibration feeds per role, keyed by input name (converters may reorder inputs)."""
    a, pre = inputs.cfg.architecture, inputs.cfg.preprocessing
    image = np.stack([preprocess(im, a.resolution, pre) for im in inputs.calib.images])
    n_blocks = len(a.nonshared_blocks)
    onehots = [np.broadcast_to(np.eye(a.bases, dtype=np.float32)[k], (n_blocks, a.bases))
               for k in range(a.bases)]
    specialist = [{"image": x[None]} for x in image]
    # Real LM coefficients, plus one-hot extremes so ranges cover every basis alone.
    coefficient = ([{"image": x[None], "coefficients": c[None]} for x, c in zip(image, inputs.lm_coeff)]
                   + [{"image": image[k % len(image)][None], "coefficients": oh[None]}
                      for k, oh in enumerate(onehots)])
    return {Role.LIGHTWEIGHT.value: [{"image": x[None]} for x in inputs.light],
            Role.SPECIALIST_PRESYNTH.value: specialist, Role.BASELINE_PLAIN.value: specialist,
            Role.SPECIALIST_COEFFICIENT.value: coefficient}


@dataclass(frozen=True)
class _Job:
    """One export in progress: its target's exporter, options and staging directory."""

    exporter: object
    opts: ExportOptions
    tmp: Path
    say: object


def _scheme(role: Role, opts: ExportOptions) -> str:
    """The quantization one artifact gets: the export's, resolved by role and int8 recipe."""
    q = opts.quantize.value
    if role is Role.SPECIALIST_COEFFICIENT and q == "int8":
        q = _coefficient_int8_scheme(opts.target, opts.coefficient_int8)
    if q == "int8":
        q = INT8_RECIPES[opts.int8_recipe].get((opts.target, role.value), q)
    return q


def _check_tuning_steps(steps: int, quantize: Quantization, recipe: str) -> None:
    """--tuning-steps only where an int8 recipe tunes weights: elsewhere it would be ignored."""
    if steps < 0:
        raise UserError(f"--tuning-steps {steps}: a number of steps, 0 or more")
    if quantize is not Quantization.INT8 or recipe not in TUNED_INT8_WEIGHTS:
        raise UserError(f"--tuning-steps: --int8-recipe {recipe} with --quantize {quantize.value} "
                        f"tunes no weights; it applies to --quantize int8 --int8-recipe "
                        f"{' or '.join(TUNED_INT8_WEIGHTS)}")


def _tuned_weights(inputs: _Inputs, opts: ExportOptions, say) -> dict:
    """{role: TunedWeights} for the exported roles whose int8 weights the recipe tunes
    (TUNED_INT8_WEIGHTS), each tuned on the calibration images against the float model."""
    steps = WeightTuning.steps if opts.tuning_steps is None else opts.tuning_steps
    exported = {role.value for role in opts.roles}
    roles = [r for r in opts.tuned_roles if r in exported] if steps else []
    return {role: _tune_role(role, inputs, WeightTuning(steps=steps, seed=opts.seed), say)
            for role in roles}


def _tune_role(role: str, inputs: _Inputs, tuning: WeightTuning, say):
    """One role's int8-tuned weights. The template's come from the specialist's static layers,
    fed the calibration images and the float LM's coefficients for them."""
    n = len(inputs.light)
    say(f"tuning the {role} int8 weights on random views of the calibration images, a quarter "
        f"of the {n} held back to choose the step ({tuning.steps} steps)")
    a, pre = inputs.cfg.architecture, inputs.cfg.preprocessing
    views = Augmentation(pre.input_range)
    if role == Role.LIGHTWEIGHT.value:
        return tune_int8_weights(inputs.net.lightweight, inputs.light, tuning, say, views)
    image = np.stack([preprocess(im, a.resolution, pre) for im in inputs.images])
    return tune_int8_weights(inputs.net.specialist, [image, inputs.lm_coeff], tuning, say, views)


def _role_graphs(inputs: _Inputs, baked, exporter, opts: ExportOptions, tuned: dict) -> dict:
    """Each artifact's graph, with hard-swish spelled out only where its own scheme needs it
    (static int8 for TFLite): the decomposed form costs a float model time (the float32 LM:
    1.47 against 1.22 ms at full size). ``tuned``: {role: int8-tuned weights}."""
    built, graphs = {}, {}
    for role in opts.roles:
        decompose = exporter.decompose_hard_swish(_scheme(role, opts))
        if decompose not in built:
            built[decompose] = _graphs(inputs.net, inputs.cfg, baked, decompose, tuned)
            built[decompose][Role.BASELINE_PLAIN.value] = built[decompose][Role.SPECIALIST_PRESYNTH.value]
        graphs[role] = built[decompose][role.value]
    return graphs


def _convert(role: Role, graph, feeds, job: _Job) -> Artifact:
    """Convert one graph into the staging directory; returns its manifest entry."""
    exporter, opts, tmp, say = job.exporter, job.opts, job.tmp, job.say
    q = _scheme(role, opts)
    if role is Role.SPECIALIST_COEFFICIENT and q == "int8" and opts.target == "tflite":
        _bound_synthesized_kernels(graph.model)
    say(f"converting {role.value} to {opts.target} ({q})")
    reader = _reader(feeds) if q == "int8" else None
    data = exporter.convert(graph, q, reader)
    name = role.value + exporter.suffix
    (tmp / name).write_bytes(data)
    return Artifact(role, name, sha256_hex(data), len(data), Quantization(q))


def _manifest(checkpoint_dir, inputs: _Inputs, opts: ExportOptions, artifacts, exporter) -> Manifest:
    cfg = inputs.cfg
    a = cfg.architecture
    info = {
        "generator": f"basisnet-deploy {__version__}",
        "hard_swish": {role.value: ("decomposed: ADD+MUL+MUL, which XNNPACK runs in int8"
                                    if exporter.decompose_hard_swish(entry.quantization.value)
                                    else "HARD_SWISH op") for role, entry in artifacts.items()},
        "calibration": inputs.calib.report() if inputs.calib else None,
    }
    coefficients = {
        "shape": [len(a.nonshared_blocks), a.bases],
        "blocks": [f"L{i}" for i in a.nonshared_blocks],
        "layout": "row l mixes the expand, depthwise and project kernels of block "
                  "blocks[l]; each row is a softmax over the K bases",
        "batch_policy": "a batch shares one synthesized specialist, made from the mean "
                        "of its frames' coefficients",
    }
    checkpoint_ref = {"path": str(checkpoint_dir),
                      "config_sha256": sha256_hex((Path(checkpoint_dir) / "config.json").read_bytes())}
    return Manifest(target=opts.target, quantization=opts.quantize, labels=tuple(cfg.labels),
                    preprocessing=cfg.preprocessing, light_resolution=a.light_resolution,
                    resolution=a.resolution, artifacts=artifacts, cost=basisnet_cost(a),
                    checkpoint=checkpoint_ref, architecture=cfg.to_json()["architecture"],
                    coefficients=coefficients, info=info)


def _describe(tmp: Path, manifest: Manifest, say) -> None:
    """Each artifact's runtime inputs/outputs and, for TFLite, its GPU verdict: from LiteRT's
    GPU accelerator where a device is present (compiled, run, compared with the CPU), else a
    static guess, labelled so (export/check.py)."""
    for entry in manifest.artifacts.values():
        entry.details.update(describe(tmp / entry.file))
    for role, verdict in gpu_verdicts(tmp, manifest, say).items():
        manifest.artifacts[role].details["gpu"] = verdict.to_json()


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
    from basisnet_deploy.model.layers import BasisConv1x1, BasisDepthwiseConv2D

    for layer in model.layers:
        if isinstance(layer, (BasisConv1x1, BasisDepthwiseConv2D)):
            layer.kernel_range = float(np.max(np.abs(layer.kernel.numpy())))


# Static int8 TFLite artifacts get a per-layer error report on this many calibration feeds:
# the LM and the template, whose graphs convert to float32 as they are.
LAYER_REPORT_ROLES = (Role.LIGHTWEIGHT, Role.SPECIALIST_PRESYNTH)
LAYER_REPORT_FEEDS = 8
LAYER_REPORT_ROWS = 20


def _write_layer_report(graphs: dict, feeds: dict, artifacts: dict, job: _Job) -> dict | None:
    """Per-layer error against float, on the calibration images, of the static int8 TFLite
    LM and template (export/layer_report.py): the tensors whose op adds the most error,
    first, in LAYER_REPORT_FILE; the manifest records the file and each artifact's worst
    tensor. The calibration images set the int8 ranges, so this understates clipping on
    new images; verification measures that on held-out images."""
    from basisnet_deploy.export.layer_report import layer_errors

    if job.opts.target != "tflite":
        return None  # ONNX: not built
    roles = [r for r in LAYER_REPORT_ROLES if r in artifacts
             and artifacts[r].quantization is Quantization.INT8 and feeds.get(r.value)]
    if not roles:
        return None
    report = {}
    for role in roles:
        job.say(f"per-layer error of {role.value} against float ({LAYER_REPORT_FEEDS} calibration images)")
        try:
            float_model = job.exporter.convert(graphs[role], "float32")
            int8_model = (job.tmp / artifacts[role].file).read_bytes()
            rows = layer_errors(float_model, int8_model, feeds[role.value][:LAYER_REPORT_FEEDS])
        except Exception as e:  # a diagnostic: its failure must not fail the export
            job.say(f"warning: no per-layer report for {role.value}: {e}")
            report[role.value] = {"error": str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}
            continue
        # the ops that add the most error first: the error of a tensor accumulates
        # everything before it, so ranking by rel_rms would name the last layers
        report[role.value] = sorted(rows, key=lambda r: -r["added"])[:LAYER_REPORT_ROWS]
    write_json_atomically(job.tmp / LAYER_REPORT_FILE, {
        "feeds": LAYER_REPORT_FEEDS, "columns": {
            "rel_rms": "RMS of (int8 - float) over RMS of float, pooled over the feeds",
            "rel_max": "max |int8 - float| over the float tensor's max |value|",
            "added": "rel_rms minus the largest rel_rms among the producing op's inputs"},
        "artifacts": report})
    return {"file": LAYER_REPORT_FILE, "feeds": LAYER_REPORT_FEEDS,
            "worst": {role: rows[0] for role, rows in report.items() if isinstance(rows, list) and rows}}


def _reader(feeds):
    if feeds is None:
        return None
    from basisnet_deploy.calibration.reader import FeedReader

    return FeedReader(feeds)


def _write_presynth_sidecars(tmp: Path, exporter, template: bytes, net, baked, quantize):
    """Bases (BN folded, template layout) and the patch table for the template."""
    from basisnet_deploy.artifacts.synthesis import dump_table, overlapping

    patches, arrays = exporter.patch_table(template, fold_bases(net.specialist), baked, quantize)
    shared = overlapping(patches)
    if shared:
        raise ExportError(f"template: {shared}; synthesize() would overwrite one layer with "
                          "another's values")
    buf = tmp / BASES_FILE
    with open(buf, "wb") as f:
        np.savez(f, **arrays)
    (tmp / PATCH_TABLE_FILE).write_text(dump_table(patches))
    compact = compact_bases.write(tmp, arrays, patches)  # int8 bases for fast synthesis
    return PresynthFiles(bases=buf.name, patch_table=PATCH_TABLE_FILE,
                         bases_sha256=sha256_hex(buf.read_bytes()), bases_int8=compact.name,
                         bases_int8_sha256=sha256_hex(compact.read_bytes()),
                         patch_table_sha256=sha256_hex((tmp / PATCH_TABLE_FILE).read_bytes()),
                         baked_coefficients=np.round(baked, 6).tolist(), patched_layers=len(patches))
