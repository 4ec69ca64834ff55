"""Int8 recipes as data: what ``--quantize int8`` makes of each artifact.

A :class:`Recipe` names each role's scheme (roles it leaves out get static int8) and the roles
whose int8 weights are tuned on the calibration images before conversion
(basisnet_deploy/quantization/). :func:`artifact_scheme` resolves one artifact's scheme for a
target; :func:`plan` resolves every artifact of an export and checks each against the target
before any conversion starts. docs/export.md "Int8 recipes" has the measured trade-offs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from basisnet_deploy.common.errors import UserError
from basisnet_deploy.targets.kinds import CoefficientInt8, Quantization, Role
from basisnet_deploy.targets.registry import Target


@dataclass(frozen=True)
class ActivationRanges:
    """How a static scheme's activation ranges come from the calibration images: each tensor's
    calibrated [min, max], scaled by a margin around zero and kept within the bounds of the op
    that makes it (a ReLU's 0, a ReLU6's 6).

    A margin keeps held-out images whose activations go past the calibration images' extremes
    from clipping, and costs resolution: with int16 activations 1.5 leaves 15.4 bits, 3 leaves
    14.4. Static int8 keeps its calibrated ranges (1.0): a wider range there costs a bit of an
    8-bit resolution. Measured on the tuned int16x8 models (benchmarks/results/
    full_integer_a16w8/, margin/README.md there):
    - the lightweight model: coefficient error 0.161 with the calibrated ranges, 0.025 with
      1.5x on one export seed; on another, 1.5x still let two of 480 held-out photos clip in
      13 tensors (error 0.048), while at 3x none clipped, the widest activation reached 1.87x
      the calibration extremes, and the error was the float-activation model's (0.019);
    - the template, whose ranges already span every basis alone (``own_kernels``): at 3x rather
      than 1.5x, a near-chance checkpoint's answers (top-2 logit gaps of 0.0086 or less on 5%
      of its photos) moved on 3 to 5 more of 240 held-out photos, while two photo checkpoints
      gained 2 and lost 1 of 480."""

    margin: float = 1.0
    # A pre-synthesized template's ranges from each calibration image run with its own
    # synthesized kernels (and each basis alone), not with the template's mean-coefficient
    # kernels, which per-frame kernels exceed (int16x8 template: 89.2% held-out agreement with
    # the template's ranges, 99.8% with these). The TF converter's int8 calibrates itself.
    own_kernels: bool = False
    # the roles whose margin is not ``margin``
    role_margins: Mapping[Role, float] = field(default_factory=lambda: MappingProxyType({}))

    def margin_for(self, role: Role) -> float:
        return self.role_margins.get(role, self.margin)

    def to_json(self) -> dict:
        return {"margin": self.margin,
                "role_margins": {role.value: m for role, m in self.role_margins.items()},
                "within_op_bounds": True,
                "template_ranges": "each calibration image's own kernels" if self.own_kernels
                                   else "the template's kernels"}


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str  # one line, for --help and the manifest
    schemes: Mapping[Role, Quantization] = field(default_factory=dict)  # absent: Quantization.INT8
    tuned: tuple[Role, ...] = ()  # int8 weights tuned against the float model before conversion
    # how its static activation ranges come from the calibration images
    ranges: ActivationRanges = ActivationRanges()
    # role -> why the recipe does not make that artifact (``--specialist`` must leave it out)
    unmade: Mapping[Role, str] = field(default_factory=dict)

    def scheme(self, role: Role) -> Quantization:
        return self.schemes.get(role, Quantization.INT8)

    def to_json(self) -> dict:
        return {"name": self.name, "summary": self.summary,
                "schemes": {role.value: self.scheme(role).value for role in Role if role not in self.unmade},
                "tuned": [role.value for role in self.tuned],
                "activation_ranges": self.ranges.to_json()}


# The specialists of the faithful recipes: int8 weights with activations quantized per frame
# (the coefficient-input specialist) or float (the template: weight-only int8, which XNNPACK
# and onnxruntime dequantize once at load, so it runs at float speed).
_FAITHFUL_SPECIALISTS = {Role.SPECIALIST_COEFFICIENT: Quantization.DYNAMIC,
                         Role.SPECIALIST_PRESYNTH: Quantization.WEIGHT_ONLY}

FULL = Recipe(
    "full", "static int8 activations everywhere XNNPACK runs int8 (the CPU's fastest; "
            "what NPUs take)")
# The lightweight model stays float32: its coefficients choose every synthesized kernel, and
# the nearest int8 rounding of its weights alone moves them by up to 0.09-0.20 on held-out
# photos (the specialists then disagree on 1-2.5% of them).
FIDELITY = Recipe(
    "fidelity", "float32 lightweight model; int8 specialist weights with float or per-frame "
                "activations (keeps the float model's answers on held-out photos)",
    MappingProxyType({Role.LIGHTWEIGHT: Quantization.FLOAT32, **_FAITHFUL_SPECIALISTS}))
# Every weight int8: the LM's weights and the template's static ones tuned first on random
# views of the calibration images (the step kept where a held-back quarter says tuning helps).
FIDELITY_INT8_LM = Recipe(
    "fidelity-int8-lm", "fidelity with a weight-only int8 lightweight model, its int8 weights "
                        "and the template's tuned on the calibration images (slower to export)",
    MappingProxyType({Role.LIGHTWEIGHT: Quantization.WEIGHT_ONLY, **_FAITHFUL_SPECIALISTS}),
    tuned=(Role.LIGHTWEIGHT, Role.SPECIALIST_PRESYNTH))

# Full-integer with int16 activations: every op integer, as NPUs with 16x8 support take it.
# int8 activations lose the float model's answers on held-out photos (full); int16 ones with the
# int8 weights tuned first keep them (benchmarks/results/full_integer_a16w8/). Its convs run
# 16x8 kernels, which XNNPACK does not have: on a CPU it is slower than float.
FULL_16X8 = Recipe(
    "full-16x8", "full-integer: int8 weights tuned on the calibration images, int16 activations "
                 "(for NPUs that take 16x8; slower than float on a CPU)",
    MappingProxyType({role: Quantization.INT16X8 for role in Role}),
    tuned=(Role.LIGHTWEIGHT, Role.SPECIALIST_PRESYNTH),
    ranges=ActivationRanges(margin=1.5, own_kernels=True, role_margins=MappingProxyType({Role.LIGHTWEIGHT: 3.0})),
    unmade=MappingProxyType({Role.SPECIALIST_COEFFICIENT: (
        "its kernels are synthesized in the graph, so they would be int16 tensors, and 16x8 "
        "convolutions take int8 filters; use --specialist presynth")}))

RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {r.name: r for r in (FULL, FIDELITY, FIDELITY_INT8_LM, FULL_16X8)})
# ``--int8-recipe auto``: these, fastest first, until one passes the agreement gate. The
# full-integer recipe is what NPUs take and what phones' int8 kernels run fastest; fidelity
# keeps the float model's answers on held-out photos.
AUTO = "auto"
AUTO_ORDER: tuple[Recipe, ...] = (FULL, FIDELITY)
DEFAULT_RECIPE = AUTO
RECIPE_CHOICES = (AUTO, *RECIPES)


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except (KeyError, TypeError):
        raise UserError(f"--int8-recipe: unknown {name!r}; choose one of {list(RECIPE_CHOICES)}") from None


def candidate_recipes(name: str) -> tuple[Recipe, ...]:
    """The recipes ``--int8-recipe name`` tries, in order (one unless ``auto``)."""
    return AUTO_ORDER if name == AUTO else (get_recipe(name),)


def artifact_scheme(target: Target, quantization: Quantization, recipe: Recipe, role: Role,
                    coefficient_int8: CoefficientInt8 = CoefficientInt8.DYNAMIC) -> Quantization:
    """The scheme one artifact of an export gets: the export's quantization, resolved for int8
    by the recipe, and for the coefficient-input specialist's static int8 by the target's
    ``--coefficient-int8`` choices."""
    if quantization is not Quantization.INT8:
        return quantization
    scheme = recipe.scheme(role)
    if role is Role.SPECIALIST_COEFFICIENT and scheme is Quantization.INT8 and target.coefficient_int8:
        scheme = target.coefficient_int8[coefficient_int8]
    return scheme


@dataclass(frozen=True)
class ArtifactPlan:
    """One artifact of an export, before conversion."""

    role: Role
    scheme: Quantization
    decomposed_hard_swish: bool  # its graph spells hard-swish out (the target's choice per scheme)
    tuned: bool  # its int8 weights are tuned before conversion
    # The coefficient-input specialist's fakequant scheme: every synthesized kernel gets the
    # static symmetric range max_k |W_k| (valid for any softmax mix) in the graph.
    bounded_kernels: bool = False


def plan(target: Target, quantization: Quantization, recipe: Recipe, roles, input_type: str,
         coefficient_int8: CoefficientInt8 = CoefficientInt8.DYNAMIC) -> dict[Role, ArtifactPlan]:
    """Every artifact's scheme, checked against ``target`` (a :class:`UserError` before any
    conversion starts for a combination the target cannot make)."""
    if quantization not in target.export_quantizations:
        raise UserError(f"--quantize {quantization.value}: --target {target.name} offers "
                        f"{', '.join(q.value for q in target.export_quantizations)}")
    if input_type not in target.input_types:
        raise UserError(f"--input-type {input_type}: --target {target.name} takes "
                        f"{', '.join(target.input_types)} input")
    if coefficient_int8 is not CoefficientInt8.DYNAMIC and not target.coefficient_int8:
        raise UserError(f"--coefficient-int8 {coefficient_int8.value}: --target {target.name} has one "
                        "int8 scheme for the coefficient-input specialist; leave the option out")
    if (coefficient_int8 is not CoefficientInt8.DYNAMIC and quantization is Quantization.INT8
            and recipe.scheme(Role.SPECIALIST_COEFFICIENT) is not Quantization.INT8):
        raise UserError(f"--coefficient-int8 {coefficient_int8.value}: --int8-recipe {recipe.name} "
                        f"makes the coefficient-input specialist "
                        f"{recipe.scheme(Role.SPECIALIST_COEFFICIENT).value}; use --int8-recipe full")
    out = {}
    for role in roles:
        if quantization is Quantization.INT8 and role in recipe.unmade:
            raise UserError(f"--int8-recipe {recipe.name} makes no {role.value}: {recipe.unmade[role]}")
        scheme = artifact_scheme(target, quantization, recipe, role, coefficient_int8)
        target.check_scheme(scheme, role.value)
        out[role] = ArtifactPlan(role, scheme, scheme in target.decomposed_hard_swish,
                                 quantization is Quantization.INT8 and role in recipe.tuned,
                                 bounded_kernels=(role is Role.SPECIALIST_COEFFICIENT and scheme is Quantization.INT8
                                                  and coefficient_int8 is CoefficientInt8.FAKEQUANT
                                                  and bool(target.coefficient_int8)))
    return out
