"""Start from pretrained weights: a ``keras.applications`` MobileNetV3 file into a BasisNet.

``train --init-from FILE`` reads a weights file in the layout ``keras.applications``
MobileNetV3Large/MobileNetV3Small write: the legacy ``.h5`` that ``keras.applications``
downloads (layers paired by order) or Keras 3's ``.weights.h5`` (layers keyed by class name).
Keras itself reads the file: we build the matching ``keras.applications`` model
(``weights=None``, the network's own width as ``alpha``, not minimalistic) and call its
``load_weights``; then :data:`BLOCK_PARTS` / :data:`TRUNK` (data, not code) say which of our
layers each Keras layer fills.

- The file is one variant (MobileNetV3-Large or -Small, told by its number of depthwise
  kernels). It loads into every network of that variant (the specialist is Large, the
  lightweight model Small under ``--backbone mv3``); a network of the other variant keeps its
  initial weights, and the result says so. Two files, one per variant, fill both.
- A network of the file's variant must fit it layer for layer; the first layer that does not
  is a one-line :class:`UserError` with both shapes and the width the file matches.
- The classifier (``logits``) loads only when the class count matches; otherwise it keeps
  its initial weights and the result says why. The lightweight model's coefficient head has
  no counterpart in a MobileNet and always starts at init.
- Every basis k of a non-shared layer is the file's kernel times ``1 + PERTURBATION * z``,
  ``z`` standard normal per element and per basis, drawn from ``seed``: identical bases would
  get identical gradients under any coefficients, so basis dropout (the paper's) could never
  tell them apart. 2% keeps every basis, and any convex mix of them, within a few percent of
  the pretrained kernel, so the specialist starts from the pretrained function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import keras
import numpy as np

from basisnet_deploy.common.errors import UserError, first_line
from basisnet_deploy.model.arch import ARCHS
from basisnet_deploy.model.config import PRESETS
from basisnet_deploy.model.layers import BasisConv1x1, BasisDepthwiseConv2D
from basisnet_deploy.model.network import LIGHT_PREFIX, SPECIALIST_PREFIX, PlainStyle, build_plain

PERTURBATION = 0.02  # relative std of each basis' per-element noise (module docstring)

KERAS_APPS = {"mv3-large": "MobileNetV3Large", "mv3-small": "MobileNetV3Small"}

# Keras 3 layer names (keras/src/applications/mobilenet_v3.py) -> ours, after "<prefix>_".
TRUNK = (("conv", "stem"), ("conv_bn", "stem_bn"),
         ("conv_1", "head0"), ("conv_1_bn", "head0_bn"), ("conv_2", "head1"),
         ("logits", "logits"))
# Per block: Keras' block_id is our index - 1; block 0's prefix is "expanded_conv_" and has
# no expand conv (neither has our L1).
BLOCK_PARTS = (("expand", "expand"), ("expand_bn", "expand_bn"),
               ("depthwise", "depthwise"), ("depthwise_bn", "depthwise_bn"),
               ("squeeze_excite_conv", "se_reduce"), ("squeeze_excite_conv_1", "se_expand"),
               ("project", "project"), ("project_bn", "project_bn"))
TOP = ("conv_2", "logits")  # what a file saved with include_top=False lacks
# Keras 3's .weights.h5 keys a layer by its class name in snake case, numbered in model order
# ("layers/conv2d_3/vars/0", keras/src/saving/saving_lib.py); these classes hold MobileNetV3's
# weights.
KERAS3_KEYS = {"Conv2D": "conv2d", "DepthwiseConv2D": "depthwise_conv2d",
               "BatchNormalization": "batch_normalization"}

Shapes = tuple[tuple[int, ...], ...]


def layer_table(blocks: int) -> dict[str, str]:
    """Keras layer name -> our layer name without its prefix, for a net of ``blocks`` blocks."""
    table = dict(TRUNK)
    for i in range(1, blocks + 1):
        prefix = "expanded_conv_" if i == 1 else f"expanded_conv_{i - 1}_"
        for keras_part, ours in BLOCK_PARTS:
            table[prefix + keras_part] = f"L{i}_{ours}"
    return table


@dataclass(frozen=True)
class NetworkInit:
    """What one network took from the file."""

    network: str  # "lightweight" or "specialist"
    loaded: tuple[str, ...] = ()  # our layers that now hold the file's tensors
    perturbed: tuple[str, ...] = ()  # of those, basis layers: every basis perturbed
    skipped: dict = field(default_factory=dict)  # our layer -> why it keeps its initial weights
    not_loaded: str | None = None  # why nothing went into this network


@dataclass(frozen=True)
class PretrainedInit:
    """The outcome of one ``--init-from`` file."""

    file: str
    variant: str | None = None  # "mv3-large" / "mv3-small"
    format: str | None = None  # "legacy .h5" / "keras 3 .weights.h5"
    networks: tuple[NetworkInit, ...] = ()
    ignored: str | None = None  # why the file was not read at all (a resumed run)

    def summary(self) -> str:
        if self.ignored:
            return f"--init-from {self.file}: ignored, {self.ignored}"
        parts = []
        for n in self.networks:
            if n.not_loaded:
                parts.append(f"{n.network} at init ({n.not_loaded})")
                continue
            kept = ", ".join(f"{name}: {why}" for name, why in list(n.skipped.items())[:2])
            more = f" +{len(n.skipped) - 2} more" if len(n.skipped) > 2 else ""
            parts.append(f"{n.network} {len(n.loaded)} layers ({len(n.perturbed)} basis layers "
                         f"perturbed {PERTURBATION:.0%}), at init: {kept or 'none'}{more}")
        return f"--init-from {self.file} ({self.variant}, {self.format}): " + "; ".join(parts)

    def to_json(self) -> dict:
        from basisnet_deploy.common.jsonable import jsonable_fields

        return {**jsonable_fields(self), "summary": self.summary()}


@dataclass(frozen=True)
class _FileLayout:
    """The tensor shapes a weights file holds, per layer, read without loading the tensors."""

    path: Path
    keras3: bool  # Keras 3 .weights.h5 (keyed by class name); else legacy .h5 (by order)
    groups: tuple[tuple[str, Shapes], ...]  # (file's layer key, shapes), layers with weights

    @property
    def format(self) -> str:
        return "keras 3 .weights.h5" if self.keras3 else "legacy .h5"

    def depthwise_kernels(self) -> int:
        """Blocks in the file: one depthwise kernel [k, k, C, 1] (k > 1, no bias) each."""
        return sum(1 for _, s in self.groups
                   if len(s) == 1 and len(s[0]) == 4 and s[0][3] == 1 and s[0][0] > 1)

    def aligned(self, model: keras.Model) -> dict[str, Shapes]:
        """The file's shapes for each weighted layer of ``model``, by the model's layer name,
        paired as keras' ``load_weights`` pairs them. Layers the file lacks are absent."""
        weighted = [layer for layer in model.layers if layer.weights]
        if not self.keras3:
            return {layer.name: shapes for layer, (_, shapes) in zip(weighted, self.groups)}
        stored, seen, out = dict(self.groups), {}, {}
        for layer in weighted:
            base = KERAS3_KEYS.get(type(layer).__name__, type(layer).__name__)
            seen[base] = seen.get(base, -1) + 1
            key = base if seen[base] == 0 else f"{base}_{seen[base]}"
            if key in stored:
                out[layer.name] = stored[key]
        return out


def read_layout(path) -> _FileLayout:
    """The file's layout; a missing, unreadable or non-Keras file is a one-line UserError."""
    path = Path(path)
    usage = ("--init-from reads a Keras MobileNetV3 weights file: the .h5 keras.applications "
             "downloads, or a Keras 3 .weights.h5")
    if not path.is_file():
        raise UserError(f"{path}: no such file; {usage}")
    if not path.name.endswith((".h5", ".hdf5")):
        raise UserError(f"{path}: not a .h5/.hdf5 file; {usage}")
    if not h5py.is_hdf5(path):
        raise UserError(f"{path}: not an HDF5 file, so not a Keras weights file; {usage}")
    try:
        with h5py.File(path, "r") as f:
            groups, keras3 = _read_groups(f)
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise UserError(f"{path}: cannot read it as a Keras weights file ({e}); {usage}") from None
    if not groups:
        raise UserError(f"{path}: holds no Keras layer weights; {usage}")
    if keras3 != path.name.endswith(".weights.h5"):
        # keras' load_weights picks the reader by the file name, not the contents.
        want = ".weights.h5" if keras3 else ".h5 (not .weights.h5)"
        raise UserError(f"{path}: its contents are a {'Keras 3' if keras3 else 'legacy'} "
                        f"weights file; rename it to end in {want}")
    return _FileLayout(path, keras3, tuple(groups))


def _read_groups(f) -> tuple[list, bool]:
    """(layer key, shapes) in file order, and whether it is the Keras 3 layout."""
    def text(v):
        return v.decode("utf8") if isinstance(v, bytes) else str(v)

    if "layer_names" not in f.attrs and "model_weights" in f:  # a whole legacy model file
        f = f["model_weights"]
    if "layer_names" in f.attrs:
        groups = []
        for name in map(text, f.attrs["layer_names"]):
            names = [text(w) for w in f[name].attrs.get("weight_names", [])]
            if names:
                groups.append((name, tuple(tuple(f[name][w].shape) for w in names)))
        return groups, False
    if isinstance(f.get("layers"), h5py.Group):
        groups = []
        for key, group in f["layers"].items():
            variables = group.get("vars")
            if isinstance(variables, h5py.Group) and len(variables):
                groups.append((key, tuple(tuple(variables[str(i)].shape)
                                          for i in range(len(variables)))))
        return groups, True
    return [], False


@dataclass(frozen=True)
class _Target:
    """One of our networks as a MobileNetV3 the file might fill."""

    network: str  # "lightweight" / "specialist"
    model: keras.Model
    arch: str
    width: float
    prefix: str
    width_key: str  # the ArchConfig field (and, dashed, the option) that sets its width

    @property
    def flag(self) -> str:
        return "--" + self.width_key.replace("_", "-")


def _targets(net) -> tuple[_Target, ...]:
    cfg = net.cfg
    return (_Target("lightweight", net.lightweight, cfg.light_arch, cfg.light_width,
                    LIGHT_PREFIX, "light_width"),
            _Target("specialist", net.specialist, cfg.specialist_arch, cfg.width,
                    SPECIALIST_PREFIX, "width"))


def _variant(layout: _FileLayout) -> str:
    blocks = layout.depthwise_kernels()
    for arch in KERAS_APPS:
        if len(ARCHS[arch].blocks) == blocks:
            return arch
    raise UserError(f"{layout.path}: not a MobileNetV3 weights file ({blocks} depthwise "
                    "kernels; MobileNetV3-Large has 15, -Small 11)")


def keras_app(arch: str, width: float, classes: int | None) -> keras.Model:
    """The keras.applications MobileNetV3 of ``arch`` at ``width``; ``classes`` None: no top.

    Any input size: weights do not depend on it (and keras refuses fixed sizes below 32).
    """
    build = getattr(keras.applications, KERAS_APPS[arch])
    return build(input_shape=(None, None, 3), alpha=width, minimalistic=False,
                 include_top=classes is not None, weights=None, classes=classes or 1000,
                 include_preprocessing=False)


def _our_shapes(layer) -> Shapes:
    """Our layer's weight shapes in the Keras layout: one basis, a Dense kernel as 1x1 conv."""
    if isinstance(layer, (BasisConv1x1, BasisDepthwiseConv2D)):
        return (tuple(layer.kernel.shape[1:]),)
    shapes = [tuple(w.shape) for w in layer.weights]
    if isinstance(layer, keras.layers.Dense):
        shapes[0] = (1, 1, *shapes[0])
    return tuple(shapes)


@dataclass
class _Plan:
    pairs: list = field(default_factory=list)  # (keras layer, our layer) to copy
    skipped: dict = field(default_factory=dict)  # our layer -> why not
    mismatch: tuple | None = None  # (keras layer, our layer, file's shapes, our shapes)


def _plan(reference: keras.Model, in_file: dict, ours: keras.Model, prefix: str) -> _Plan:
    """Pair ``reference``'s weighted layers (the file's, via ``in_file``) with ours; stop at
    the first that does not fit. A classifier of another class count, or a file without the
    top, is skipped."""
    weighted = [layer for layer in reference.layers if layer.weights]
    table = layer_table(sum(1 for layer in weighted if layer.name.endswith("depthwise")))
    have, plan = {layer.name for layer in ours.layers}, _Plan()
    for layer in weighted:
        name = f"{prefix}_{table[layer.name]}"
        theirs = in_file.get(layer.name)
        mine = _our_shapes(ours.get_layer(name)) if name in have else None
        if theirs is None and layer.name in TOP:
            plan.skipped[name] = "not in the file (saved without the top)"
        elif theirs is not None and mine == theirs:
            plan.pairs.append((layer.name, name))
        elif layer.name == "logits" and mine and theirs and mine[0][:3] == theirs[0][:3]:
            plan.skipped[name] = f"the file has {theirs[1][0]} classes, this run {mine[1][0]}"
        else:
            plan.mismatch = (layer.name, name, theirs, mine)
            return plan
    for layer in ours.layers:
        if layer.weights and layer.name not in plan.skipped and \
                layer.name not in {n for _, n in plan.pairs}:
            plan.skipped[layer.name] = "no counterpart in a MobileNetV3 file"
    return plan


def perturbed_bases(kernel: np.ndarray, bases: int, rng: np.random.Generator) -> np.ndarray:
    """[bases, *kernel.shape]: ``kernel * (1 + PERTURBATION * z)``, z ~ N(0, 1) per element."""
    noise = rng.standard_normal((bases, *kernel.shape)).astype(np.float32)
    return (kernel[None] * (1.0 + PERTURBATION * noise)).astype(np.float32)


def _init_network(layout: _FileLayout, target: _Target, classes: int,
                  rng: np.random.Generator) -> NetworkInit:
    """Check the whole network fits the file, let keras read it, copy it into ours."""
    reference = keras_app(target.arch, target.width, classes)
    in_file = layout.aligned(reference)
    plan = _plan(reference, in_file, target.model, target.prefix)
    if plan.mismatch:
        raise UserError(_mismatch_message(layout, target, plan.mismatch, in_file, classes))
    # keras reads the file into a model with the file's own top: none, or its class count.
    file_classes = in_file["logits"][1][0] if "logits" in in_file else None  # bias: [classes]
    reader = reference
    if file_classes != classes:
        reader = keras_app(target.arch, target.width, file_classes)
    try:
        reader.load_weights(layout.path)
    except (ValueError, KeyError, OSError, TypeError) as e:
        raise UserError(f"{layout.path}: keras could not load it into "
                        f"{KERAS_APPS[target.arch]} alpha {target.width}: {first_line(e)}") from None
    loaded, perturbed = [], []
    for keras_name, our_name in plan.pairs:
        values = reader.get_layer(keras_name).get_weights()
        layer = target.model.get_layer(our_name)
        if isinstance(layer, (BasisConv1x1, BasisDepthwiseConv2D)):
            values = [perturbed_bases(values[0], layer.bases, rng)]
            perturbed.append(our_name)
        elif isinstance(layer, keras.layers.Dense):
            values[0] = values[0].reshape(values[0].shape[2:])  # [1, 1, C, N] -> [C, N]
        layer.set_weights(values)
        loaded.append(our_name)
    return NetworkInit(target.network, tuple(loaded), tuple(perturbed), dict(plan.skipped))


def _difference(theirs: Shapes | None, mine: Shapes | None) -> tuple[str, str]:
    """The first tensor shapes that differ, as text: (the file's, ours)."""
    if theirs is None or mine is None:
        def first(shapes):
            return str(shapes[0]) if shapes else "no such layer"
        return first(theirs), first(mine)
    if len(theirs) != len(mine):
        return f"{len(theirs)} tensors", f"{len(mine)} tensors"
    i = next(i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b)
    return str(theirs[i]), str(mine[i])


def _mismatch_message(layout: _FileLayout, target: _Target, mismatch: tuple, in_file: dict,
                      classes: int) -> str:
    keras_name, our_name, theirs, mine = mismatch
    file_shape, our_shape = _difference(theirs, mine)
    return (f"{layout.path}: layer {keras_name} does not fit the {target.network} model's "
            f"{our_name}: the file has {file_shape}, {target.flag} {target.width} needs "
            f"{our_shape}; {_width_hint(layout, target, in_file, classes)}")


def _width_hint(layout: _FileLayout, target: _Target, in_file: dict, classes: int) -> str:
    """Which width the file matches: the alpha its last block's channels imply, checked by
    letting keras build that alpha and our table build that width."""
    blocks = ARCHS[target.arch].blocks
    last = in_file.get(f"expanded_conv_{len(blocks) - 1}_project")
    if not last:
        return f"it is not a {KERAS_APPS[target.arch]} file at any alpha"
    alpha = round(last[0][-1] / blocks[-1].out * 20) / 20  # keras alphas: 0.05 steps cover all
    probe = keras_app(target.arch, alpha, classes)
    probe_file = layout.aligned(probe)
    if any(probe_file.get(x.name) != tuple(tuple(w.shape) for w in x.weights)
           for x in probe.layers if x.weights and x.name not in TOP):
        return (f"its last block has {last[0][-1]} channels (alpha about {alpha}), yet it is "
                f"no keras.applications {KERAS_APPS[target.arch]} at that alpha")
    plain = build_plain(target.arch, alpha, 32, classes, PlainStyle(prefix=target.prefix))
    plan = _plan(probe, probe_file, plain, target.prefix)
    if plan.mismatch:
        _, name, theirs, mine = plan.mismatch
        file_shape, our_shape = _difference(theirs, mine)
        return (f"the file is {KERAS_APPS[target.arch]} alpha {alpha}, which no {target.flag} "
                f"reproduces (at {alpha} our {name} is {our_shape}, the file's {file_shape})")
    presets = [name for name, p in PRESETS.items() if getattr(p, target.width_key) == alpha
               and (p.light_arch if target.network == "lightweight" else p.specialist_arch)
               == target.arch]
    also = f" (as the {', '.join(presets)} preset does)" if presets else ""
    return (f"the file is {KERAS_APPS[target.arch]} alpha {alpha}: train with {target.flag} "
            f"{alpha}{also}")


def init_from_file(net, path, seed: int = 0) -> PretrainedInit:
    """Load one keras.applications MobileNetV3 weights file into ``net`` (a BasisNet): every
    network of the file's variant, which must fit it; the others are left as they are."""
    layout = read_layout(path)
    variant = _variant(layout)
    targets = _targets(net)
    if variant not in {t.arch for t in targets}:
        raise UserError(f"{layout.path}: a {variant} weights file, but neither network of "
                        f"--backbone {net.cfg.backbone} is {variant}")
    rng = np.random.default_rng(seed)
    networks = tuple(
        _init_network(layout, t, net.cfg.num_classes, rng) if t.arch == variant
        else NetworkInit(t.network, not_loaded=f"it is {t.arch}, the file {variant}")
        for t in targets)
    return PretrainedInit(str(path), variant, layout.format, networks)


def init_from_files(net, paths, seed: int = 0) -> tuple[PretrainedInit, ...]:
    """:func:`init_from_file` for each path; at most one file per variant (each is checked
    before any is loaded)."""
    first = {}
    for path in paths:
        variant = _variant(read_layout(path))
        if variant in first:
            raise UserError(f"{path}: a second {variant} file after {first[variant]}; give one "
                            "--init-from file per variant")
        first[variant] = path
    return tuple(init_from_file(net, path, seed) for path in paths)
