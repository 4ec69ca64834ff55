"""Quantization-aware tuning of int8 weights (basisnet_deploy/quantization/weight_tuning.py): the lightweight
model's and the template's static kernels (the fidelity-int8-lm recipe).

The claims the recipe rests on: the tuned kernels lie on the per-channel int8 grid, so the
weight-only exporters (TFLite through ai-edge-quantizer, ONNX) write exactly them and the
exported model computes what the tuned Keras model computes; the step kept lowers the loss on
the held-back calibration images, or nearest rounding is kept; the specialist's basis stacks
are not tuned, and its tuned static kernels reach the template graph; the checkpoint's own
model is left untouched.
"""

import json

import numpy as np
import pytest

from basisnet_deploy.quantization.settings import WeightTuning, finite_loss as _finite
from basisnet_deploy.quantization.weight_tuning import channel_axis, tune_int8_weights

# Enough steps to move many kernels off their nearest rounding in seconds (the rate is in
# int8 steps per update: 40 updates of up to 0.05 step).
QUICK = WeightTuning(steps=40, learning_rate=0.05, batch=16)


@pytest.fixture(scope="module")
def tuned(ckpt):
    from basisnet_deploy.calibration.images import calibration_images
    from basisnet_deploy.data.preprocessing import preprocess
    from basisnet_deploy.model import checkpoint

    net, cfg = checkpoint.load(ckpt)
    images = calibration_images("digits", 32, seed=0).images
    light = np.stack([preprocess(im, cfg.architecture.light_resolution, cfg.preprocessing)
                      for im in images])
    before = [w.copy() for w in net.lightweight.get_weights()]
    return net, cfg, light, before, tune_int8_weights(net.lightweight, light, QUICK)


def _kernels(model, weights):
    return [(v, w) for v, w in zip(model.weights, weights) if v.path.endswith("kernel")]


def test_tuned_kernels_lie_on_the_per_channel_int8_grid(tuned):
    net, _, _, before, result = tuned
    lm = net.lightweight
    assert [w.shape for w in result.weights] == [w.shape for w in before]
    assert result.kernels == len(_kernels(lm, before)) > 0
    moved = 0
    for (var, new), (_, old) in zip(_kernels(lm, result.weights), _kernels(lm, before)):
        axis = channel_axis(var)
        reduce = tuple(a for a in range(new.ndim) if a != axis)
        scale = np.abs(new).max(axis=reduce, keepdims=True) / 127
        steps = new / np.where(scale > 0, scale, 1)
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-3, err_msg=var.path)
        assert np.abs(steps).max() <= 127 + 1e-3
        nearest = np.round(old / (np.abs(old).max(axis=reduce, keepdims=True) / 127))
        moved += int(np.sum(np.abs(np.round(steps) - nearest) > 0.5))
    assert moved > 0  # tuning chose other int8 values than nearest rounding for some weights
    # biases and batch-norm statistics are not tuned
    for var, new, old in zip(lm.weights, result.weights, before):
        if not var.path.endswith("kernel"):
            np.testing.assert_array_equal(new, old, err_msg=var.path)


def test_tuning_lowers_the_loss_it_reports_and_leaves_the_model_alone(tuned):
    net, _, _, before, result = tuned
    assert result.loss_tuned < result.loss_nearest and result.kept == "tuned" and result.best_step > 0
    assert result.held_back == 8  # a quarter of the 32 calibration images
    report = result.report()
    assert report["steps"] == QUICK.steps and report["kernels"] == result.kernels
    for now, then in zip(net.lightweight.get_weights(), before):
        np.testing.assert_array_equal(now, then)


@pytest.mark.parametrize("target", ["tflite", "onnx"])
def test_weight_only_export_of_tuned_weights_computes_the_tuned_model(tuned, target):
    """Were the exporter's grid another (per-tensor, another axis), it would round the tuned
    kernels again and its outputs would move by int8 steps, not float ulps."""
    from basisnet_deploy.converters import get_exporter
    from basisnet_deploy.export.pipeline import _graphs
    from basisnet_deploy.runtime.sessions import open_session

    net, cfg, light, _, result = tuned
    a = cfg.architecture
    baked = np.full((len(a.nonshared_blocks), a.bases), 1 / a.bases, np.float32)
    graph = _graphs(net, cfg, baked, tuned={"lightweight": result.weights})["lightweight"]
    ex = get_exporter(target)
    session = open_session(f"lm{ex.suffix}", model=ex.convert(graph, "weight_only"))
    want = graph.model(light, training=False)
    for i in range(8):
        got = session.run({"image": light[i:i + 1]})
        for name in ("logits", "coefficients"):
            ref = want[name].numpy()[i:i + 1]
            assert np.abs(got[name] - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max()), (name, i)


def test_tuning_that_overshoots_falls_back_to_nearest_rounding(tuned):
    """A rate far too high ruins the loss (100 int8 steps per update); the export must not
    get those weights, and the report stays valid JSON."""
    net, _, light, before, _ = tuned
    lm = net.lightweight
    result = tune_int8_weights(lm, light, WeightTuning(steps=10, learning_rate=100.0, batch=16))
    assert not result.loss_tuned < result.loss_nearest and result.kept == "nearest"
    json.dumps(result.report(), allow_nan=False)
    assert _finite(float("nan")) is None and _finite(1.23456789e-12) == 1.23457e-12
    for (var, new), (_, old) in zip(_kernels(lm, result.weights), _kernels(lm, before)):
        axis = channel_axis(var)
        reduce = tuple(a for a in range(old.ndim) if a != axis)
        scale = np.abs(old).max(axis=reduce, keepdims=True) / 127
        np.testing.assert_allclose(new, np.round(old / scale) * scale, rtol=0, atol=1e-7, err_msg=var.path)


def test_tuning_steps_out_of_place_are_refused_before_anything_runs(ckpt, tmp_path, capsys):
    from basisnet_deploy.cli import main
    from basisnet_deploy.common.errors import UserError
    from basisnet_deploy.export.pipeline import ExportOptions

    with pytest.raises(UserError, match="--tuning-steps -1"):
        ExportOptions(calibration="digits", int8_recipe="fidelity-int8-lm", tuning_steps=-1).validated()
    # where nothing is tuned the flag would be ignored: refused instead
    for recipe, quantize in (("full", "int8"), ("fidelity", "int8"), ("fidelity-int8-lm", "float32")):
        with pytest.raises(UserError, match="tunes no weights"):
            ExportOptions(calibration="digits", quantize=quantize, int8_recipe=recipe,
                          tuning_steps=5).validated()
    with pytest.raises(SystemExit) as code:
        main(["export", str(ckpt), "--calibration", "digits", "--int8-recipe", "fidelity-int8-lm",
              "--tuning-steps", "-1", "--out", str(tmp_path / "x")])
    assert code.value.code == 2 and "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def tuned_specialist(tuned):
    """The specialist's static kernels tuned as the fidelity-int8-lm template's are: on views
    of the calibration images with the float LM's coefficients for them (the views change the
    image input only)."""
    from basisnet_deploy.calibration.images import calibration_images
    from basisnet_deploy.quantization.weight_tuning import Augmentation
    from basisnet_deploy.data.preprocessing import preprocess

    net, cfg, light, _, _ = tuned
    images = calibration_images("digits", 32, seed=0).images
    image = np.stack([preprocess(im, cfg.architecture.resolution, cfg.preprocessing) for im in images])
    coefficients = net.lightweight(light, training=False)["coefficients"].numpy()
    before = [w.copy() for w in net.specialist.get_weights()]
    views = Augmentation(cfg.preprocessing.input_range)
    result = tune_int8_weights(net.specialist, [image, coefficients], QUICK, augmentation=views)
    assert result.report()["augmented_views"] and result.kernels > 0
    return before, result


def test_specialist_tuning_moves_static_kernels_only_and_reaches_the_template(tuned, tuned_specialist):
    """Basis stacks are mixed per image and rounded after mixing at run time, so tuning leaves
    them alone; the static kernels it tunes are what the template graph holds (the bug it
    catches: a template built from the checkpoint's specialist, the tuning lost)."""
    from basisnet_deploy.export.pipeline import _graphs

    net, cfg, _, _, _ = tuned
    before, result = tuned_specialist
    sp = net.specialist
    assert result.kept == "tuned" and result.loss_tuned < result.loss_nearest
    static = {v.path: new for v, new in zip(sp.weights, result.weights)
              if v.path.endswith("kernel") and new.ndim <= 4}
    assert result.kernels == len(static) > 0
    moved = 0
    for var, new, old in zip(sp.weights, result.weights, before):
        if var.path in static:
            moved += int(np.sum(new != old))
        else:  # basis stacks, biases, batch-norm statistics
            np.testing.assert_array_equal(new, old, err_msg=var.path)
    assert moved > 0
    a = cfg.architecture
    baked = np.full((len(a.nonshared_blocks), a.bases), 1 / a.bases, np.float32)
    plain = _graphs(net, cfg, baked, tuned={"specialist_presynth": result.weights})["specialist_presynth"].model
    untuned = _graphs(net, cfg, baked)["specialist_presynth"].model
    seen = set()
    for layer, reference in zip(plain.layers, untuned.layers):
        for var, got, was in zip(layer.weights, layer.get_weights(), reference.get_weights()):
            if var.path in static:
                np.testing.assert_array_equal(got, static[var.path], err_msg=var.path)
                seen.add(var.path)
            else:  # the synthesized kernels: the bases are the checkpoint's
                np.testing.assert_array_equal(got, was, err_msg=var.path)
    assert seen == set(static)


def test_split_holds_back_a_quarter_disjoint_from_the_images_tuned_on():
    from basisnet_deploy.quantization.weight_tuning import _split

    for count, held_back in ((200, 50), (16, 4), (7, 1), (2, 1)):
        fit, held = _split(count, seed=0)
        assert len(held) == held_back and len(fit) == count - held_back
        assert not set(fit) & set(held) and set(fit) | set(held) == set(range(count))
    fit, held = _split(1, seed=0)  # one image: tuned on and checked on, nothing held back
    assert list(fit) == list(held) == [0]


def test_augmented_views_are_seeded_in_range_and_mirror_left_right():
    """The views the tuning learns from (Augmentation): the same seed gives the same views (a
    tuning run repeats), values stay in the model's input range, and the mirror is left-right
    (an upside-down photo is a question the float model was never trained on). The bug each
    assert catches: an unseeded generator; unclipped contrast; a flip along the wrong axis."""
    from basisnet_deploy.quantization.weight_tuning import Augmentation, _Views

    images = np.random.default_rng(3).uniform(-1, 1, (6, 16, 16, 3)).astype(np.float32)
    default = Augmentation(input_range=(-1.0, 1.0))
    first, again = _Views(default, seed=0)(images).numpy(), _Views(default, seed=0)(images).numpy()
    np.testing.assert_array_equal(first, again)
    assert first.shape == images.shape and first.min() >= -1 and first.max() <= 1
    assert np.abs(first - images).max() > 0.1  # a view, not the image
    assert not np.array_equal(first, _Views(default, seed=1)(images).numpy())
    mirror = Augmentation(input_range=(-1.0, 1.0), flip=1.0, crop_area=(1.0, 1.0),
                          contrast=(1.0, 1.0), brightness=0.0)
    np.testing.assert_allclose(_Views(mirror, seed=0)(images).numpy(), images[:, :, ::-1], atol=1e-5)
    # another range: the shift is a share of it (0.1 of 255, not 0.1), and values stay in it
    pixels = (images + 1) * 127.5
    shifted = Augmentation(input_range=(0.0, 255.0), flip=0.0, crop_area=(1.0, 1.0),
                           contrast=(1.0, 1.0), brightness=0.1)
    moved = _Views(shifted, seed=0)(pixels).numpy()
    assert moved.min() >= 0 and moved.max() <= 255
    inside = (pixels > 30) & (pixels < 225)  # not clipped by any shift of up to 25.5
    assert np.abs(moved - pixels)[inside].max() > 5


def _stop_after(step_count: int):
    """A ``stop`` that asks to stop once it has been asked ``step_count`` times (once per step)."""
    asked = []

    def stop():
        asked.append(1)
        return "a test" if len(asked) == step_count else None
    return stop


def test_a_stopped_tuning_resumes_to_exactly_what_an_uninterrupted_one_gives(tuned, tmp_path):
    """The state saved when the tuning is stopped (offsets, Adam's moments, the best step so
    far, the batch and view generators) is enough to end where an uninterrupted run ends.
    Stopped after step 13, between two held-back checks (every 2 steps here)."""
    from basisnet_deploy.quantization.settings import Augmentation, TuningInterrupted

    net, cfg, light, _, _ = tuned
    views = Augmentation(cfg.preprocessing.input_range)
    whole = tune_int8_weights(net.lightweight, light, QUICK, augmentation=views)
    state = tmp_path / "state"
    with pytest.raises(TuningInterrupted, match=f"after step 13/40; .*saved in {state}"):
        tune_int8_weights(net.lightweight, light, QUICK, augmentation=views, resume=state,
                          stop=_stop_after(13))
    said = []
    resumed = tune_int8_weights(net.lightweight, light, QUICK, said.append, views, resume=state)
    assert "tuning int8 weights: resumed after step 13/40" in said
    assert resumed.resumed_from_step == 13 and whole.resumed_from_step == 0
    assert (resumed.best_step, resumed.loss_tuned, resumed.loss_nearest) == \
        (whole.best_step, whole.loss_tuned, whole.loss_nearest)
    assert whole.best_step > 13  # the step kept was chosen after the resume
    for a, b in zip(resumed.weights, whole.weights):
        np.testing.assert_array_equal(a, b)


def test_tuning_state_saved_with_other_settings_is_replaced_and_said(tuned, tmp_path):
    from basisnet_deploy.quantization.settings import TuningInterrupted

    net, _, light, _, _ = tuned
    state = tmp_path / "state"
    with pytest.raises(TuningInterrupted):
        tune_int8_weights(net.lightweight, light, QUICK, resume=state, stop=_stop_after(5))
    said = []
    other = WeightTuning(steps=QUICK.steps, learning_rate=QUICK.learning_rate, batch=QUICK.batch, seed=1)
    result = tune_int8_weights(net.lightweight, light, other, said.append, resume=state)
    assert result.resumed_from_step == 0
    assert any("other settings (tuning.seed: 0 -> 1); starting over" in line for line in said), said


def test_unreadable_tuning_state_is_replaced_keeping_files_it_did_not_write(tuned, tmp_path):
    from basisnet_deploy.quantization.settings import TuningInterrupted

    net, _, light, _, _ = tuned
    state = tmp_path / "state"
    with pytest.raises(TuningInterrupted):
        tune_int8_weights(net.lightweight, light, QUICK, resume=state, stop=_stop_after(5))
    (state / "run.json").write_text("")  # as a full disk could leave it
    (state / "notes.txt").write_text("mine")
    said = []
    with pytest.raises(TuningInterrupted):
        tune_int8_weights(net.lightweight, light, QUICK, said.append, resume=state, stop=_stop_after(3))
    assert any("run.json cannot be read" in line and "starting over" in line for line in said), said
    assert (state / "notes.txt").read_text() == "mine"
    assert tune_int8_weights(net.lightweight, light, QUICK, resume=state).resumed_from_step == 3


def test_forward_passes_in_batches_give_every_row_once_in_order(tuned):
    """The float outputs and held-back checks run FORWARD_BATCH images at a time (memory):
    the concatenated rows, the last partial batch included, are the model's outputs for
    every image, in order."""
    from basisnet_deploy.quantization.weight_tuning import FORWARD_BATCH, _in_batches

    net, _, light, _, _ = tuned
    rows = np.concatenate([light, light, light])[:FORWARD_BATCH * 2 + 5]
    whole = net.lightweight(rows, training=False)
    batched = _in_batches(lambda xs: dict(net.lightweight(xs[0], training=False)), [rows])
    assert set(batched) == set(whole)
    for key in whole:
        np.testing.assert_allclose(batched[key].numpy(), np.asarray(whole[key]), rtol=1e-5, atol=1e-6)
