import numpy as np
import pytest
import tensorflow as tf

from basisnet_deploy.model.layers import _per_sample_depthwise
from basisnet_deploy.model.network import (BasisNet, build_plain_specialist, build_specialist,
                                   copy_basis_into_plain)


def _randomize_bn(model, rng):
    for w in model.weights:
        if "moving" in w.path or w.path.endswith(("gamma", "beta")):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def nets():
    from tests.conftest import TINY

    rng = np.random.default_rng(0)
    net = BasisNet(TINY)
    _randomize_bn(net.specialist, rng)
    return net, build_plain_specialist(TINY), rng


def test_one_hot_synthesis_equals_a_plain_network(nets, tiny):
    net, plain, rng = nets
    x = rng.standard_normal((2, tiny.resolution, tiny.resolution, 3)).astype("float32")
    n_blocks, outputs = len(tiny.nonshared_blocks), []
    for k in range(tiny.bases):
        onehot = np.zeros((n_blocks, tiny.bases), np.float32)
        onehot[:, k] = 1
        copy_basis_into_plain(net.specialist, plain, onehot)
        ours = net.specialist([x, np.broadcast_to(onehot, (2, *onehot.shape))]).numpy()
        ref = plain(x).numpy()
        assert rel_err(ours, ref) <= 1e-5
        outputs.append(ours)
    # The bases really differ, so the check above could fail.
    assert rel_err(outputs[0], outputs[1]) > 1e-3


def test_batch_equals_per_sample(nets, tiny):
    net, _, rng = nets
    x = rng.standard_normal((5, tiny.resolution, tiny.resolution, 3)).astype("float32")
    coeff = rng.dirichlet(np.ones(tiny.bases), size=(5, len(tiny.nonshared_blocks))).astype("float32")
    batch = net.specialist([x, coeff]).numpy()
    single = np.concatenate([net.specialist([x[i:i + 1], coeff[i:i + 1]]).numpy() for i in range(5)])
    assert rel_err(batch, single) <= 1e-5
    assert rel_err(batch[0], batch[1]) > 1e-3


def test_batch_synthesis_mode_matches_sample_mode(nets, tiny):
    """The coefficient-input export graph (one kernel per batch) computes the same thing."""
    net, _, rng = nets
    batch_mode = build_specialist(tiny, synthesis="batch")
    batch_mode.set_weights(net.specialist.get_weights())
    x = rng.standard_normal((1, tiny.resolution, tiny.resolution, 3)).astype("float32")
    coeff = rng.dirichlet(np.ones(tiny.bases), size=(1, len(tiny.nonshared_blocks))).astype("float32")
    assert rel_err(batch_mode([x, coeff]).numpy(), net.specialist([x, coeff]).numpy()) <= 1e-5


@pytest.mark.parametrize("size,kernel,stride", [(4, 5, 2), (7, 3, 2), (5, 5, 1), (1, 5, 1), (8, 3, 2)])
def test_per_sample_depthwise_matches_tf_same_padding(size, kernel, stride):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((3, size, size, 4)).astype("float32")
    w = rng.standard_normal((3, kernel, kernel, 4)).astype("float32")
    ref = np.concatenate([tf.nn.depthwise_conv2d(x[i:i + 1], w[i][..., None], (1, stride, stride, 1),
                                                 "SAME").numpy() for i in range(3)])
    assert np.allclose(_per_sample_depthwise(x, w, kernel, stride).numpy(), ref, atol=1e-5)


def test_lightweight_outputs_softmax_coefficients(nets, tiny):
    net, _, rng = nets
    out = net.lightweight(rng.standard_normal((2, tiny.light_resolution, tiny.light_resolution, 3))
                          .astype("float32"))
    coeff = out["coefficients"].numpy()
    assert coeff.shape == (2, len(tiny.nonshared_blocks), tiny.bases)
    assert np.allclose(coeff.sum(-1), 1, atol=1e-5)
    assert out["logits"].shape == (2, tiny.num_classes)


def test_coefficient_warmup_and_basis_dropout():
    from basisnet_deploy.training.trainer import coefficient_schedule, regularize_coefficients

    alpha = tf.nn.softmax(tf.random.stateless_normal((64, 5, 8), seed=(1, 2)))
    assert np.allclose(regularize_coefficients(alpha, 1.0, 0.0, (0, 0)), 1 / 8)
    dropped = regularize_coefficients(alpha, 0.0, 0.5, (3, 4)).numpy()
    assert np.allclose(dropped.sum(-1), 1, atol=1e-5)  # renormalized
    assert (dropped > 0).sum(-1).min() >= 1  # at least one basis kept
    assert 0.3 < (dropped == 0).mean() < 0.7  # about half dropped
    eps = [float(coefficient_schedule(s, 1000, 0.1, 0.2)) for s in (0, 100, 200, 300, 900)]
    assert eps == pytest.approx([1.0, 1.0, 0.5, 0.0, 0.0])


def test_hard_swish_form_is_a_builder_argument(tiny):
    """Two forms built in one process, interleaved: each model keeps its own, same outputs."""
    import keras

    from basisnet_deploy.model.layers import hard_swish_decomposed
    from basisnet_deploy.model.network import build_lightweight
    from tests.conftest import TINY

    def forms(model):
        return {layer.activation for layer in model.layers
                if isinstance(layer, keras.layers.Activation)
                and layer.activation in (keras.activations.hard_swish, hard_swish_decomposed)}

    spelled = build_lightweight(TINY, hard_swish=hard_swish_decomposed)
    op = build_lightweight(TINY)
    spelled_again = build_plain_specialist(TINY, hard_swish=hard_swish_decomposed)
    assert forms(spelled) == {hard_swish_decomposed}
    assert forms(op) == {keras.activations.hard_swish}
    assert forms(spelled_again) == {hard_swish_decomposed}
    assert forms(build_plain_specialist(TINY)) == {keras.activations.hard_swish}
    op.set_weights(spelled.get_weights())
    x = np.random.default_rng(1).uniform(-1, 1, (2, TINY.light_resolution, TINY.light_resolution, 3))
    a, b = spelled(x.astype("float32")), op(x.astype("float32"))
    np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-4, atol=1e-5)


def test_no_hard_swish_switch_is_left_in_layers():
    from basisnet_deploy.model import layers

    assert not hasattr(layers, "decomposed_hard_swish") and not hasattr(layers, "_HARD_SWISH")
