"""The manifest of an export directory, typed: the one place that knows its file names and schema.

``manifest.json`` is read once, checked, and turned into a :class:`Manifest`; every stage that
reads an export (runtime, report, Android assets, verification) uses the dataclasses, never
the raw dict. Anything in the file is untrusted: wrong types, missing keys and file names that
leave the directory are one-line :class:`UserError` messages naming the file and the fix.

NumPy-free and TensorFlow-free.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from basisnet_deploy.common.errors import ConfigError, UserError
from basisnet_deploy.common.files import read_verified, write_json_atomically
from basisnet_deploy.common.jsonable import finite_number, jsonable_fields
from basisnet_deploy.data import Preprocessing
from basisnet_deploy.targets import registry
from basisnet_deploy.targets.kinds import Quantization, Role
from basisnet_deploy.targets.recipes import RECIPES, Recipe

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
BASES_FILE = "specialist_bases.npz"
BASES_INT8_FILE = "specialist_bases_int8.npz"  # compact bases (artifacts.compact_bases)
PATCH_TABLE_FILE = "specialist_patches.json"
LAYER_REPORT_FILE = "layer_report.json"  # per-layer error of static int8/int16x8 TFLite artifacts


@dataclass(frozen=True)
class PresynthFiles:
    """The pre-synthesized specialist's side files and what they were made from."""

    bases: str
    patch_table: str
    bases_sha256: str
    patch_table_sha256: str
    baked_coefficients: list
    patched_layers: int
    bases_int8: str  # the compact (int8, per-basis per-channel scales) copy of the bases
    bases_int8_sha256: str


@dataclass
class Artifact:
    role: Role
    file: str
    sha256: str
    bytes: int
    quantization: Quantization
    presynth: PresynthFiles | None = None
    details: dict = field(default_factory=dict)  # runtime I/O description, GPU analyzer output

    def to_json(self) -> dict:
        out = {"role": self.role.description, "file": self.file, "sha256": self.sha256,
               "bytes": self.bytes, "quantization": self.quantization.value}
        if self.presynth is not None:
            out.update(dataclasses.asdict(self.presynth))
        return {**out, **self.details}


@dataclass
class ExportRecord:
    """What ``export`` (and ``android-assets``) record beside the schema: how the artifacts were
    made and checked. Written as top-level keys of manifest.json; each is type-checked on load."""

    generator: str | None = None
    hard_swish: dict | None = None  # role -> the form of hard-swish in its graph
    calibration: dict | None = None  # the calibration images used
    weight_tuning: dict | None = None  # role -> its int8 weight tuning report
    layer_report: dict | None = None  # the per-layer error file and each artifact's worst op
    verification: dict | None = None  # agreement with the float model on held-out images
    agreement_gate: dict | None = None  # min_agreement, forced, below, 95% intervals
    recipe_choice: dict | None = None  # --int8-recipe auto: the recipes tried, and why one was kept
    export_seconds: float | None = None
    android_assets: dict | None = None  # where an Android asset copy came from
    extra: dict = field(default_factory=dict)  # keys of other versions, kept as they are

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("extra", "android_assets")}
        if self.android_assets is not None:
            out["android_assets"] = self.android_assets
        return {**self.extra, **out}


# ExportRecord's fields and the JSON types each may hold (None: absent).
_NUMBER = (int, float)
_RECORD_TYPES = {f.name: {"export_seconds": _NUMBER, "generator": str}.get(f.name, dict)
                 for f in dataclasses.fields(ExportRecord) if f.name != "extra"}
_JSON_NAMES = {_NUMBER: "number", str: "string", dict: "object"}


@dataclass
class Manifest:
    target: str
    quantization: Quantization
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    light_resolution: int
    resolution: int
    artifacts: dict[Role, Artifact]
    cost: dict
    checkpoint: dict = field(default_factory=dict)  # path and config_sha256
    architecture: dict = field(default_factory=dict)
    coefficients: dict = field(default_factory=dict)
    early_exit: dict = field(default_factory=lambda: {"threshold": None})
    record: ExportRecord = field(default_factory=ExportRecord)
    recipe: Recipe | None = None  # the int8 recipe of an int8 export

    @property
    def target_spec(self) -> registry.Target:
        """The descriptor of this export's target (targets/registry.py)."""
        return registry.get(self.target, "manifest target")

    @property
    def runtime(self) -> str:
        """The runtime that runs this export's artifacts on the host (``--runtime``)."""
        return self.target_spec.runtime.value

    @property
    def threshold(self) -> float | None:
        return self.early_exit.get("threshold")

    def artifact(self, role: Role | str, directory=None) -> Artifact:
        role = Role(role)
        if role not in self.artifacts:
            where = f"{directory}: " if directory else ""
            raise UserError(f"{where}the export has no {role.value} artifact (it has "
                            f"{sorted(r.value for r in self.artifacts)}); re-export with it")
        return self.artifacts[role]

    def to_json(self) -> dict:
        pre = dataclasses.asdict(self.preprocessing)
        pre["input_range"] = list(self.preprocessing.input_range)
        body = {
            "schema_version": MANIFEST_VERSION, "target": self.target,
            "quantization": self.quantization.value, "architecture": self.architecture,
            "preprocessing": {**pre, "lightweight_resolution": self.light_resolution,
                              "specialist_resolution": self.resolution},
            "labels": list(self.labels), "coefficients": self.coefficients, "cost": self.cost,
            "early_exit": self.early_exit, "checkpoint": self.checkpoint,
            "artifacts": {r.value: a.to_json() for r, a in self.artifacts.items()},
        }
        if self.recipe is not None:
            body["int8_recipe"] = self.recipe.to_json()
        return {**body, **self.record.to_json()}

    def save(self, directory) -> None:
        """Write ``manifest.json`` atomically (temp file, then rename)."""
        write_json_atomically(Path(directory) / MANIFEST_FILE, self.to_json())


def load_manifest(directory) -> Manifest:
    """The checked, typed manifest of an export directory."""
    path = Path(directory) / MANIFEST_FILE
    if not Path(directory).is_dir():
        what = "is a file, not a directory" if Path(directory).exists() else "no such directory"
        raise UserError(f"{directory}: {what}; pass a directory written by basisnet-deploy export")
    if not path.is_file():
        raise UserError(f"{path}: missing; pass a directory written by basisnet-deploy export")
    try:
        raw = json.loads(read_verified(directory, MANIFEST_FILE, what="manifest").decode())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); re-run basisnet-deploy export") from None
    return parse_manifest(raw, path)


def parse_manifest(raw, where) -> Manifest:
    """A :class:`Manifest` from parsed JSON; ``where`` names the file in error messages."""
    if not isinstance(raw, dict):
        raise UserError(f"{where}: the top level must be a JSON object; re-run basisnet-deploy export")
    version = raw.get("schema_version")
    if version != MANIFEST_VERSION:
        raise UserError(f"{where}: schema_version {version!r} is not the {MANIFEST_VERSION} this "
                        "basisnet-deploy reads; re-export with this version")
    get = _Reader(raw, str(where))
    pre = get.object("preprocessing")
    preprocessing, architecture = _preprocessing(pre, where), get.object("architecture", optional=True)
    artifacts = {}
    for name, entry in get.object("artifacts").items():
        role = _role(name, where)
        artifacts[role] = _artifact(role, entry, where)
    if Role.LIGHTWEIGHT not in artifacts:
        raise UserError(f"{where}: no lightweight artifact; re-run basisnet-deploy export")
    known = {"schema_version", "target", "quantization", "architecture", "preprocessing", "labels",
             "coefficients", "cost", "early_exit", "checkpoint", "artifacts", "int8_recipe"}
    return Manifest(
        target=get.choice("target", registry.names()), recipe=_recipe(raw.get("int8_recipe"), where),
        quantization=_quantization(raw.get("quantization"), where, "quantization"),
        labels=_labels(get, architecture, where), preprocessing=preprocessing,
        light_resolution=_resolution(pre, "lightweight_resolution", architecture, "light_resolution", where),
        resolution=_resolution(pre, "specialist_resolution", architecture, "resolution", where),
        artifacts=artifacts,
        cost=_cost(get, where), checkpoint=get.object("checkpoint", optional=True),
        architecture=architecture, coefficients=get.object("coefficients", optional=True),
        early_exit=_early_exit(get, where),
        record=_record({k: v for k, v in raw.items() if k not in known}, where))


class _Reader:
    def __init__(self, raw: dict, where: str):
        self.raw, self.where = raw, where

    def object(self, key: str, optional: bool = False) -> dict:
        value = self.raw.get(key)
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            raise UserError(f"{self.where}: {key} must be a JSON object; re-run basisnet-deploy export")
        return value

    def strings(self, key: str) -> list[str]:
        value = self.raw.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise UserError(f"{self.where}: {key} must be a non-empty list of strings")
        return value

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.raw.get(key)
        if value not in choices:
            raise UserError(f"{self.where}: {key} is {value!r}; expected one of {list(choices)}")
        return value


def _typed(obj: dict, key: str, kind, where):
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"{where}: {key} is {value!r}; re-run basisnet-deploy export")
    return value


def _preprocessing(pre: dict, where) -> Preprocessing:
    """The preprocessing record, typed and validated."""
    try:
        return Preprocessing(
            resize=_typed(pre, "resize", str, where), crop_fraction=float(_typed(pre, "crop_fraction", (int, float), where)),
            input_range=tuple(_typed(pre, "input_range", list, where)),
            interpolation=_typed(pre, "interpolation", str, where)).validate(f"{where}: preprocessing")
    except ConfigError as e:  # a value out of range: validate() named the key
        raise UserError(f"{e}; re-run basisnet-deploy export") from None
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: preprocessing: {e}; re-run basisnet-deploy export") from None


def _resolution(pre: dict, key: str, architecture: dict, arch_key: str, where) -> int:
    """An input resolution: a positive integer, the architecture record's where it has one."""
    value = pre.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"{where}: preprocessing.{key} is {value!r}, not a positive integer; "
                        "re-run basisnet-deploy export")
    if architecture.get(arch_key, value) != value:
        raise UserError(f"{where}: preprocessing.{key} is {value} but architecture.{arch_key} is "
                        f"{architecture[arch_key]!r}; re-run basisnet-deploy export")
    return value


def _labels(get: _Reader, architecture: dict, where) -> tuple[str, ...]:
    """The class names: one per class, where the architecture record counts them."""
    labels = tuple(get.strings("labels"))
    classes = architecture.get("num_classes")
    if classes is not None and (isinstance(classes, bool) or classes != len(labels)):
        raise UserError(f"{where}: labels has {len(labels)} names but architecture.num_classes is "
                        f"{classes!r}; re-run basisnet-deploy export")
    return labels


def _cost(get: _Reader, where) -> dict:
    """The cost record, refused here (PipelineCost.from_json) if it is not a cost model."""
    cost = get.object("cost")
    PipelineCost.from_json(cost, str(where))
    return cost


def _early_exit(get: _Reader, where) -> dict:
    """The early-exit record; its threshold is null (never exit) or a confidence in [0, 1]."""
    early = get.object("early_exit", optional=True) or {"threshold": None}
    threshold = early.get("threshold")
    if threshold is not None and not (finite_number(threshold) and 0 <= threshold <= 1):
        raise UserError(f"{where}: early_exit.threshold is {threshold!r}, not null or a number in "
                        "[0, 1]; set it to null and re-run basisnet-deploy calibrate-threshold")
    return early


def _role(name: str, where) -> Role:
    try:
        return Role(name)
    except ValueError:
        raise UserError(f"{where}: unknown artifact role {name!r}; expected one of "
                        f"{[r.value for r in Role]}") from None


def _record(raw: dict, where) -> ExportRecord:
    """The export record from the manifest's other top-level keys, each of its JSON type."""
    values = {}
    for key, kind in _RECORD_TYPES.items():
        value = raw.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise UserError(f"{where}: {key} must be a JSON {_JSON_NAMES[kind]}, not "
                            f"{type(value).__name__}; re-run basisnet-deploy export")
        values[key] = value
    return ExportRecord(**values, extra={k: v for k, v in raw.items() if k not in _RECORD_TYPES})


def _recipe(value, where) -> Recipe | None:
    """The int8 recipe an export records (by name; its schemes are the artifacts' own)."""
    if value is None:
        return None
    name = value.get("name") if isinstance(value, dict) else None
    if name not in RECIPES:
        raise UserError(f"{where}: int8_recipe {name!r} is not one of {list(RECIPES)} that this "
                        "basisnet-deploy knows; re-export with this version")
    return RECIPES[name]


def _quantization(value, where, key: str) -> Quantization:
    try:
        return Quantization(value)
    except ValueError:
        raise UserError(f"{where}: {key} is {value!r}; expected one of "
                        f"{[q.value for q in Quantization]}") from None


def safe_name(name, where, key: str) -> str:
    """A file name from an untrusted manifest: a plain name inside the export directory."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name
            or "\\" in name or "\x00" in name):
        raise UserError(f"{where}: {key} is {name!r}, not a plain file name inside the export "
                        "directory; refusing to read or write outside it")
    return name


def _artifact(role: Role, entry, where) -> Artifact:
    if not isinstance(entry, dict):
        raise UserError(f"{where}: artifacts.{role.value} must be a JSON object")
    key = f"artifacts.{role.value}"
    fixed = {"role", "file", "sha256", "bytes", "quantization"}
    presynth = None
    if role is Role.SPECIALIST_PRESYNTH:
        fields = [f.name for f in dataclasses.fields(PresynthFiles)]
        missing = [f for f in fields if f not in entry]
        if missing:
            raise UserError(f"{where}: {key} lacks {missing[0]!r}; re-run basisnet-deploy export")
        presynth = PresynthFiles(
            bases=safe_name(entry["bases"], where, f"{key}.bases"),
            patch_table=safe_name(entry["patch_table"], where, f"{key}.patch_table"),
            bases_sha256=_typed(entry, "bases_sha256", str, where),
            bases_int8=safe_name(entry["bases_int8"], where, f"{key}.bases_int8"),
            bases_int8_sha256=_typed(entry, "bases_int8_sha256", str, where),
            patch_table_sha256=_typed(entry, "patch_table_sha256", str, where),
            baked_coefficients=_typed(entry, "baked_coefficients", list, where),
            patched_layers=_typed(entry, "patched_layers", int, where))
        fixed |= set(fields)
    return Artifact(role=role, file=safe_name(entry.get("file"), where, f"{key}.file"),
                    sha256=_typed(entry, "sha256", str, where), bytes=_typed(entry, "bytes", int, where),
                    quantization=_quantization(entry.get("quantization"), where, f"{key}.quantization"),
                    presynth=presynth, details={k: v for k, v in entry.items() if k not in fixed})


def agreement_warning(manifest: Manifest) -> str | None:
    """A warning for an export forced through the agreement gate (--allow-low-agreement)."""
    gate = manifest.record.agreement_gate or {}
    if not gate.get("forced"):
        return None
    below = ", ".join(f"{k} {v}%" for k, v in gate.get("below", {}).items())
    return (f"this export was forced through the agreement gate (--allow-low-agreement): below "
            f"{gate.get('min_agreement')}%: {below}")
def check_files(directory, manifest: Manifest) -> dict[Role, bytes]:
    """Every file of the export present, inside it, with the sha256 the manifest records:
    each artifact (and its size), the bases and the patch table; then each model file's
    structure (:mod:`~basisnet_deploy.artifacts.model_check`), so no runtime sees bad bytes.

    Returns each artifact's checked bytes: a session for an artifact loads these, never the
    file again (a file replaced after the check would otherwise run unchecked)."""
    assets = manifest.record.android_assets
    if assets is not None:  # bases as raw .bin for the Java core: not an export the host runs
        raise UserError(f"{directory}: Android assets copied from {assets.get('source', 'an export')} "
                        "for the app; run this command on that export")
    models = {}
    for role, entry in manifest.artifacts.items():
        models[role] = model_bytes(directory, entry)
        if entry.presynth is not None:
            read_verified(directory, entry.presynth.bases, entry.presynth.bases_sha256, what="bases")
            read_verified(directory, entry.presynth.patch_table, entry.presynth.patch_table_sha256,
                          what="patch table")
    return models


def model_bytes(directory, entry: Artifact) -> bytes:
    """The bytes of one artifact, read once: size and sha256 checked against the manifest,
    then the model's structure. Open a session on these bytes, not on the file."""
    from basisnet_deploy.artifacts.model_check import check_model_bytes

    data = read_verified(directory, entry.file, entry.sha256, entry.bytes, entry.role.value)
    check_model_bytes(data, Path(directory) / entry.file)
    return data


def legacy_export(directory: Path) -> bool:
    """An export written before output markers: a manifest.json whose generator is us."""
    try:
        raw = json.loads((Path(directory) / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and str(raw.get("generator", "")).startswith("basisnet-deploy")


STAGES = ("lightweight", "synthesis", "specialist")


@dataclass(frozen=True)
class StageCost:
    """One stage's multiply-adds and parameters."""

    madds: int
    params: int

    def to_json(self) -> dict:
        return jsonable_fields(self)


@dataclass(frozen=True)
class PipelineCost:
    """The manifest's cost model: multiply-adds and parameters of the whole pipeline (both
    stages run) and per stage (stage name -> cost, for each of :data:`STAGES`);
    ``nonshared_weights_per_basis``: the non-shared kernel weights one basis holds."""

    madds: int
    params: int
    stages: dict[str, StageCost]
    nonshared_weights_per_basis: int | None = None

    @classmethod
    def from_json(cls, cost: dict, where: str = MANIFEST_FILE) -> "PipelineCost":
        """The cost model as ``model.cost.basisnet_cost`` writes it; a UserError naming
        ``where`` if it is not one."""
        try:
            stages = {name: StageCost(_figure(s, "madds", where, f"cost.stages.{name}"),
                                      _figure(s, "params", where, f"cost.stages.{name}"))
                      for name, s in cost["stages"].items()}
            if not set(STAGES) <= set(stages):
                raise KeyError
            nonshared = cost.get("nonshared_weights_per_basis")
            if nonshared is not None:
                nonshared = _figure(cost, "nonshared_weights_per_basis", where, "cost")
            return cls(_figure(cost, "madds", where, "cost"), _figure(cost, "params", where, "cost"),
                       stages, nonshared)
        except (KeyError, TypeError, AttributeError):
            raise UserError(f"{where}: cost is not a cost model (madds, params and stages "
                            f"{', '.join(STAGES)}, each with madds and params); re-export") from None

    def expected_madds(self, exit_rate: float) -> float:
        """Average MAdds per frame when a fraction ``exit_rate`` of frames skip the specialist."""
        st = self.stages
        return st["lightweight"].madds + (1.0 - exit_rate) * (st["synthesis"].madds + st["specialist"].madds)

    def to_json(self) -> dict:
        """madds, params, stages, then nonshared_weights_per_basis where known."""
        out = jsonable_fields(self)
        if self.nonshared_weights_per_basis is None:
            del out["nonshared_weights_per_basis"]
        return out


def _figure(cost: dict, key: str, where, name: str):
    """``cost[key]``, a cost figure: a finite number >= 0 (KeyError where it is missing)."""
    value = cost[key]
    if not finite_number(value) or value < 0:
        raise UserError(f"{where}: {name}.{key} is {value!r}, not a finite number >= 0; "
                        "re-run basisnet-deploy export")
    return value
