"""The agreement gate's statistics and ``--int8-recipe auto`` (basisnet_deploy/export/gate.py)."""

import json

import pytest

from basisnet_deploy.export.gate import judge, resolving_images, wilson_interval
from tests.conftest import FAST, lm_agreement


def test_wilson_interval_matches_known_values():
    # 95 of 100: the textbook Wilson interval is 0.8882-0.9785
    low, high = wilson_interval(0.95, 100)
    assert (round(low, 4), round(high, 4)) == (0.8882, 0.9785)
    low, high = wilson_interval(1.0, 100)  # all agree: the interval still admits 96.3%
    assert round(low, 3) == 0.963 and high == 1.0
    assert wilson_interval(0.5, 0) == (0.0, 1.0)


def test_resolving_images_is_the_first_sample_that_separates_the_margin():
    n = resolving_images(99.0)
    assert wilson_interval(0.995, n)[0] >= 0.99 > wilson_interval(0.995, n - 1)[0]
    assert 1_000 < n < 2_000
    assert resolving_images(99.5) < n  # nearer 100%, a proportion varies less


def test_the_gate_says_when_the_sample_cannot_resolve_the_threshold():
    verification = {"images": 100, "lightweight": {"top1_agreement": 0.99}}
    result = judge(verification, 99.0)
    assert not result.below and result.unresolved() == ["lightweight"]
    assert "1,522 held-out images separate 99% from 99.5%" in result.warning()
    big = judge({"images": 5000, "lightweight": {"top1_agreement": 0.997}}, 99.0)
    assert big.unresolved() == [] and big.warning() is None
    assert big.to_json(forced=False)["interval_95"]["lightweight"][0] > 99.0


def test_auto_keeps_the_first_recipe_that_passes(ckpt, tmp_path, monkeypatch):
    """auto tries full first; here its int8 lightweight model is made to disagree (only the
    reported agreement of an int8 LM is lowered), so auto keeps fidelity, whose LM is float32,
    and the manifest says which recipe it kept and why."""
    from basisnet_deploy.export import pipeline

    real = pipeline.verify_directory

    def int8_lm_disagrees(directory, manifest, *args, **kwargs):
        result = real(directory, manifest, *args, **kwargs)
        if manifest.artifacts[pipeline.Role.LIGHTWEIGHT].quantization.value == "int8":
            return lm_agreement(result, 0.5)
        return result

    monkeypatch.setattr(pipeline, "verify_directory", int8_lm_disagrees)
    messages = []
    options = {**FAST, "min_agreement": 90.0}
    manifest = pipeline.export(ckpt, tmp_path / "auto", pipeline.ExportOptions(
        calibration="digits", specialist="presynth", **options), progress=messages.append)
    assert manifest.recipe.name == "fidelity"
    doc = json.loads((tmp_path / "auto" / "manifest.json").read_text())
    assert doc["artifacts"]["lightweight"]["quantization"] == "float32"
    assert [t["recipe"] for t in doc["recipe_choice"]["tried"]] == ["full"]
    assert "50.00%" in doc["recipe_choice"]["tried"][0]["refused"]
    assert any("full refused" in m and "trying fidelity" in m for m in messages)
    assert not list(tmp_path.glob(".auto*"))  # the refused attempt left no staging behind


def test_an_explicit_recipe_is_tried_alone(ckpt, tmp_path, monkeypatch):
    from basisnet_deploy.common.errors import UserError
    from basisnet_deploy.export import pipeline

    real = pipeline.verify_directory

    def disagrees(*args, **kwargs):
        return lm_agreement(real(*args, **kwargs), 0.5)

    monkeypatch.setattr(pipeline, "verify_directory", disagrees)
    with pytest.raises(UserError, match="Try --int8-recipe fidelity") as refused:
        pipeline.export(ckpt, tmp_path / "full", pipeline.ExportOptions(
            calibration="digits", specialist="presynth", int8_recipe="full",
            **{**FAST, "min_agreement": 90.0}))
    assert refused.value.exit_code == 1 and not (tmp_path / "full").exists()
