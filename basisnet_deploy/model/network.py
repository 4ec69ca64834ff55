"""Keras builders for the lightweight model, the specialist and plain MobileNets.

Every network is built from :func:`basisnet_deploy.model.arch.resolve`, so it has exactly the
channels the cost model counts. Layers are named ``<prefix>_L<i>_<part>`` (the paper's block
numbering) so checkpoints, BN folding and exporters can find a block's weights by name.

Every builder takes ``hard_swish``, the function its "HS" nonlinearities use (as timm's
``act_layer``): None for ``keras.activations.hard_swish``, or
:func:`basisnet_deploy.model.layers.hard_swish_decomposed`. The form changes the graph, not
the weights.

Shapes of the two stages (B = batch, L = non-shared blocks, K = bases):
- lightweight: image [B, r, r, 3] -> {"logits": [B, classes], "coefficients": [B, L, K]};
  coefficients are a softmax over K for each block.
- specialist: image [B, R, R, 3], coefficients [B, L, K] -> logits [B, classes].
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from basisnet_deploy.model.arch import Resolved, ResolvedBlock, resolve
from basisnet_deploy.model.config import ArchConfig
from basisnet_deploy.model.layers import BasisConv1x1, BasisDepthwiseConv2D, activation

LIGHT_PREFIX = "lm"
SPECIALIST_PREFIX = "sp"


class LayerBuilder:
    """Functional-API helpers that share a name prefix and a BN momentum."""

    def __init__(self, prefix: str, bn_momentum: float, hard_swish=None):
        self.prefix, self.momentum, self.hard_swish = prefix, bn_momentum, hard_swish

    def act(self, code: str):
        return activation(code, self.hard_swish)

    def name(self, *parts) -> str:
        return "_".join((self.prefix, *map(str, parts)))

    def bn(self, x, *parts):
        return keras.layers.BatchNormalization(
            momentum=self.momentum, epsilon=1e-3, name=self.name(*parts, "bn"))(x)

    def conv(self, x, filters, *parts, kernel=1, strides=1, bias=False):
        return keras.layers.Conv2D(filters, kernel, strides, padding="same", use_bias=bias,
                                   name=self.name(*parts))(x)

    def squeeze_excite(self, x, b: ResolvedBlock):
        s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=self.name(f"L{b.index}", "se_pool"))(x)
        s = keras.layers.Conv2D(b.se, 1, activation="relu", name=self.name(f"L{b.index}", "se_reduce"))(s)
        s = keras.layers.Conv2D(b.exp, 1, activation="hard_sigmoid",
                                name=self.name(f"L{b.index}", "se_expand"))(s)
        return keras.layers.Multiply(name=self.name(f"L{b.index}", "se_mul"))([x, s])

    def block(self, x, b: ResolvedBlock, coefficients=None, slot=0, bases=1, synthesis="sample"):
        """One inverted bottleneck. With ``coefficients`` its three kernels are basis mixes."""
        tag, act = f"L{b.index}", self.act(b.act)
        basis = dict(bases=bases, slot=slot, synthesis=synthesis)
        shortcut = x
        if b.has_expand:
            if coefficients is None:
                x = self.conv(x, b.exp, tag, "expand")
            else:
                x = BasisConv1x1(b.exp, name=self.name(tag, "expand"), **basis)(x, coefficients)
            x = keras.layers.Activation(act, name=self.name(tag, "expand_act"))(
                self.bn(x, tag, "expand"))
        if coefficients is None:
            x = keras.layers.DepthwiseConv2D(b.kernel, b.stride, padding="same", use_bias=False,
                                             name=self.name(tag, "depthwise"))(x)
        else:
            x = BasisDepthwiseConv2D(b.kernel, b.stride, name=self.name(tag, "depthwise"),
                                     **basis)(x, coefficients)
        x = keras.layers.Activation(act, name=self.name(tag, "depthwise_act"))(
            self.bn(x, tag, "depthwise"))
        if b.se:
            x = self.squeeze_excite(x, b)
        if coefficients is None:
            x = self.conv(x, b.out, tag, "project")
        else:
            x = BasisConv1x1(b.out, name=self.name(tag, "project"), **basis)(x, coefficients)
        x = self.bn(x, tag, "project")
        if b.residual:
            x = keras.layers.Add(name=self.name(tag, "add"))([shortcut, x])
        return x

    def trunk(self, image, net: Resolved, coefficients=None, nonshared=(), bases=1,
              synthesis="sample"):
        """Stem, blocks and head convs; returns the flat feature vector before the classifier."""
        x = self.conv(image, net.stem_channels, "stem", kernel=3, strides=2)
        x = keras.layers.Activation(self.act(net.arch.stem_act), name=self.name("stem_act"))(
            self.bn(x, "stem"))
        slots = {idx: slot for slot, idx in enumerate(nonshared)}
        for b in net.blocks:
            if b.index in slots:
                x = self.block(x, b, coefficients, slots[b.index], bases, synthesis)
            else:
                x = self.block(x, b)
        pooled = False
        for i, h in enumerate(net.head):
            if h.pooled and not pooled:
                x = keras.layers.GlobalAveragePooling2D(keepdims=True, name=self.name("pool"))(x)
                pooled = True
            x = self.conv(x, h.channels, f"head{i}", bias=not h.bn)
            if h.bn:
                x = self.bn(x, f"head{i}")
            x = keras.layers.Activation(self.act(h.act), name=self.name(f"head{i}_act"))(x)
        if not pooled:
            x = keras.layers.GlobalAveragePooling2D(keepdims=True, name=self.name("pool"))(x)
        return keras.layers.Flatten(name=self.name("features"))(x)

    def classifier(self, features, classes, dropout, *parts):
        x = keras.layers.Dropout(dropout, name=self.name(*parts, "dropout"))(features)
        return keras.layers.Dense(classes, name=self.name(*parts))(x)


def build_lightweight(cfg: ArchConfig, hard_swish=None) -> keras.Model:
    net = resolve(cfg.light_arch, cfg.light_width, cfg.light_resolution)
    bld = LayerBuilder(LIGHT_PREFIX, cfg.bn_momentum, hard_swish)
    image = keras.Input((cfg.light_resolution, cfg.light_resolution, 3), name="image")
    features = bld.trunk(image, net)
    logits = bld.classifier(features, cfg.num_classes, cfg.dropout, "logits")
    n_blocks = len(cfg.nonshared_blocks)
    coeff = bld.classifier(features, n_blocks * cfg.bases, cfg.dropout, "coefficient_logits")
    coeff = keras.layers.Reshape((n_blocks, cfg.bases), name=bld.name("coefficient_reshape"))(coeff)
    coeff = keras.layers.Softmax(axis=-1, name=bld.name("coefficients"))(coeff)
    return keras.Model(image, {"logits": logits, "coefficients": coeff}, name="lightweight")


def build_specialist(cfg: ArchConfig, synthesis: str = "sample", hard_swish=None) -> keras.Model:
    net = resolve(cfg.specialist_arch, cfg.width, cfg.resolution)
    bld = LayerBuilder(SPECIALIST_PREFIX, cfg.bn_momentum, hard_swish)
    image = keras.Input((cfg.resolution, cfg.resolution, 3), name="image")
    n_blocks = len(cfg.nonshared_blocks)
    coefficients = keras.Input((n_blocks, cfg.bases), name="coefficients")
    features = bld.trunk(image, net, coefficients, cfg.nonshared_blocks, cfg.bases, synthesis)
    logits = bld.classifier(features, cfg.num_classes, cfg.dropout, "logits")
    return keras.Model([image, coefficients], logits, name="specialist")


@dataclass(frozen=True)
class PlainStyle:
    """Names and training-time settings of a plain network (they do not change its shape)."""

    prefix: str = SPECIALIST_PREFIX
    dropout: float = 0.0
    bn_momentum: float = 0.99


def build_plain(arch: str, width: float, resolution: int, classes: int,
                style: PlainStyle = PlainStyle(), hard_swish=None) -> keras.Model:
    """A plain MobileNet of the same table: the specialist's static-weight shape, or a baseline.

    With the specialist's prefix its layer names match the specialist's, so a synthesized
    kernel (or basis k) can be copied into it by name.
    """
    net = resolve(arch, width, resolution)
    bld = LayerBuilder(style.prefix, style.bn_momentum, hard_swish)
    image = keras.Input((resolution, resolution, 3), name="image")
    logits = bld.classifier(bld.trunk(image, net), classes, style.dropout, "logits")
    return keras.Model(image, logits, name=f"plain_{arch}")


def build_plain_specialist(cfg: ArchConfig, hard_swish=None) -> keras.Model:
    return build_plain(cfg.specialist_arch, cfg.width, cfg.resolution, cfg.num_classes,
                       PlainStyle(dropout=cfg.dropout, bn_momentum=cfg.bn_momentum), hard_swish)


class BasisNet:
    """The two stages of one BasisNet, built from one :class:`ArchConfig`."""

    def __init__(self, cfg: ArchConfig):
        self.cfg = cfg
        self.lightweight = build_lightweight(cfg)
        self.specialist = build_specialist(cfg)

    @property
    def weights(self) -> list:
        return [*self.lightweight.weights, *self.specialist.weights]

    def __call__(self, light_image, image, training=False):
        """Both stages, the specialist fed the lightweight model's own coefficients."""
        light_image = tf.convert_to_tensor(light_image, tf.float32)
        image = tf.convert_to_tensor(image, tf.float32)
        out = self.lightweight(light_image, training=training)
        return out, self.specialist([image, out["coefficients"]], training=training)


def copy_basis_into_plain(specialist: keras.Model, plain: keras.Model, coefficients) -> None:
    """Write the synthesized kernels for one coefficient set [L, K] into ``plain``, and copy
    every shared weight by name. The plain model then computes the specialist for those
    coefficients, with ordinary static-weight layers."""
    coefficients = tf.convert_to_tensor(coefficients, tf.float32)
    for layer in specialist.layers:
        if not layer.weights:
            continue
        target = plain.get_layer(layer.name)
        if isinstance(layer, (BasisConv1x1, BasisDepthwiseConv2D)):
            mixed = tf.tensordot(coefficients[layer.slot], layer.kernel, axes=1)
            target.set_weights([mixed.numpy()])
        else:
            target.set_weights(layer.get_weights())
