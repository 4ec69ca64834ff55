"""The persistent specialist: the non-shared convs' kernels are inputs of the model.

One model serves every coefficient set. Each frame, the kernels synthesized from that frame's
coefficients are written into the model's kernel inputs, so no interpreter is created or
prepared per frame. Batch norm is folded: a kernel input is the mix of the BN-folded bases
(``converters.base.fold_bases``), and the folded bias is a constant of the graph.

Kernel inputs are named after their layer (``sp_L8_expand``) and laid out as TFLite stores a
static filter, so the folded bases mix straight into them:

- a 1x1 conv takes ``[C_out, C_in]`` (OHWI without its unit H and W) and runs as a matrix
  product over the pixels (TFLite ``FULLY_CONNECTED`` or ``BATCH_MATMUL`` with a runtime right-hand
  side, both of which XNNPACK runs in float32);
- a depthwise conv takes ``[1, k, k, C]`` (TFLite's depthwise filter layout).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from basisnet_deploy.model.arch import resolve
from basisnet_deploy.model.config import ArchConfig
from basisnet_deploy.model.layers import BasisConv1x1, BasisDepthwiseConv2D, activation
from basisnet_deploy.model.network import SPECIALIST_PREFIX, LayerBuilder

MATMUL_FORMS = ("fully_connected", "batch_matmul")
KERNEL_SUFFIX = "_kernel"  # Keras input name = layer name + this


class KernelInputConv1x1(keras.layers.Layer):
    """A 1x1 conv (stride 1, folded bias) whose kernel ``[C_out, C_in]`` is a second input."""

    def __init__(self, filters: int, matmul: str = "fully_connected", **kwargs):
        super().__init__(**kwargs)
        if matmul not in MATMUL_FORMS:
            raise ValueError(f"matmul must be one of {MATMUL_FORMS}, got {matmul!r}")
        self.filters, self.matmul = filters, matmul

    def build(self, x_shape, kernel_shape=None):
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, x, kernel):
        _, h, w, c = x.shape
        if self.matmul == "fully_connected":
            y = tf.matmul(tf.reshape(x, (h * w, c)), kernel, transpose_b=True)
        else:
            y = tf.matmul(tf.reshape(x, (1, h * w, c)), tf.reshape(kernel, (1, self.filters, c)),
                          adjoint_b=True)
        return tf.reshape(y + self.bias, (1, h, w, self.filters))

    def compute_output_shape(self, x_shape, kernel_shape=None):
        return (*x_shape[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "matmul": self.matmul}


class KernelInputDepthwise(keras.layers.Layer):
    """A depthwise conv (multiplier 1, SAME padding, folded bias) whose filter ``[1, k, k, C]``
    is a second input."""

    def __init__(self, kernel_size: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size, self.strides = kernel_size, strides

    def build(self, x_shape, kernel_shape=None):
        self.bias = self.add_weight(name="bias", shape=(int(x_shape[-1]),), initializer="zeros")

    def call(self, x, kernel):
        k, c = self.kernel_size, x.shape[-1]
        w = tf.reshape(kernel, (k, k, c, 1))
        y = tf.nn.depthwise_conv2d(x, w, (1, self.strides, self.strides, 1), "SAME")
        return y + self.bias

    def compute_output_shape(self, x_shape, kernel_shape=None):
        def down(n):
            return None if n is None else -(-n // self.strides)
        return (x_shape[0], down(x_shape[1]), down(x_shape[2]), x_shape[3])

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "strides": self.strides}


class _PersistentBuilder(LayerBuilder):
    """The specialist's trunk with the non-shared blocks' kernels as inputs."""

    def __init__(self, prefix: str, bn_momentum: float, matmul: str):
        super().__init__(prefix, bn_momentum)
        self.matmul = matmul
        self.kernel_inputs: dict[str, keras.KerasTensor] = {}

    def _input(self, name: str, shape: tuple[int, ...]):
        # Keras names must be unique, so the input is the layer's name + "_kernel"; the
        # exported signature names it after the layer (the key of its bases).
        self.kernel_inputs[name] = keras.Input(batch_shape=shape, name=name + KERNEL_SUFFIX)
        return self.kernel_inputs[name]

    def block(self, x, b, coefficients=None, *args, **kwargs):
        if coefficients is None:  # a shared block
            return super().block(x, b)
        tag, act = f"L{b.index}", activation(b.act)
        shortcut = x
        if b.has_expand:
            name = self.name(tag, "expand")
            kernel = self._input(name, (b.exp, int(x.shape[-1])))
            x = KernelInputConv1x1(b.exp, self.matmul, name=name)(x, kernel)
            x = keras.layers.Activation(act, name=self.name(tag, "expand_act"))(x)
        name = self.name(tag, "depthwise")
        kernel = self._input(name, (1, b.kernel, b.kernel, int(x.shape[-1])))
        x = KernelInputDepthwise(b.kernel, b.stride, name=name)(x, kernel)
        x = keras.layers.Activation(act, name=self.name(tag, "depthwise_act"))(x)
        if b.se:
            x = self.squeeze_excite(x, b)
        name = self.name(tag, "project")
        kernel = self._input(name, (b.out, int(x.shape[-1])))
        x = KernelInputConv1x1(b.out, self.matmul, name=name)(x, kernel)
        if b.residual:
            x = keras.layers.Add(name=self.name(tag, "add"))([shortcut, x])
        return x


def build_persistent_specialist(cfg: ArchConfig, matmul: str = "fully_connected") -> keras.Model:
    """The persistent specialist, batch 1: inputs ``image`` and one kernel per non-shared conv
    (named after the layer, TFLite filter layout); output the logits. Its weights are zeros:
    :func:`copy_into_persistent` fills them from a trained specialist."""
    net = resolve(cfg.specialist_arch, cfg.width, cfg.resolution)
    bld = _PersistentBuilder(SPECIALIST_PREFIX, cfg.bn_momentum, matmul)
    image = keras.Input(batch_shape=(1, cfg.resolution, cfg.resolution, 3), name="image")
    marker = object()  # any non-None value: the trunk passes it to the non-shared blocks
    features = bld.trunk(image, net, marker, cfg.nonshared_blocks, cfg.bases)
    logits = bld.classifier(features, cfg.num_classes, cfg.dropout, "logits")
    inputs = {"image": image, **{t.name: t for t in bld.kernel_inputs.values()}}
    return keras.Model(inputs, logits, name="specialist_persistent")


def kernel_input_shapes(model: keras.Model) -> dict[str, tuple[int, ...]]:
    """Layer name -> shape of its kernel input (the image input left out)."""
    return {t.name[: -len(KERNEL_SUFFIX)]: tuple(int(d) for d in t.shape)
            for t in model.inputs if t.name.endswith(KERNEL_SUFFIX)}


def persistent_feeds(image, kernels: dict) -> dict:
    """The model's call inputs from an image and {layer name: kernel}."""
    return {"image": image, **{name + KERNEL_SUFFIX: k for name, k in kernels.items()}}


def copy_into_persistent(specialist: keras.Model, persistent: keras.Model, folded: dict) -> None:
    """Fill ``persistent`` from a trained ``specialist``: every shared weight by name, and each
    non-shared conv's folded BN bias (``folded``: ``fold_bases(specialist)``)."""
    for layer in persistent.layers:
        if not layer.weights:
            continue
        if isinstance(layer, (KernelInputConv1x1, KernelInputDepthwise)):
            layer.set_weights([folded[layer.name].bias])
            continue
        source = specialist.get_layer(layer.name)
        if isinstance(source, (BasisConv1x1, BasisDepthwiseConv2D)):
            raise ValueError(f"{layer.name}: a basis layer has no plain counterpart")
        layer.set_weights(source.get_weights())
