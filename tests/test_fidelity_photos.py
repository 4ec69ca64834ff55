"""Int8 fidelity on real photographs, end to end through the CLI.

A small `demo`-preset BasisNet is trained on the real-photo fixture's training crops (90% of
720 crops, 20 epochs: on the held-out crops float LM 33% and specialist 46% top-1 against 8%
chance, benchmarks/results/photo_test_checkpoint/intel_20_epochs.json; at 10 epochs it was
near chance, and which crops sat on near-ties changed with the CPU: README there), exported to TFLite int8 with calibration on the training folder (the
full, fidelity and fidelity-int8-lm recipes), and each export is verified on the 240 held-out crops, which share no pixel with the training or
calibration crops. The claims: verification scores accuracy on held-out photos only; the
fidelity recipe meets the agreement targets (every artifact >= 99.5% top-1 agreement with the
float model, isolated and end to end; accuracy drop <= 0.5 point; template logits max_rel
<= 0.25; LM coefficients within 0.05), and agrees at least as often as full int8, which on
this checkpoint misses them by far; and fidelity-int8-lm, every
weight in int8, meets them too. Training is deterministic on one machine
(tests/test_train.py), not across CPUs; measured on a 2-core Intel Xeon, every fidelity,
fidelity-int8-lm and full-16x8 artifact agrees on 240/240 crops (docs/export.md "Int8
recipes" has the benchmark on 480 crops).
"""

import json

import pytest

from basisnet_deploy.cli import main
from tests.photo_fixture import build


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    build(root, train_per_class=60, heldout_per_class=20, size=64, seed=1)
    ckpt = root / "ckpt"
    with pytest.raises(SystemExit) as code:
        main(["train", "--dataset", str(root / "train"), "--preset", "demo", "--classes", "12",
              "--epochs", "20", "--batch-size", "64", "--held-out", "0.1", "--out", str(ckpt)])
    assert code.value.code == 0
    return root, ckpt


def _export(root, ckpt, recipe, capsys, calibration_size=64, extra=()):
    out = root / f"export-{recipe}"
    with pytest.raises(SystemExit) as code:
        main(["export", str(ckpt), "--calibration", str(root / "train"), "--calibration-size", str(calibration_size),
              "--images", str(root / "heldout"), "--verify-images", "240", "--specialist",
              "all", "--int8-recipe", recipe, "--allow-low-agreement", "--out", str(out),
              "--json", *extra])
    assert code.value.code == 0
    return json.loads(capsys.readouterr().out)


def test_fidelity_recipe_meets_the_agreement_targets_on_held_out_photos(trained, capsys):
    root, ckpt = trained
    full, fidelity = (_export(root, ckpt, r, capsys)["verification"] for r in ("full", "fidelity"))
    for v in (full, fidelity):
        assert v["images"] == 240 and v["source"] == str(root / "heldout")
        assert "accuracy" in v["lightweight"]  # labelled held-out photos: accuracy is scored
    lm = fidelity["lightweight"]
    assert lm["top1_agreement"] >= 0.995 and lm["coefficients"]["max_abs"] <= 0.05
    assert lm["float_accuracy"] - lm["accuracy"] <= 0.005
    for role in ("specialist_coefficient", "specialist_presynth"):
        for how in ("isolated", "end_to_end"):
            got = fidelity[role][how]
            assert got["top1_agreement"] >= 0.995, (role, how, got)
            assert got["float_accuracy"] - got["accuracy"] <= 0.005, (role, how, got)
            assert got["top1_agreement"] >= full[role][how]["top1_agreement"], (role, how)
    assert fidelity["specialist_presynth"]["isolated"]["logits"]["max_rel"] <= 0.25
    # the full recipe on the same photos: what the fidelity recipe is for
    assert full["lightweight"]["top1_agreement"] < 0.995
    assert full["lightweight"]["coefficients"]["max_abs"] > 0.05


@pytest.mark.parametrize("target", ["tflite", "onnx"])
def test_an_export_with_no_recipe_flag_passes_the_gate_on_held_out_photos(trained, capsys, target):
    """What a user who copies the first export command gets on a folder of photos: the default
    ``--int8-recipe auto`` tries ``full``, which these held-out photos refuse, and keeps
    ``fidelity``, which passes ``--min-agreement`` with the gate on (no
    ``--allow-low-agreement``), on both targets."""
    root, ckpt = trained
    out = root / f"export-auto-{target}"
    with pytest.raises(SystemExit) as code:
        main(["export", str(ckpt), "--target", target, "--calibration", str(root / "train"),
              "--calibration-size", "64", "--images", str(root / "heldout"), "--verify-images", "240",
              "--specialist", "all", "--out", str(out), "--json"])
    assert code.value.code == 0
    manifest = json.loads(capsys.readouterr().out)
    choice = manifest["recipe_choice"]
    assert [t["recipe"] for t in choice["tried"]] == ["full"] and "agree" in choice["tried"][0]["refused"]
    assert choice["chosen"] == "fidelity" and manifest["int8_recipe"]["name"] == "fidelity"
    assert manifest["agreement_gate"]["forced"] is False and not manifest["agreement_gate"]["below"]
    assert manifest["verification"]["images"] == 240
    assert json.loads((out / "manifest.json").read_text())["int8_recipe"]["name"] == "fidelity"


def test_fidelity_int8_lm_recipe_meets_the_agreement_targets_with_every_weight_in_int8(trained, capsys):
    """The lightweight model and the template's static layers in int8 weights, tuned on random
    views of 150 of 200 calibration crops (50 held back to choose the step). On the 10-epoch
    checkpoint nearest rounding moved the LM's coefficients by 0.139, and tuning the weights in
    absolute units (not in int8 steps) made the held-back crops worse, so nearest rounding was
    kept: this test failed on that tuning there. Measured with 500 steps (this export, TFLite,
    benchmarks/results/photo_test_checkpoint/intel_20_epochs.json): LM top-1 100%,
    coefficient error 0.017, held-back loss 7.2x lower (template: 5.4x); specialists 100%
    isolated and end to end, template max_rel 0.011. That the views reach the
    tuning is read from the manifest: without them the targets are met too here (coefficient
    error 0.033 at 2,000 steps on the 10-epoch checkpoint, benchmarks/lm_weight_tuning_photos.py)."""
    root, ckpt = trained
    v = _export(root, ckpt, "fidelity-int8-lm", capsys, calibration_size=200,
                extra=["--tuning-steps", "500"])
    assert v["artifacts"]["lightweight"]["quantization"] == "weight_only"
    for role in ("lightweight", "specialist_presynth"):
        tuning = v["weight_tuning"][role]
        assert tuning["held_back_loss"]["images"] == 50 and tuning["augmented_views"], role
        assert tuning["kept"] == "tuned" and tuning["best_step"] > 0, (role, tuning)
        assert tuning["held_back_loss"]["tuned"] < tuning["held_back_loss"]["nearest_rounding"], role
    # measured 7.2x lower for the LM (the template's: 5.4x)
    lm_loss = v["weight_tuning"]["lightweight"]["held_back_loss"]
    assert lm_loss["tuned"] < lm_loss["nearest_rounding"] / 3
    lm = v["verification"]["lightweight"]
    assert lm["top1_agreement"] >= 0.995 and lm["float_accuracy"] - lm["accuracy"] <= 0.005, lm
    assert lm["coefficients"]["max_abs"] <= 0.05, lm
    for role in ("specialist_coefficient", "specialist_presynth"):
        for how in ("isolated", "end_to_end"):
            got = v["verification"][role][how]
            assert got["top1_agreement"] >= 0.995, (role, how, got)
            assert got["float_accuracy"] - got["accuracy"] <= 0.005, (role, how, got)
    assert v["verification"]["specialist_presynth"]["isolated"]["logits"]["max_rel"] <= 0.25


def test_the_gpu_export_agrees_with_float_on_held_out_photos_on_the_gpu(trained, capsys, gpu):
    """The float16 export, every specialist run on LiteRT's GPU accelerator (SwiftShader here)
    and the LM on the CPU, against the float checkpoint on the 240 held-out crops: every
    artifact >= 99.5% top-1 agreement, isolated and end to end, accuracy within 0.5 point."""
    root, ckpt = trained
    out = root / "export-gpu"
    with pytest.raises(SystemExit) as code:
        main(["export", str(ckpt), "--target", "tflite", "--quantize", "float16", "--images",
              str(root / "heldout"), "--verify-images", "8", "--out", str(out), "--json"])
    assert code.value.code == 0
    manifest = json.loads(capsys.readouterr().out)
    assert {a["gpu"]["status"] for a in manifest["artifacts"].values()} == {"runs"}
    with pytest.raises(SystemExit) as code:
        main(["verify", str(out), "--images", str(root / "heldout"), "--delegate", "gpu", "--json"])
    assert code.value.code == 0
    v = json.loads(capsys.readouterr().out)
    assert v["images"] == 240 and v["specialist_processor"].startswith("GPU: ") and "fallback" not in v
    assert v["lightweight"]["top1_agreement"] >= 0.995
    for role in ("specialist_coefficient", "specialist_presynth"):
        for how in ("isolated", "end_to_end"):
            got = v[role][how]
            assert got["top1_agreement"] >= 0.995, (role, how, got)
            assert got["float_accuracy"] - got["accuracy"] <= 0.005, (role, how, got)


@pytest.mark.parametrize("target", ["tflite", "onnx"])
def test_the_full_integer_recipe_passes_the_gate_on_held_out_photos(trained, capsys, target):
    """``full-16x8``: every op integer (int8 weights tuned on the calibration crops, int16
    activations), the lightweight model and the pre-synthesized specialist, scored on the 240
    held-out crops with the gate on at 98.5%: LM >= 99.5% top-1 agreement with the float model,
    coefficients within 0.05; the template >= 98.5% isolated and end to end; accuracy within 0.5
    point; TFLite and ONNX. Measured here (500 tuning steps; intel_20_epochs.json): 240 of
    240 on every artifact, both targets; the gate stays at 98.5% because the study on
    stronger photo checkpoints (480 crops, three seeds each, benchmarks/full_16x8_photos.py)
    saw end-to-end agreement as low as 98.96%. What this catches: template ranges from the
    mean-coefficient kernels (86-90% on those checkpoints), ranges without the margin (LM
    coefficient error 0.16), ai-edge-quantizer's moving-average ranges (94%). The template's
    ranges widened 3x like the LM's cost 3-5 crops of 240 on the near-chance 10-epoch
    checkpoint (and moved 1-2 of 480 either way on the benchmark checkpoints); at 20 epochs
    that is not measured."""
    root, ckpt = trained
    out = root / f"export-16x8-{target}"
    with pytest.raises(SystemExit) as code:
        main(["export", str(ckpt), "--target", target, "--calibration", str(root / "train"),
              "--calibration-size", "200", "--images", str(root / "heldout"), "--verify-images", "240",
              "--int8-recipe", "full-16x8", "--specialist", "presynth", "--tuning-steps", "500",
              "--min-agreement", "98.5", "--out", str(out), "--json"])
    assert code.value.code == 0  # the gate on: nothing below --min-agreement is written
    manifest = json.loads(capsys.readouterr().out)
    assert {a["quantization"] for a in manifest["artifacts"].values()} == {"int16x8"}
    assert manifest["agreement_gate"]["forced"] is False and not manifest["agreement_gate"]["below"]
    v = manifest["verification"]
    lm = v["lightweight"]
    assert lm["top1_agreement"] >= 0.995 and lm["float_accuracy"] - lm["accuracy"] <= 0.005, lm
    assert lm["coefficients"]["max_abs"] <= 0.05, lm
    for how in ("isolated", "end_to_end"):
        got = v["specialist_presynth"][how]
        assert got["top1_agreement"] >= 0.985, (how, got)
        assert got["float_accuracy"] - got["accuracy"] <= 0.005, (how, got)
