"""``train --init-from``: keras.applications MobileNetV3 weights files into a BasisNet.

The files are made here from ``keras.applications`` with random weights (no download). TINY's
width 0.35 cannot match one: Keras keeps the stem at 16 channels where our table scales it
to 8, so FIT uses width 0.75, where Keras' rounding and ours give the same channels
everywhere (as at 1.0; docs/training.md "Starting from pretrained weights").
"""

import dataclasses

import h5py
import keras
import numpy as np
import pytest

from basisnet_deploy.common.errors import UserError
from basisnet_deploy.data import Preprocessing, digits
from basisnet_deploy.model.config import ArchConfig, TrainSettings
from basisnet_deploy.model.layers import BasisConv1x1, BasisDepthwiseConv2D
from basisnet_deploy.model.network import BasisNet
from basisnet_deploy.model.pretrained import (PERTURBATION, init_from_file, init_from_files,
                                              keras_app, layer_table)

FIT = ArchConfig(bases=3, nonshared=(8, 15), width=0.75, resolution=32, light_width=0.75,
                 light_resolution=16, num_classes=10, bn_momentum=0.9)
# Training runs: the specialist fits the Large file; a small LM and few bases keep it quick.
RUN = dataclasses.replace(FIT, bases=2, nonshared=(12, 15), light_width=0.35, resolution=16)
BASIS = (BasisConv1x1, BasisDepthwiseConv2D)


def _random_app(arch: str, alpha: float, classes: int | None, seed: int) -> keras.Model:
    """A keras.applications MobileNetV3 whose every weight is random, BN statistics included
    (Keras starts them at 0 and 1, which a copy that forgot them would also show)."""
    keras.utils.set_random_seed(seed)
    model = keras_app(arch, alpha, classes)
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "moving_variance" in w.path or w.path.endswith("gamma"):
            w.assign(rng.uniform(0.5, 2.0, w.shape).astype("float32"))
        elif "moving_mean" in w.path or w.path.endswith(("beta", "bias")):
            w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))
    return model


def _save_legacy(model: keras.Model, path) -> None:
    """The legacy layout keras.applications' downloads use (tf.keras' save_weights to .h5),
    written by Keras' own legacy writer (Keras 3 writes only .weights.h5 itself)."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Large 0.75 with our 10 classes (Keras 3 format), Small 0.75 with 1000 (legacy .h5)."""
    folder = tmp_path_factory.mktemp("pretrained")
    large = _random_app("mv3-large", 0.75, 10, seed=1)
    large.save_weights(folder / "large.weights.h5")
    small = _random_app("mv3-small", 0.75, 1000, seed=2)
    _save_legacy(small, folder / "small.h5")
    return {"large": (folder / "large.weights.h5", large), "small": (folder / "small.h5", small)}


@pytest.fixture(scope="module")
def loaded(files):
    """A FIT BasisNet after --init-from both files: (net, its weights before, results)."""
    keras.utils.set_random_seed(0)
    net = BasisNet(FIT)
    before = {w.path: w.numpy().copy() for w in net.weights}
    results = init_from_files(net, [files["large"][0], files["small"][0]], seed=0)
    return net, before, results


def _pairs(model: keras.Model, app: keras.Model, prefix: str, blocks: int):
    """(our layer, the Keras layer it came from) for every Keras layer with weights."""
    table = layer_table(blocks)
    for layer in app.layers:
        if layer.weights:
            yield model.get_layer(f"{prefix}_{table[layer.name]}"), layer


def test_shared_layers_hold_the_files_tensors_exactly(loaded, files):
    net, _, _ = loaded
    checked = 0
    for ours, theirs in _pairs(net.specialist, files["large"][1], "sp", 15):
        if isinstance(ours, BASIS):
            continue
        for mine, want in zip(ours.get_weights(), theirs.get_weights()):
            assert np.array_equal(mine, want.reshape(mine.shape)), ours.name
        checked += 1
    assert checked == 110 - 24  # every layer but the 24 basis layers of L8-L15, logits included
    lm_checked = 0
    for ours, theirs in _pairs(net.lightweight, files["small"][1], "lm", 11):
        if ours.name == "lm_logits":
            continue  # 1000 classes in the file, 10 here: checked below
        for mine, want in zip(ours.get_weights(), theirs.get_weights()):
            assert np.array_equal(mine, want), ours.name
        lm_checked += 1
    assert lm_checked > 50


def test_bn_moving_statistics_are_copied(loaded, files):
    net, before, _ = loaded
    bn, source = net.specialist.get_layer("sp_L10_expand_bn"), files["large"][1]
    mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    assert np.array_equal(mean, source.get_layer("expanded_conv_9_expand_bn").moving_mean.numpy())
    assert np.array_equal(var, source.get_layer("expanded_conv_9_expand_bn").moving_variance.numpy())
    assert not np.array_equal(var, before[bn.moving_variance.path])  # init is all ones


def test_every_basis_is_close_to_the_files_kernel_but_distinct(loaded, files):
    net, _, results = loaded
    perturbed = 0
    for ours, theirs in _pairs(net.specialist, files["large"][1], "sp", 15):
        if not isinstance(ours, BASIS):
            continue
        kernel, bases = theirs.get_weights()[0], ours.kernel.numpy()
        assert bases.shape == (FIT.bases, *kernel.shape)
        nonzero = kernel != 0
        for k in range(FIT.bases):
            ratio = bases[k][nonzero] / kernel[nonzero]
            assert np.abs(ratio - 1).max() < 8 * PERTURBATION, (ours.name, k)  # close
            assert np.abs(ratio - 1).mean() > PERTURBATION / 4, (ours.name, k)  # not a copy
            for j in range(k):
                assert not np.allclose(bases[k], bases[j], rtol=0, atol=1e-7), (ours.name, k, j)
        perturbed += 1
    assert perturbed == 24
    specialist = results[0].networks[1]
    assert specialist.network == "specialist" and len(specialist.perturbed) == 24


def test_the_result_says_what_loaded_and_what_kept_its_init(loaded):
    net, before, (large, small) = loaded
    assert large.variant == "mv3-large" and large.format == "keras 3 .weights.h5"
    light, specialist = large.networks
    assert "mv3-small" in light.not_loaded and not light.loaded
    assert len(specialist.loaded) == 110 and specialist.skipped == {}
    assert small.variant == "mv3-small" and small.format == "legacy .h5"
    light = small.networks[0]
    assert light.skipped["lm_logits"] == "the file has 1000 classes, this run 10"
    assert "no counterpart" in light.skipped["lm_coefficient_logits"]
    for name in ("lm_logits", "lm_coefficient_logits"):  # kept exactly their initial weights
        for w in net.lightweight.get_layer(name).weights:
            assert np.array_equal(w.numpy(), before[w.path]), w.path
    assert "lm_logits: the file has 1000 classes" in small.summary()
    assert small.to_json()["networks"][0]["skipped"]["lm_logits"].startswith("the file has")


def test_a_file_without_the_top_leaves_the_head_at_init(tmp_path):
    path = tmp_path / "notop.weights.h5"
    _random_app("mv3-large", 0.75, None, seed=3).save_weights(path)
    net = BasisNet(FIT)
    head = net.specialist.get_layer("sp_head1").get_weights()[0].copy()
    specialist = init_from_file(net, path).networks[1]
    assert set(specialist.skipped) == {"sp_head1", "sp_logits"}
    assert "without the top" in specialist.skipped["sp_head1"]
    assert np.array_equal(net.specialist.get_layer("sp_head1").get_weights()[0], head)


def test_a_file_of_another_width_names_the_first_layer_that_does_not_fit(tmp_path, loaded):
    path = tmp_path / "large-1.0.weights.h5"
    keras_app("mv3-large", 1.0, 1000).save_weights(path)
    net, _, _ = loaded
    with pytest.raises(UserError) as e:
        init_from_file(net, path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    # At 0.75 and 1.0 the first 3 blocks have the same channels; L4's project is 32 vs 40.
    assert "layer expanded_conv_3_project does not fit the specialist model's sp_L4_project" in message
    assert "(1, 1, 72, 40)" in message and "(1, 1, 72, 32)" in message
    assert "alpha 1.0: train with --width 1.0" in message


@pytest.mark.parametrize("make, match", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_text("not weights"), "not an HDF5 file"),
    (lambda p: keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(p),
     "not a MobileNetV3 weights file"),
])
def test_a_file_that_is_no_mobilenet_v3_is_one_line(tmp_path, loaded, make, match):
    path = tmp_path / "x.weights.h5"
    make(path)
    with pytest.raises(UserError, match=match) as e:
        init_from_file(loaded[0], path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_two_files_of_one_variant_are_refused(files, loaded):
    path = files["large"][0]
    with pytest.raises(UserError, match="a second mv3-large file"):
        init_from_files(loaded[0], [path, path])


class _Notes:
    """A progress callback that keeps the one-off messages train() sends."""

    def __init__(self):
        self.lines = []

    def __call__(self, step, total, logs):
        pass

    def note(self, line):
        self.lines.append(line)


def test_a_fresh_run_loads_the_file_and_records_it(files):
    from basisnet_deploy.training.trainer import RunOptions, train

    ds, pre = digits().subset(range(60)), Preprocessing(resize="squash")
    settings = TrainSettings(epochs=1, batch_size=32, seed=5)  # 48 training images: one step
    notes = _Notes()
    result = train(ds, RUN, pre, settings, notes, RunOptions(init_from=(str(files["large"][0]),)))
    (init,) = result.metrics["init_from"]
    assert init["ignored"] is None and init["variant"] == "mv3-large"
    assert len(init["networks"][1]["loaded"]) == 110 and len(init["networks"][1]["perturbed"]) == 12
    assert notes.lines == [init["summary"]] and "specialist 110 layers" in init["summary"]
    assert result.config.training["init_from"] == result.metrics["init_from"]


def test_a_resumed_run_ignores_the_file(files):
    """train() calls this with the epochs its resume state restored: >0 keeps those weights.
    (An interrupted-and-resumed run is tests/test_stream.py's, at two training runs' cost.)"""
    from basisnet_deploy.training.trainer import _initialize

    net, notes = BasisNet(RUN), _Notes()
    before = [w.numpy().copy() for w in net.weights]
    (init,) = _initialize(net, (str(files["large"][0]),), 0, 3, notes)
    assert init.ignored == "the run resumed after epoch 3 and its saved weights win"
    assert init.networks == () and notes.lines == [init.summary()] and "ignored" in init.summary()
    assert all(np.array_equal(w.numpy(), b) for w, b in zip(net.weights, before))
    assert _initialize(net, (), 0, 0, notes) == ()


def test_cli_bad_init_file_is_one_error_line_and_writes_nothing(tmp_path, capsys):
    from basisnet_deploy.cli import main

    bad, out = tmp_path / "weights.h5", tmp_path / "ckpt"
    bad.write_bytes(b"\x89HDF-not-really")
    with pytest.raises(SystemExit) as code:
        main(["train", "--out", str(out), "--epochs", "1", "--bases", "2", "--width", "0.35",
              "--light-width", "0.35", "--resolution", "16", "--light-resolution", "16",
              "--init-from", str(bad)])
    err = capsys.readouterr().err
    assert code.value.code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {bad}: not an HDF5 file, so not a Keras weights file; --init-from "
                      "reads a Keras MobileNetV3 weights file: the .h5 keras.applications "
                      "downloads, or a Keras 3 .weights.h5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.h5"]
