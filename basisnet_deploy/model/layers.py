"""Keras layers for the specialist's non-shared convolutions.

A basis layer holds K kernels with the shape a plain Keras ``Conv2D`` / ``DepthwiseConv2D``
would have (``kernel[k]`` is exactly such a kernel), and mixes them with the coefficients the
lightweight model produced for its block:

    W(x) = sum_k alpha[l, k](x) * W[k]

Two synthesis modes:
- ``sample``: every sample of a batch gets its own kernel (training, batch-equals-per-sample).
  1x1 convs become one batched einsum; the depthwise conv is a sum over its k*k taps of
  shifted inputs times per-sample tap weights. No Python loop over the batch.
- ``batch``: one kernel for the whole batch, from the first row of the coefficients; the graph
  is then an ordinary conv whose filter is a runtime tensor (the coefficient-input export).
"""

from __future__ import annotations


import keras
import tensorflow as tf

SYNTHESIS_MODES = ("sample", "batch")


class _BasisLayer(keras.layers.Layer):
    def __init__(self, bases: int, slot: int, synthesis: str = "sample",
                 kernel_range: float | None = None, **kwargs):
        super().__init__(**kwargs)
        if synthesis not in SYNTHESIS_MODES:
            raise ValueError(f"synthesis must be one of {SYNTHESIS_MODES}, got {synthesis!r}")
        self.bases, self.slot, self.synthesis = bases, slot, synthesis
        # Symmetric int8 range for the synthesized kernel (full-int8 export): coefficients are
        # convex, so |sum_k a_k W_k| <= max_k |W_k| element-wise and this bound always holds.
        self.kernel_range = kernel_range

    def _kernel_shape(self, channels: int) -> tuple[int, ...]:
        raise NotImplementedError

    def build(self, x_shape, coefficients_shape=None):
        self.kernel = self.add_weight(
            name="kernel", shape=(self.bases, *self._kernel_shape(int(x_shape[-1]))),
            initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal"))

    def mixed_kernel(self, coefficients):
        """The synthesized kernel(s): [B, *kernel] in sample mode, [*kernel] in batch mode."""
        if self.synthesis == "batch":
            # The first frame's row, as SLICE + RESHAPE: an indexing slice would become a
            # STRIDED_SLICE with shrink_axis_mask, which LiteRT's GPU accelerator refuses.
            alpha = tf.reshape(tf.slice(coefficients, [0, self.slot, 0], [1, 1, self.bases]),
                               (1, self.bases))
            # A 2-D [1, K] x [K, P] matmul: TFLite runs it as FULLY_CONNECTED (a 1-D
            # tensordot becomes a BATCH_MATMUL the converter rejects).
            flat = tf.reshape(self.kernel, (self.bases, -1))
            w = tf.reshape(tf.matmul(alpha, flat), self.kernel.shape[1:])
            if self.kernel_range:
                w = tf.quantization.fake_quant_with_min_max_args(
                    w, -self.kernel_range, self.kernel_range, num_bits=8, narrow_range=True)
            return w
        return tf.tensordot(coefficients[:, self.slot, :], self.kernel, axes=1)

    def get_config(self):
        return {**super().get_config(), "bases": self.bases, "slot": self.slot,
                "synthesis": self.synthesis, "kernel_range": self.kernel_range}


class BasisConv1x1(_BasisLayer):
    """Pointwise conv with K basis kernels of shape [1, 1, C_in, C_out]."""

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters

    def _kernel_shape(self, channels):
        return (1, 1, channels, self.filters)

    def call(self, x, coefficients):
        w = self.mixed_kernel(coefficients)
        if self.synthesis == "batch":
            return tf.nn.conv2d(x, w, strides=1, padding="SAME")
        return tf.einsum("bhwi,bio->bhwo", x, w[:, 0, 0])

    def compute_output_shape(self, x_shape, coefficients_shape=None):
        return (*x_shape[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


class BasisDepthwiseConv2D(_BasisLayer):
    """Depthwise conv (multiplier 1, SAME padding) with K basis kernels of shape [k, k, C, 1]."""

    def __init__(self, kernel_size: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size, self.strides = kernel_size, strides

    def _kernel_shape(self, channels):
        return (self.kernel_size, self.kernel_size, channels, 1)

    def call(self, x, coefficients):
        w = self.mixed_kernel(coefficients)
        stride = (1, self.strides, self.strides, 1)
        if self.synthesis == "batch":
            return tf.nn.depthwise_conv2d(x, w, stride, "SAME")
        return _per_sample_depthwise(x, w[..., 0], self.kernel_size, self.strides)

    def compute_output_shape(self, x_shape, coefficients_shape=None):
        def down(n):
            return None if n is None else -(-n // self.strides)
        return (x_shape[0], down(x_shape[1]), down(x_shape[2]), x_shape[3])

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "strides": self.strides}


def _same_padding(size, kernel: int, stride: int):
    """TF's SAME padding (before, after): the extra pixel goes after."""
    out = (size + stride - 1) // stride
    total = tf.maximum((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def _per_sample_depthwise(x, w, kernel: int, stride: int):
    """Depthwise conv with a different [k, k, C] kernel per sample: w is [B, k, k, C].

    A sum over the k*k taps of strided shifts of x times that tap's per-sample weights. On CPU
    this trains ~2.5x faster than folding the batch into channels for one depthwise_conv2d,
    whose filter gradient over B*C channels is slow.
    """
    shape = tf.shape(x)
    top, bottom, out_h = _same_padding(shape[1], kernel, stride)
    left, right, out_w = _same_padding(shape[2], kernel, stride)
    xp = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
    y = 0.0
    for i in range(kernel):
        for j in range(kernel):
            tap = tf.strided_slice(xp, [0, i, j, 0],
                                   [shape[0], i + (out_h - 1) * stride + 1,
                                    j + (out_w - 1) * stride + 1, shape[3]],
                                   [1, stride, stride, 1])
            y += tap * w[:, i, j][:, None, None, :]
    return y


def hard_swish_decomposed(x):
    """hard_swish(x) = x * relu6(x + 3) / 6, in a form TFLite does not fuse into HARD_SWISH.

    ai-edge-litert 2.3's XNNPACK delegate does not take int8 HARD_SWISH: each one splits the
    graph and runs on the builtin kernel, which made full-int8 MobileNetV3 slower than float
    (benchmarks/int8_hardswish.py). Written this way the converter emits ADD (with a fused
    RELU6), MUL, MUL, which XNNPACK runs in int8; ``x * relu6(x + 3) / 6`` is fused back.
    """
    return (x * (1.0 / 6.0)) * keras.ops.relu6(x + 3.0)


def activation(name: str, hard_swish=None):
    """Keras activation for a block-table nonlinearity code; ``hard_swish`` is the function
    for "HS" (default ``keras.activations.hard_swish``, which TFLite fuses into HARD_SWISH;
    :func:`hard_swish_decomposed` spells it out with the same weights)."""
    if name == "RE":
        return keras.activations.relu
    if name == "RE6":
        return keras.activations.relu6
    if name == "HS":
        return hard_swish or keras.activations.hard_swish
    raise ValueError(f"unknown nonlinearity {name!r}")
