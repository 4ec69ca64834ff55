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
from typing import TYPE_CHECKING, Callable

import numpy as np

from basisnet_deploy import __version__
from basisnet_deploy.artifacts import compact_bases
from basisnet_deploy.artifacts.manifest import (BASES_FILE, LAYER_REPORT_FILE, PATCH_TABLE_FILE, Artifact,
                                                ExportRecord, Manifest, PresynthFiles, legacy_export,
                                                model_bytes)
from basisnet_deploy.calibration.images import CalibrationImages, calibration_images
from basisnet_deploy.common.errors import InternalError, UserError, first_line
from basisnet_deploy.common.files import (check_output_dir, sha256_hex, staged_directory,
                                          write_json_atomically)
from basisnet_deploy.converters.base import ExportError, Exporter, Graph, fold_bases
from basisnet_deploy.data.preprocessing import decode_side, preprocess
from basisnet_deploy.data.datasets import describe_skipped, evaluation_set
from basisnet_deploy.data.heldout import HeldOut
from basisnet_deploy.export.check import gpu_verdicts
from basisnet_deploy.export.verify import rate_lines, verify_directory
from basisnet_deploy.model import checkpoint
from basisnet_deploy.model.config import BasisNetConfig
from basisnet_deploy.model.cost import basisnet_cost
from basisnet_deploy.quantization.settings import Augmentation, TunedWeights, WeightTuning
from basisnet_deploy.runtime.sessions import describe
from basisnet_deploy.targets import registry
from basisnet_deploy.targets.kinds import CoefficientInt8, Quantization, Role
from basisnet_deploy.export.gate import LowAgreement, judge, resolving_images
from basisnet_deploy.targets.recipes import (AUTO, DEFAULT_RECIPE, RECIPES, ArtifactPlan, Recipe,
                                             candidate_recipes, plan)
from basisnet_deploy.targets.registry import Target

if TYPE_CHECKING:
    from basisnet_deploy.model.network import BasisNet

# TF's converter calibrates with its own deprecated tf.lite.Interpreter; not ours to fix.
warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated.*")

SPECIALIST_FORMS = {"coefficient": (Role.SPECIALIST_COEFFICIENT,), "presynth": (Role.SPECIALIST_PRESYNTH,),
                    "all": (Role.SPECIALIST_COEFFICIENT, Role.SPECIALIST_PRESYNTH)}


def _graphs(net, cfg, baked, decompose_hard_swish: bool = False, tuned: dict | None = None):
    """The three graphs to convert; ``baked`` [L, K] are the template's coefficients;
    ``tuned`` {role: weights} replace the lightweight model's or the template's weights (their
    int8-tuned weights, if any; the template's come from a specialist's weights).

    The models are rebuilt from the checkpoint's weights, so an export can choose the form of
    hard-swish (:func:`basisnet_deploy.model.layers.hard_swish_decomposed`) without touching them.
    """
    import tensorflow as tf

    from basisnet_deploy.converters.base import Graph
    from basisnet_deploy.model.layers import hard_swish_decomposed
    from basisnet_deploy.model.network import (build_lightweight, build_plain_specialist,
                                       build_specialist, copy_basis_into_plain)

    a = cfg.architecture
    n_blocks = len(a.nonshared_blocks)
    hs = hard_swish_decomposed if decompose_hard_swish else None
    lm = build_lightweight(a, hard_swish=hs)
    coeff_model = build_specialist(a, synthesis="batch", hard_swish=hs)
    template = build_plain_specialist(a, hard_swish=hs)
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
    """What ``export`` makes; the CLI's flags map one to one (docs/cli.md). Names are the
    registries' (targets/registry.py, targets/recipes.py); :meth:`validated` resolves them."""

    target: str = registry.DEFAULT
    quantize: Quantization | str | None = None  # None: int8 with calibration images, else float32
    calibration: str | None = None  # 'digits' or an image folder
    calibration_size: int = 200
    specialist: str = "all"  # one of SPECIALIST_FORMS
    input_type: str = "float32"
    verify_images: int | None = None  # None: DEFAULT_VERIFY_IMAGES, or what auto needs (gate.py)
    images: str | None = None  # held-out images for verification; default: the checkpoint's split
    coefficient_int8: CoefficientInt8 | str = CoefficientInt8.DYNAMIC  # the target's choices
    baseline: bool = False  # also export a plain MobileNet for bench's overhead ratio
    seed: int = 0
    int8_recipe: str = DEFAULT_RECIPE  # what --quantize int8 makes of each artifact
    min_agreement: float = 99.0  # percent; an artifact below it fails the export (the gate)
    allow_low_agreement: bool = False  # write it anyway, recorded in the manifest
    tuning_steps: int | None = None  # the recipe's int8 weight tuning; None: WeightTuning.steps; 0: none

    def validated(self) -> "ExportPlan":
        """The export resolved against the registries, every artifact's scheme checked against
        the target: a :class:`UserError` for a bad combination, before any work starts. For
        ``--int8-recipe auto``: the first recipe it tries (:meth:`plans` has them all)."""
        return self.plans()[0]

    def plans(self) -> list["ExportPlan"]:
        """One plan per recipe the export tries, in order: ``auto`` tries :data:`AUTO_ORDER`."""
        recipes = candidate_recipes(self.int8_recipe)
        if self.tuning_steps is not None:
            _check_tuning_steps(self.tuning_steps, self._quantize(), self.int8_recipe, recipes)
        first = self._plan(recipes[0])
        if first.quantization is not Quantization.INT8:
            return [first]  # the recipe does not apply
        return [first] + [self._plan(recipe) for recipe in recipes[1:] if self._allows(recipe)]

    def _allows(self, recipe: Recipe) -> bool:
        """Whether ``auto`` may try ``recipe`` given the other options: ``--coefficient-int8
        fakequant`` asks for a static int8 coefficient-input specialist, which only ``full`` makes."""
        return (CoefficientInt8(self.coefficient_int8) is CoefficientInt8.DYNAMIC
                or recipe.scheme(Role.SPECIALIST_COEFFICIENT) is Quantization.INT8)

    def _quantize(self) -> Quantization:
        return _quantization(self.quantize or ("int8" if self.calibration else "float32"))

    def _plan(self, recipe: Recipe) -> "ExportPlan":
        target = registry.get(self.target)
        quantize = self._quantize()
        if self.specialist not in SPECIALIST_FORMS:
            raise UserError(f"--specialist: unknown {self.specialist!r}; choose one of {list(SPECIALIST_FORMS)}")
        try:
            coefficient_int8 = CoefficientInt8(self.coefficient_int8)
        except ValueError:
            raise UserError(f"--coefficient-int8: unknown {self.coefficient_int8!r}; choose one of "
                            f"{[c.value for c in CoefficientInt8]}") from None
        if self.verify_images is not None and self.verify_images < 1:
            raise UserError(f"--verify-images {self.verify_images}: at least 1")
        if not 0 <= self.min_agreement <= 100:
            raise UserError(f"--min-agreement {self.min_agreement}: a percentage from 0 to 100")
        if quantize is Quantization.INT8 and not self.calibration:
            raise UserError("--quantize int8 needs real calibration images: pass --calibration "
                            "digits or --calibration IMAGE_DIR")
        roles = [Role.LIGHTWEIGHT, *SPECIALIST_FORMS[self.specialist]] + (
            [Role.BASELINE_PLAIN] if self.baseline else [])
        artifacts = plan(target, quantize, recipe, roles, self.input_type, coefficient_int8)
        options = dataclasses.replace(self, quantize=quantize, coefficient_int8=coefficient_int8)
        return ExportPlan(options, target, quantize, recipe if quantize is Quantization.INT8 else None,
                          artifacts)


def _quantization(value) -> Quantization:
    try:
        return Quantization(value)
    except ValueError:
        raise UserError(f"--quantize: unknown {value!r}; choose one of "
                        f"{[q.value for q in Quantization]}") from None


@dataclass(frozen=True)
class ExportPlan:
    """An export resolved before any work: its target, recipe and every artifact's scheme."""

    options: ExportOptions
    target: Target
    quantization: Quantization
    recipe: Recipe | None  # the int8 recipe (None for a float export)
    artifacts: dict[Role, ArtifactPlan]  # in the order they are converted

    @property
    def tuned_roles(self) -> list[Role]:
        """Roles whose int8 weights this export tunes (the recipe's ``tuned``)."""
        return [role for role, a in self.artifacts.items() if a.tuned]


@dataclass
class _Inputs:
    """Everything read before conversion: the model, held-out and calibration images."""

    net: "BasisNet"
    cfg: BasisNetConfig
    held: HeldOut  # listed, decoded when verification reaches each image
    calib: CalibrationImages | None
    images: list  # the calibration images (without calibration: held-out images)
    light: np.ndarray  # their preprocessed LM inputs
    lm_coeff: np.ndarray  # the float LM's coefficients for them [N, L, K]


DEFAULT_VERIFY_IMAGES = 100


def export(checkpoint_dir, out_dir, options: ExportOptions = ExportOptions(), progress=None) -> Manifest:
    """Export a checkpoint into ``out_dir``; returns the manifest written there.

    ``progress(message)`` reports each step. Everything is written into a temporary sibling,
    verified there, and renamed into place. With ``--int8-recipe auto`` each recipe is tried in
    turn (a refused one leaves nothing) until one passes the agreement gate. A recipe that
    tunes int8 weights keeps each tuning's state in :func:`tuning_state_dir` until the export
    lands or is refused: stopped (SIGINT, SIGTERM), the same command goes on from there.
    """
    say = progress or (lambda msg: None)
    plans = options.plans()
    opts = plans[0].options
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    started = time.perf_counter()
    inputs = _read_inputs(checkpoint_dir, opts, say)
    # Read, sampled and preprocessed once for every recipe tried.
    shared = _Shared(inputs, _verification_sample(inputs.held, opts, len(plans) > 1, say),
                     baked=inputs.lm_coeff.mean(axis=0), feeds=_feeds(inputs) if inputs.calib else {})
    try:
        manifest = _first_that_passes(checkpoint_dir, out_dir, plans, shared, say, started)
    except LowAgreement:
        _remove_tuning_state(out_dir)  # refused: nothing of it is left
        raise
    # stopped, or failed on the way (a full disk): the tunings' state stays for the next run
    _remove_tuning_state(out_dir)
    return manifest


def _first_that_passes(checkpoint_dir, out_dir: Path, plans: list, shared: "_Shared", say,
                       started: float) -> Manifest:
    """Each plan in turn until one passes the agreement gate (``auto``), else the refusal."""
    opts, tried = plans[0].options, []
    for export_plan, following in zip(plans, [*plans[1:], None]):
        try:
            return _export_plan(checkpoint_dir, out_dir, export_plan, shared, say,
                                allow_low=opts.allow_low_agreement and following is None,
                                started=started, tried=tried if len(plans) > 1 else None)
        except LowAgreement as refused:
            tried.append({"recipe": export_plan.recipe.name, "refused": str(refused)})
            if following is None:
                raise LowAgreement(_refusal(tried, opts)) from None
            say(f"--int8-recipe {AUTO}: {export_plan.recipe.name} refused: {refused}; trying "
                f"{following.recipe.name}")


@dataclass(frozen=True)
class _Shared:
    """What every recipe an export tries uses alike."""

    inputs: _Inputs
    held: HeldOut  # the verification sample
    baked: np.ndarray  # the template's coefficients [L, K]: the mean of the LM's on the calibration images
    feeds: dict  # calibration feeds per role (int8 exports)


def _refusal(tried: list[dict], opts: ExportOptions) -> str:
    """The one-line refusal once every recipe tried is below the gate."""
    if len(tried) == 1:
        return (f"{tried[0]['refused']}; nothing was written. Try --int8-recipe fidelity, more "
                "--calibration-size, or pass --allow-low-agreement to write it anyway")
    each = "; ".join(f"{t['recipe']}: {t['refused']}" for t in tried)
    return (f"--int8-recipe {AUTO}: no recipe passed --min-agreement {opts.min_agreement:g}% ({each}); "
            "nothing was written. Try more --calibration-size, or pass --allow-low-agreement to "
            "write the last one anyway")


def _verification_sample(held: HeldOut, opts: ExportOptions, auto: bool, say) -> HeldOut:
    """The held-out images the export verifies on: ``--verify-images``, else 100, else (auto)
    as many as separate the gate's threshold from half a point above it."""
    count = opts.verify_images or DEFAULT_VERIFY_IMAGES
    if auto and opts.verify_images is None:
        count = max(count, resolving_images(opts.min_agreement))
        if len(held) < count:
            say(f"warning: --int8-recipe {AUTO} verifies on all {len(held)} held-out images; about "
                f"{count:,} would separate --min-agreement {opts.min_agreement:g}% from half a "
                "point above it")
    return held.sample(count)


def _export_plan(checkpoint_dir, out_dir: Path, export_plan: ExportPlan, shared: _Shared, say,
                 allow_low: bool, started: float, tried: list | None) -> Manifest:
    """Convert, verify and gate one plan in a staging directory; it lands only if it passes
    (or ``allow_low``)."""
    inputs, held, baked, feeds = shared.inputs, shared.held, shared.baked, shared.feeds
    exporter = export_plan.target.exporter(input_type=export_plan.options.input_type)
    tuned = _tuned_weights(inputs, export_plan, say, out_dir)
    graphs = _role_graphs(inputs, baked, export_plan, {r: t.weights for r, t in tuned.items()})
    try:
        with staged_directory(out_dir, "export", legacy=legacy_export) as tmp:
            artifacts, job = {}, _Job(exporter, export_plan, tmp, say)
            for role, artifact_plan in export_plan.artifacts.items():
                artifacts[role] = _convert(artifact_plan, graphs[role], feeds, job, inputs, baked)
                if role is Role.SPECIALIST_PRESYNTH:
                    artifacts[role].presynth = _write_presynth_sidecars(
                        tmp, exporter, (tmp / artifacts[role].file).read_bytes(), inputs.net, baked,
                        artifact_plan.scheme)
            manifest = _manifest(checkpoint_dir, inputs, export_plan, artifacts)
            record = manifest.record
            record.weight_tuning = {r.value: t.report() for r, t in tuned.items()} or None
            record.layer_report = _write_layer_report(graphs, feeds, artifacts, job)
            _describe(tmp, manifest, say)
            say(f"verifying against the float TF model on {len(held)} {held.source} images")
            record.verification = verify_directory(tmp, manifest, inputs.net, held,
                                                   rate_lines(say)).to_json()
            if held.skipped.total:
                say(f"verification: {describe_skipped(held.skipped.counts, held.skipped.files)}")
            record.agreement_gate = _gate(record.verification, export_plan.options.min_agreement,
                                          allow_low, say)
            if tried is not None:
                record.recipe_choice = {"mode": AUTO, "tried": list(tried),
                                        "chosen": export_plan.recipe.name,
                                        "why": "the first, fastest first, that passed the agreement gate"
                                               if not record.agreement_gate["forced"] else
                                               "none passed; the last, forced by --allow-low-agreement"}
                say(f"--int8-recipe {AUTO}: kept {export_plan.recipe.name}")
            record.export_seconds = round(time.perf_counter() - started, 1)
            manifest.save(tmp)
    except ExportError as e:
        raise InternalError(f"export failed: {e}") from e
    return manifest


def _gate(verification: dict, min_agreement: float, allow_low: bool, say) -> dict:
    """Refuse (nothing lands) when an artifact agrees with float on fewer held-out images than
    ``min_agreement``; with ``allow_low`` record that it was forced through. Each check's 95%
    interval is recorded, with a warning when the sample cannot resolve the threshold."""
    result = judge(verification, min_agreement)
    warning = result.warning()
    if result.below and not allow_low:
        raise LowAgreement(result.refusal())
    if warning:
        say(f"warning: {warning}")
    return result.to_json(forced=bool(result.below))


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
    """One export in progress: its target's exporter, plan and staging directory."""

    exporter: Exporter
    plan: ExportPlan
    tmp: Path
    say: Callable[[str], None]


def _check_tuning_steps(steps: int, quantize: Quantization, name: str, recipes: tuple[Recipe, ...]) -> None:
    """--tuning-steps only where an int8 recipe tunes weights: elsewhere it would be ignored.
    ``name`` is the --int8-recipe given; ``recipes`` the ones it tries (``auto``: several)."""
    if steps < 0:
        raise UserError(f"--tuning-steps {steps}: a number of steps, 0 or more")
    if quantize is not Quantization.INT8 or not any(r.tuned for r in recipes):
        tuning = [r.name for r in RECIPES.values() if r.tuned]
        tries = (f" (it tries {', then '.join(r.name for r in recipes)})"
                 if name == AUTO and quantize is Quantization.INT8 else "")
        raise UserError(f"--tuning-steps: --int8-recipe {name}{tries} with --quantize {quantize.value} "
                        f"tunes no weights; only --quantize int8 with {' or '.join('--int8-recipe ' + t for t in tuning)} "
                        f"tunes weights: pass {'that recipe' if len(tuning) == 1 else 'one of them'}, "
                        "or leave out --tuning-steps")


def _tuned_weights(inputs: _Inputs, export_plan: ExportPlan, say, out_dir: Path) -> dict[Role, TunedWeights]:
    """{role: TunedWeights} for the exported roles whose int8 weights the recipe tunes, each
    tuned on the calibration images against the float model. Each tuning's state is saved in
    :func:`tuning_state_dir`, so an export stopped while tuning goes on from there when run
    again."""
    opts = export_plan.options
    steps = WeightTuning.steps if opts.tuning_steps is None else opts.tuning_steps
    roles = export_plan.tuned_roles if steps else []
    return {role: _tune_role(role, inputs, WeightTuning(steps=steps, seed=opts.seed), say,
                             tuning_state_dir(out_dir) / role.value)
            for role in roles}


def tuning_state_dir(out_dir) -> Path:
    """Where an export into ``out_dir`` keeps its weight tunings' resume state until it lands:
    ``.<out>.tuning/`` beside it (one folder per tuned role)."""
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}.tuning")


def _remove_tuning_state(out_dir: Path) -> None:
    """The export landed or was refused: its tunings' saved state goes."""
    state = tuning_state_dir(out_dir)
    if state.is_dir():
        from basisnet_deploy.quantization.weight_tuning import remove_tuning_state  # TensorFlow

        remove_tuning_state(state)


def _tune_role(role: Role, inputs: _Inputs, tuning: WeightTuning, say, state: Path) -> TunedWeights:
    """One role's int8-tuned weights. The template's come from the specialist's static layers,
    fed the calibration images and the float LM's coefficients for them."""
    from basisnet_deploy.quantization.weight_tuning import tune_int8_weights  # TensorFlow

    n = len(inputs.light)
    say(f"tuning the {role.value} int8 weights on random views of the calibration images, a "
        f"quarter of the {n} held back to choose the step ({tuning.steps} steps)")
    a, pre = inputs.cfg.architecture, inputs.cfg.preprocessing
    views = Augmentation(pre.input_range)
    if role is Role.LIGHTWEIGHT:
        return tune_int8_weights(inputs.net.lightweight, inputs.light, tuning, say, views, resume=state)
    image = np.stack([preprocess(im, a.resolution, pre) for im in inputs.images])
    return tune_int8_weights(inputs.net.specialist, [image, inputs.lm_coeff], tuning, say, views, resume=state)


def _role_graphs(inputs: _Inputs, baked, export_plan: ExportPlan, tuned: dict) -> dict[Role, Graph]:
    """Each artifact's graph, with hard-swish spelled out only where its own scheme needs it
    (the target's ``decomposed_hard_swish``): the decomposed form costs a float model time
    (the float32 LM: 1.47 against 1.22 ms at full size). ``tuned``: {role: int8-tuned weights}."""
    built, graphs = {}, {}
    for role, artifact_plan in export_plan.artifacts.items():
        decompose = artifact_plan.decomposed_hard_swish
        if decompose not in built:
            built[decompose] = _graphs(inputs.net, inputs.cfg, baked, decompose,
                                       {r.value: w for r, w in tuned.items()})
            built[decompose][Role.BASELINE_PLAIN.value] = built[decompose][Role.SPECIALIST_PRESYNTH.value]
        graphs[role] = built[decompose][role.value]
    return graphs


def _calibration(artifact_plan: ArtifactPlan, feeds: dict, job: _Job, net, baked):
    """The calibration a static scheme converts with (None for the others): the role's feeds,
    the recipe's range margin, and for a template whose recipe takes ranges from each image's
    own kernels, the coefficient-input feeds' images with a synthesizer of their kernels."""
    from basisnet_deploy.calibration.reader import FeedReader

    role, scheme = artifact_plan.role, artifact_plan.scheme
    if not scheme.static or feeds.get(role.value) is None:
        return None
    ranges = job.plan.recipe.ranges
    if role is not Role.SPECIALIST_PRESYNTH or not ranges.own_kernels:
        return FeedReader(feeds[role.value], ranges.margin_for(role))
    from basisnet_deploy.artifacts.synthesis import synthesize

    own = feeds[Role.SPECIALIST_COEFFICIENT.value]  # real coefficients, then each basis alone
    folded, exporter = fold_bases(net.specialist), job.exporter

    def own_kernels(float_template: bytes):
        patches, arrays = exporter.patch_table(float_template, folded, baked, Quantization.FLOAT32)
        return (synthesize(float_template, patches, arrays, feed["coefficients"][0]) for feed in own)

    return FeedReader([{"image": feed["image"]} for feed in own], ranges.margin_for(role), own_kernels)


def _convert(artifact_plan: ArtifactPlan, graph: Graph, feeds: dict, job: _Job, inputs: _Inputs,
             baked) -> Artifact:
    """Convert one graph into the staging directory, calibrated on ``feeds`` (by role) where
    its scheme is static; returns its manifest entry."""
    exporter, tmp, say = job.exporter, job.tmp, job.say
    role, scheme = artifact_plan.role, artifact_plan.scheme
    calibration = _calibration(artifact_plan, feeds, job, inputs.net, baked)
    if artifact_plan.bounded_kernels:
        _bound_synthesized_kernels(graph.model)
    own = (f"; its activation ranges from each of {len(calibration.feeds)} calibration feeds "
           "run with its own kernels" if getattr(calibration, "models", None) is not None else "")
    say(f"converting {role.value} to {job.plan.target.name} ({scheme.value}){own}")
    data = exporter.convert(graph, scheme, calibration)
    name = role.value + job.plan.target.suffix
    (tmp / name).write_bytes(data)
    return Artifact(role, name, sha256_hex(data), len(data), scheme)


def _manifest(checkpoint_dir, inputs: _Inputs, export_plan: ExportPlan, artifacts) -> Manifest:
    cfg = inputs.cfg
    a = cfg.architecture
    record = ExportRecord(
        generator=f"basisnet-deploy {__version__}",
        hard_swish={role.value: ("decomposed: ADD+MUL+MUL, which XNNPACK runs in int8"
                                 if export_plan.artifacts[role].decomposed_hard_swish
                                 else "HARD_SWISH op") for role in artifacts},
        calibration=inputs.calib.report() if inputs.calib else None)
    coefficients = {
        "shape": [len(a.nonshared_blocks), a.bases],
        "blocks": [f"L{i}" for i in a.nonshared_blocks],
        "layout": "row l mixes the expand, depthwise and project kernels of block "
                  "blocks[l]; each row is a softmax over the K bases",
        "batch_policy": "a batch shares one synthesized specialist, made from the mean "
                        "of its frames' coefficients",
    }
    checkpoint_ref = {"path": str(Path(checkpoint_dir).resolve()),  # verify runs from any folder
                      "config_sha256": sha256_hex((Path(checkpoint_dir) / "config.json").read_bytes())}
    return Manifest(target=export_plan.target.name, quantization=export_plan.quantization,
                    recipe=export_plan.recipe, labels=tuple(cfg.labels),
                    preprocessing=cfg.preprocessing, light_resolution=a.light_resolution,
                    resolution=a.resolution, artifacts=artifacts, cost=basisnet_cost(a),
                    checkpoint=checkpoint_ref, architecture=cfg.to_json()["architecture"],
                    coefficients=coefficients, record=record)


def _describe(tmp: Path, manifest: Manifest, say) -> None:
    """Each artifact's runtime inputs/outputs and, for TFLite, its GPU verdict: from LiteRT's
    GPU accelerator where a device is present (compiled, run, compared with the CPU), else a
    static guess, labelled so (export/check.py)."""
    models = {role: model_bytes(tmp, entry) for role, entry in manifest.artifacts.items()}
    for role, entry in manifest.artifacts.items():
        entry.details.update(describe(tmp / entry.file, models[role]))
    for role, verdict in gpu_verdicts(tmp, manifest, say, models).items():
        manifest.artifacts[role].details["gpu"] = verdict.to_json()


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
    """Per-layer error against float, on the calibration images, of the TFLite LM and
    template where their activations are static (int8 or int16x8; export/layer_report.py):
    the tensors whose op adds the most error, first, in LAYER_REPORT_FILE; the manifest
    records the file and each artifact's worst tensor. The calibration images set the
    ranges, so this understates clipping on new images; verification measures that on
    held-out images."""
    from basisnet_deploy.export.layer_report import layer_errors

    if not job.plan.target.layer_report:
        return None  # the target's descriptor: no per-layer report for its artifacts
    roles = [r for r in LAYER_REPORT_ROLES if r in artifacts
             and artifacts[r].quantization.static and feeds.get(r.value)]
    if not roles:
        return None
    report = {}
    for role in roles:
        job.say(f"per-layer error of {role.value} against float ({LAYER_REPORT_FEEDS} calibration images)")
        try:
            float_model = job.exporter.convert(graphs[role], Quantization.FLOAT32)
            quantized = (job.tmp / artifacts[role].file).read_bytes()
            rows = layer_errors(float_model, quantized, feeds[role.value][:LAYER_REPORT_FEEDS])
        except Exception as e:  # a diagnostic: its failure must not fail the export
            job.say(f"warning: no per-layer report for {role.value}: {e}")
            report[role.value] = {"error": first_line(e)}
            continue
        # the ops that add the most error first: the error of a tensor accumulates
        # everything before it, so ranking by rel_rms would name the last layers
        report[role.value] = sorted(rows, key=lambda r: -r["added"])[:LAYER_REPORT_ROWS]
    write_json_atomically(job.tmp / LAYER_REPORT_FILE, {
        "feeds": LAYER_REPORT_FEEDS, "columns": {
            "rel_rms": "RMS of (quantized - float) over RMS of float, pooled over the feeds",
            "rel_max": "max |quantized - float| over the float tensor's max |value|",
            "added": "rel_rms minus the largest rel_rms among the producing op's inputs"},
        "artifacts": report})
    return {"file": LAYER_REPORT_FILE, "feeds": LAYER_REPORT_FEEDS,
            "worst": {role: rows[0] for role, rows in report.items() if isinstance(rows, list) and rows}}


def _write_presynth_sidecars(tmp: Path, exporter: Exporter, template: bytes, net, baked,
                             scheme: Quantization) -> PresynthFiles:
    """Bases (BN folded, template layout) and the patch table for the template."""
    from basisnet_deploy.artifacts.synthesis import dump_table, overlapping

    patches, arrays = exporter.patch_table(template, fold_bases(net.specialist), baked, scheme)
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
