"""Int8 fidelity on real photographs (issue 10), end to end through the CLI.

A small `demo`-preset BasisNet is trained on the real-photo fixture's training crops,
exported twice to TFLite int8 with calibration on the training folder (the full and the
fidelity recipe), and each export is verified on the held-out crops, which share no pixel
with the training or calibration crops. The measured claims: verification scores accuracy on
held-out photos only, and the fidelity recipe agrees with the float model at least as often
as full int8, with its LM's coefficients within the issue's 0.05 of the float model's (the
fidelity LM is float32; an int8 one misses that). This small checkpoint is barely trained
(near chance on held-out crops, so its logits are near-ties): the absolute agreement
targets are measured by benchmarks/fidelity_photos.py on a trained one, not asserted here
(README "Int8 recipes" has the figures).
"""

import json

import pytest

from basisnet_deploy.cli import main
from tests.photo_fixture import build


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    build(root, train_per_class=24, heldout_per_class=10, size=48, seed=1)
    ckpt = root / "ckpt"
    with pytest.raises(SystemExit) as code:
        main(["train", "--dataset", str(root / "train"), "--preset", "demo", "--classes", "12",
              "--epochs", "6", "--batch-size", "32", "--held-out", "0.1", "--out", str(ckpt)])
    assert code.value.code == 0
    return root, ckpt


def _export(root, ckpt, recipe, capsys):
    out = root / f"export-{recipe}"
    with pytest.raises(SystemExit) as code:
        main(["export", str(ckpt), "--calibration", str(root / "train"), "--calibration-size", "64",
              "--images", str(root / "heldout"), "--verify-images", "120", "--specialist",
              "presynth", "--int8-recipe", recipe, "--allow-low-agreement", "--out", str(out),
              "--json"])
    assert code.value.code == 0
    return json.loads(capsys.readouterr().out)


def test_fidelity_recipe_agrees_with_float_at_least_as_often_on_held_out_photos(trained, capsys):
    root, ckpt = trained
    full, fidelity = (_export(root, ckpt, r, capsys)["verification"] for r in ("full", "fidelity"))
    for v in (full, fidelity):
        assert v["images"] == 120 and v["source"] == str(root / "heldout")
        assert "accuracy" in v["lightweight"]  # labelled held-out photos: accuracy is scored
    lm_full, lm_fid = full["lightweight"], fidelity["lightweight"]
    assert lm_fid["top1_agreement"] >= lm_full["top1_agreement"]
    assert lm_fid["coefficients"]["max_abs"] < lm_full["coefficients"]["max_abs"]
    assert lm_fid["coefficients"]["max_abs"] <= 0.05  # issue 10's target (a float LM)
    e2e_full = full["specialist_presynth"]["end_to_end"]["top1_agreement"]
    e2e_fid = fidelity["specialist_presynth"]["end_to_end"]["top1_agreement"]
    assert e2e_fid >= e2e_full
