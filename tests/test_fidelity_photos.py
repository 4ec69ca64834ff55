"""Int8 fidelity on real photographs (issue 10), end to end through the CLI.

A small `demo`-preset BasisNet is trained on the real-photo fixture's training crops (90% of
720 crops, 10 epochs: above chance on the held-out crops, float LM 26% and specialist 24%
top-1 against 8%), exported to TFLite int8 with calibration on the training folder (the
full, fidelity and fidelity-int8-lm recipes), and each export is verified on the 240 held-out crops, which share no pixel with the training or
calibration crops. The claims: verification scores accuracy on held-out photos only; the
fidelity recipe meets issue 10's targets (every artifact >= 99.5% top-1 agreement with the
float model, isolated and end to end; accuracy drop <= 0.5 point; template logits max_rel
<= 0.25; LM coefficients within 0.05), and agrees at least as often as full int8, which on
this checkpoint misses them by far (its LM agrees on 62.5%); and fidelity-int8-lm keeps
nearest rounding here, where tuning would make the held-back calibration crops worse. Training is deterministic
(tests/test_train.py), so these figures are the same on every run on one machine; the
fidelity artifacts agree on 240/240 or 239/240 crops here, the targets' edge (README "Int8
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
              "--epochs", "10", "--batch-size", "64", "--held-out", "0.1", "--out", str(ckpt)])
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


def test_fidelity_int8_lm_recipe_keeps_nearest_rounding_where_tuning_does_not_generalize(trained, capsys):
    """The lightweight model and the template's static layers in int8 weights, tuned on 150 of
    200 calibration crops, with 50 held back to choose the step. On this near-chance checkpoint
    tuning fits the crops it sees 300x better than nearest rounding and those held back 2x
    worse (measured), so the guard keeps nearest rounding for both: a guard that kept the
    tuned weights regardless fails here. Without it (session 10) the LM's coefficient error on
    the 240 held-out crops was 0.070 and one specialist fell to 98.75% end to end; with
    nearest rounding: LM top-1 100%, coefficient error 0.139 (above issue 10's 0.05), both
    specialists 99.58% end to end. Where tuning does generalize (the benchmark checkpoint,
    README "Int8 recipes") it is kept."""
    root, ckpt = trained
    v = _export(root, ckpt, "fidelity-int8-lm", capsys, calibration_size=200,
                extra=["--tuning-steps", "500"])
    assert v["artifacts"]["lightweight"]["quantization"] == "weight_only"
    for role in ("lightweight", "specialist_presynth"):
        tuning = v["weight_tuning"][role]
        assert tuning["held_back_loss"]["images"] == 50, role
        assert tuning["kept"] == "nearest" and tuning["best_step"] == 0, (role, tuning)
    lm = v["verification"]["lightweight"]
    assert lm["top1_agreement"] >= 0.995 and lm["float_accuracy"] - lm["accuracy"] <= 0.005, lm
    for role in ("specialist_coefficient", "specialist_presynth"):
        assert v["verification"][role]["end_to_end"]["top1_agreement"] >= 0.99, role
