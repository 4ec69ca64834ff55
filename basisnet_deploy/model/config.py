"""BasisNet configuration: architecture, preprocessing and labels, and their validation.

The same dataclasses back ``config.json`` in a checkpoint directory, the ``train``/``cost``
CLI flags and the presets. Validation errors are :class:`ConfigError` with one line that
names the key and what is wrong, so the CLI can print them without a traceback.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field

from basisnet_deploy.model.arch import ARCHS
from basisnet_deploy.common.errors import ConfigError
from basisnet_deploy.data.preprocessing import Preprocessing

SCHEMA_VERSION = 1

BACKBONES = {
    # backbone: (lightweight arch, specialist arch)
    "mv3": ("mv3-small", "mv3-large"),
    "mv2": ("mv2", "mv2"),
}
STRATEGIES = ("default", "mirrored")  # tf.distribute strategies the training step runs under


@dataclass(frozen=True)
class ArchConfig:
    backbone: str = "mv3"
    bases: int = 16
    nonshared: tuple[int, int] = (8, 15)  # inclusive, 1-based block indices (paper's L8-L15)
    width: float = 1.0
    resolution: int = 224
    light_width: float = 1.0
    light_resolution: int = 128
    num_classes: int = 1000
    dropout: float = 0.2  # before the classifiers; the paper's keep probability 0.8
    bn_momentum: float = 0.99

    @property
    def light_arch(self) -> str:
        return BACKBONES[self.backbone][0]

    @property
    def specialist_arch(self) -> str:
        return BACKBONES[self.backbone][1]

    @property
    def nonshared_blocks(self) -> tuple[int, ...]:
        return tuple(range(self.nonshared[0], self.nonshared[1] + 1))

    def validate(self, where: str = "architecture", name=None) -> "ArchConfig":
        """``self``, refused with a ConfigError naming the field as ``where.key``, or as
        ``name(key)`` where given (the CLI's flag)."""
        def bad(key, msg):
            raise ConfigError(f"{name(key) if name else f'{where}.{key}'}: {msg}")

        if self.backbone not in BACKBONES:
            bad("backbone", f"unknown backbone {self.backbone!r}; choose one of {sorted(BACKBONES)}")
        if not 1 <= self.bases <= 128:
            bad("bases", f"must be between 1 and 128, got {self.bases}")
        nblocks = len(ARCHS[self.specialist_arch].blocks)
        lo, hi = self.nonshared
        if not 1 <= lo <= hi <= nblocks:
            bad("nonshared", f"must be a block range A-B with 1 <= A <= B <= {nblocks} "
                             f"for {self.specialist_arch}, got {lo}-{hi}")
        for key in ("width", "light_width"):
            if not 0 < getattr(self, key) <= 4:
                bad(key, f"must be in (0, 4], got {getattr(self, key)}")
        for key in ("resolution", "light_resolution"):
            if not 16 <= getattr(self, key) <= 1024:
                bad(key, f"must be between 16 and 1024 pixels, got {getattr(self, key)}")
        if self.num_classes < 2:
            bad("num_classes", f"must be at least 2, got {self.num_classes}")
        if not 0 <= self.dropout < 1:
            bad("dropout", f"must be in [0, 1), got {self.dropout}")
        if not 0 < self.bn_momentum < 1:
            bad("bn_momentum", f"must be in (0, 1), got {self.bn_momentum}")
        return self


@dataclass(frozen=True)
class BasisNetConfig:
    architecture: ArchConfig = field(default_factory=ArchConfig)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: tuple[str, ...] = ()
    training: dict = field(default_factory=dict)  # informational: how it was trained

    def validate(self) -> "BasisNetConfig":
        self.architecture.validate()
        self.preprocessing.validate()
        _check_value(self.training, TrainingRecord, "training")
        if len(self.labels) != self.architecture.num_classes:
            raise ConfigError(f"labels: {len(self.labels)} labels for "
                              f"{self.architecture.num_classes} classes")
        return self

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["architecture"]["nonshared"] = list(self.architecture.nonshared)
        d["preprocessing"]["input_range"] = list(self.preprocessing.input_range)
        d["labels"] = list(self.labels)
        return {"schema_version": SCHEMA_VERSION, **d}

    @classmethod
    def from_json(cls, data, where: str = "config.json") -> "BasisNetConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: top level must be a JSON object")
        version = data.get("schema_version")
        if version is None:
            raise ConfigError(f"{where}: missing key 'schema_version'")
        if version != SCHEMA_VERSION:
            raise ConfigError(f"{where}: unsupported schema_version {version!r}; this "
                              f"basisnet-deploy reads version {SCHEMA_VERSION}")
        body = {k: v for k, v in data.items() if k != "schema_version"}
        _check_keys(body, cls, where, required=("architecture", "labels"))
        arch = _build(ArchConfig, body["architecture"], f"{where}: architecture")
        pre = _build(Preprocessing, body.get("preprocessing", {}), f"{where}: preprocessing")
        labels = body["labels"]
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ConfigError(f"{where}: labels must be a list of strings")
        training = body.get("training", {})
        _check_value(training, TrainingRecord, f"{where}: training")
        cfg = cls(arch, pre, tuple(labels), training)
        try:
            return cfg.validate()
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None


def _check_keys(data, cls, where, required=()):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a JSON object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known keys: {sorted(known)}")
    for key in required:
        if key not in data:
            raise ConfigError(f"{where}: missing key {key!r}")


def _build(cls, data, where):
    """Build a dataclass from JSON, checking names and every value's type at every depth
    (from the field types), every field required."""
    return cls(**_fields(cls, data, where, partial=False))


def _fields(cls, data, where, partial: bool) -> dict:
    hints = typing.get_type_hints(cls)
    _check_keys(data, cls, where, required=() if partial else tuple(hints))
    return {name: _check_value(value, hints[name], f"{where}.{name}") for name, value in data.items()}


def _check_value(value, want, where: str):
    """``value`` as type ``want`` (a list becomes a tuple, an int a float), or a one-line
    :class:`ConfigError` naming the key path ``where``. A dataclass inside another is an
    object whose keys are its fields, each optional, kept as a dict."""
    origin, args = typing.get_origin(want), typing.get_args(want)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if value is None or a is not type(None)]
        if len(options) == 1:  # X | None and not None: X's own error, from its depth
            return _check_value(value, options[0], where)
        for option in options:
            try:
                return _check_value(value, option, where)
            except ConfigError:
                continue
    elif dataclasses.is_dataclass(want):
        if isinstance(value, dict):
            _fields(want, value, where, partial=True)
            return value
    elif origin is tuple:
        if isinstance(value, list):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_check_value(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
            if len(value) == len(args):
                return tuple(_check_value(v, a, f"{where}[{i}]")
                             for i, (v, a) in enumerate(zip(value, args)))
    elif origin is list:
        if isinstance(value, list):
            return [_check_value(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            return {k: _check_value(v, args[1], f"{where}.{k}") for k, v in value.items()}
    elif want is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # an integer past float's range: refused below
                pass
    elif want is type(None):
        if value is None:
            return None
    elif isinstance(value, want) and isinstance(value, bool) == (want is bool):
        return value
    raise ConfigError(f"{where}: must be {_describe(want)}, got {value!r}")


def _describe(want) -> str:
    origin, args = typing.get_origin(want), typing.get_args(want)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if dataclasses.is_dataclass(want) or want is dict or origin is dict:
        return "an object"
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return f"a list of {len(args)} {_describe(args[0])}"
    if origin in (tuple, list):
        return f"a list of {_describe(args[0])}"
    return {type(None): "null", list: "a list"}.get(want, getattr(want, "__name__", str(want)))


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 5e-3
    warmup_epochs: float = 1.0
    decay_epochs: float = 0.5  # x0.99 every this many epochs (paper: 4.5 for MV3)
    weight_decay: float = 1e-5
    clip_norm: float = 1.0  # paper: 0.1 at batch 16384
    eps_hold: float = 0.25  # fractions of the run (paper: 0.025 and 0.1 of 400K steps)
    eps_decay: float = 0.25
    basis_dropout: float | None = None  # None: the paper's rule from K
    held_out: float = 0.2
    seed: int = 0
    strategy: str = "default"

    def dropout_rate(self, bases: int) -> float:
        if self.basis_dropout is not None:
            return self.basis_dropout
        if bases == 1:
            return 0.0
        return 1 / 16 if bases >= 16 else 1 / 8


@dataclass(frozen=True)
class TrainingRecord:
    """The keys of config.json's informational ``training`` object and their types (what
    ``train`` writes); every key is optional, an unknown one is refused."""

    dataset: str | None = None  # "digits" or the image folder
    settings: TrainSettings | None = None  # the TrainSettings used (any subset of its fields)
    augment: bool = False
    held_out: dict[str, float] | None = None  # top-1 of both stages, and the count
    train_seconds: float = 0.0
    steps: int = 0
    resumed_from_epoch: int = 0
    epochs: list[dict] = ()  # per-epoch summaries
    train_examples: int = 0
    init_from: list[dict] = ()  # --init-from files
    skipped: dict[str, int] | None = None  # undecodable images, by reason
    skipped_files: list[str] = ()
    held_out_files: list[str] = ()  # a folder's held-out split, by relative path
    held_out_sha256: str = ""
    note: str = ""


PRESETS = {
    # The paper's main comparison: MV3-Small 1.0x128 LM, 16 bases of MV3-Large 1.0x224, L8-L15.
    "mv3": ArchConfig(),
    # BasisNet-MV2: MV2 0.5x128 LM, 8 bases of MV2 1.0x224, L11-L17.
    "mv2": ArchConfig(backbone="mv2", bases=8, nonshared=(11, 17), light_width=0.5),
    # The embedded demo: digits, small widths and resolutions, a few bases; trains in minutes.
    "demo": ArchConfig(bases=4, width=0.5, resolution=32, light_width=0.5,
                       light_resolution=16, num_classes=10, bn_momentum=0.9),
}
