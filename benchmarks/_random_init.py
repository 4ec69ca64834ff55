"""A random-init network whose activations look like a trained one's, for timing int8.

With Keras' default initializers and fresh BN statistics (mean 0, variance 1), activations
in MobileNetV3 shrink by orders of magnitude per block (to ~1e-6 by L8). Full-int8 timing of
such a network is meaningless: the tiny activation scales fail XNNPACK's int8 scale-ratio
checks, ops fall back to builtin kernels, and the graph splits into partitions a trained
network would not have. Setting each BN layer's moving statistics to the batch statistics of
its input on real images (a data-dependent initialization, in network order) keeps every
activation near unit scale, as training does.
"""

from __future__ import annotations

import numpy as np


def normalize_bn(model, feeds) -> None:
    """Set every BatchNormalization's moving mean/variance from ``feeds`` (model inputs)."""
    import keras

    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        x = np.asarray(keras.Model(model.inputs, layer.input)(feeds, training=False))
        axes = tuple(range(x.ndim - 1))
        layer.moving_mean.assign(x.mean(axis=axes))
        layer.moving_variance.assign(x.var(axis=axes) + 1e-3)


def max_activation(model, feeds) -> float:
    """The largest |activation| at the network's last Activation layer (a sanity check)."""
    import keras

    acts = [l for l in model.layers if isinstance(l, keras.layers.Activation)]
    return float(np.abs(np.asarray(keras.Model(model.inputs, acts[-1].output)(feeds))).max())
