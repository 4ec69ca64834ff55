"""Export targets and int8 recipes as data (basisnet_deploy/targets/).

A target is one descriptor plus one converter: a toy target registered here (ONNX at opset
13, a converter subclass of a few lines) exports, verifies and predicts through the public
API with no other file edited. Capability checks refuse impossible combinations before any
work starts, no module outside the registry compares target names, and the manifest keeps
the recipe typed.
"""

import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from basisnet_deploy.common.errors import UserError
from basisnet_deploy.export.pipeline import ExportOptions
from basisnet_deploy.export.pipeline import export as run_export
from basisnet_deploy.targets import registry
from basisnet_deploy.targets.kinds import CoefficientInt8, Quantization, Role, Runtime
from basisnet_deploy.targets.recipes import FIDELITY, FULL, RECIPES, Recipe, artifact_scheme, plan
from tests.conftest import FAST

ROOT = Path(__file__).resolve().parents[1]


class Opset13Exporter:
    """The toy target's converter: the ONNX converter at opset 13."""

    def __new__(cls, target, input_type="float32"):
        from basisnet_deploy.converters.onnx import OnnxExporter

        exporter = OnnxExporter(target, input_type)
        exporter.opset = 13
        return exporter


TOY = registry.Target(
    name="onnx-opset13", title="ONNX opset 13", suffix=".onnx", runtime=Runtime.ONNXRUNTIME,
    converter=Opset13Exporter, export_quantizations=(Quantization.FLOAT32, Quantization.INT8),
    schemes=frozenset({Quantization.FLOAT32, Quantization.DYNAMIC, Quantization.WEIGHT_ONLY}))


def test_a_registered_toy_target_exports_verifies_and_predicts(ckpt, tmp_path):
    """Registering a descriptor is all it takes: the pipeline converts with its converter,
    the manifest names it, and verification and prediction run it with the runtime it names."""
    import onnx

    from basisnet_deploy.export.verify import verify_export
    from basisnet_deploy.runtime.predict import RuntimeOptions, predict

    out = tmp_path / "toy"
    with registry.registered(TOY):
        manifest = run_export(ckpt, out, ExportOptions(target=TOY.name, specialist="coefficient",
                                                       verify_images=12, min_agreement=0.0))
        written = json.loads((out / "manifest.json").read_text())
        assert written["target"] == TOY.name and manifest.runtime == "onnxruntime"
        for entry in written["artifacts"].values():
            model = onnx.load(out / entry["file"])
            assert {o.domain: o.version for o in model.opset_import}[""] == 13
        result = verify_export(out, limit=8)
        assert result.specialist_coefficient.isolated.top1_agreement >= 0.99
        image = tmp_path / "digit.png"
        from PIL import Image

        Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(image)
        [prediction] = predict(out, [str(image)], RuntimeOptions(form="coefficient"))
        assert prediction.stage in ("lightweight", "specialist")
    # unregistered again: its exports are refused by name, as any unknown target
    with pytest.raises(UserError, match="onnx-opset13"):
        verify_export(out, limit=8)


def test_the_toy_target_refuses_what_its_descriptor_does_not_offer(ckpt, tmp_path):
    """Static int8 is not in the toy's schemes: refused before the checkpoint is read."""
    with registry.registered(TOY):
        with pytest.raises(UserError, match="has no int8 scheme"):
            run_export(ckpt, tmp_path / "x", ExportOptions(target=TOY.name, calibration="digits"))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("options, message", [
    (dict(target="onnx", quantize="float16"), "--target onnx offers int8, float32"),
    (dict(target="onnx", input_type="int8", calibration="digits"), "--target onnx takes float32"),
    (dict(target="onnx", coefficient_int8="fakequant", calibration="digits"), "one int8 scheme"),
    (dict(coefficient_int8="fakequant", int8_recipe="fidelity", calibration="digits"),
     "makes the coefficient-input specialist dynamic"),
    (dict(int8_recipe="nope", calibration="digits"), "unknown 'nope'"),
    (dict(target="coreml"), "unknown target 'coreml'"),
])
def test_impossible_combinations_are_refused_before_any_work(tmp_path, monkeypatch, options, message):
    """Each is a one-line UserError raised before the checkpoint is read (a missing
    checkpoint would otherwise be the error)."""
    with pytest.raises(UserError, match=message):
        run_export(tmp_path / "no-checkpoint", tmp_path / "out", ExportOptions(**options))
    assert not (tmp_path / "out").exists()


def test_recipes_resolve_each_role_per_target():
    """The table the old string comparisons encoded, now read from data."""
    tfl, onnx_ = registry.get("tflite"), registry.get("onnx")
    coeff, presynth, lm = Role.SPECIALIST_COEFFICIENT, Role.SPECIALIST_PRESYNTH, Role.LIGHTWEIGHT
    int8 = Quantization.INT8
    assert artifact_scheme(tfl, int8, FULL, coeff) is Quantization.DYNAMIC
    assert artifact_scheme(tfl, int8, FULL, coeff, CoefficientInt8.FAKEQUANT) is int8
    assert artifact_scheme(onnx_, int8, FULL, coeff) is int8  # QDQ, per-tensor runtime W
    assert artifact_scheme(onnx_, int8, FIDELITY, coeff) is Quantization.DYNAMIC
    assert artifact_scheme(tfl, int8, FIDELITY, presynth) is Quantization.WEIGHT_ONLY
    assert artifact_scheme(tfl, int8, FIDELITY, lm) is Quantization.FLOAT32
    assert artifact_scheme(tfl, Quantization.FLOAT16, FIDELITY, lm) is Quantization.FLOAT16
    plans = plan(tfl, int8, FULL, [lm, coeff, presynth], "float32", CoefficientInt8.FAKEQUANT)
    assert plans[lm].decomposed_hard_swish and plans[coeff].bounded_kernels
    assert not plan(onnx_, int8, FULL, [lm], "float32")[lm].decomposed_hard_swish
    tuned = plan(tfl, int8, RECIPES["fidelity-int8-lm"], [lm, coeff, presynth], "float32")
    assert [r for r, p in tuned.items() if p.tuned] == [lm, presynth]


def test_the_manifest_keeps_the_recipe_typed(int8_tflite):
    from basisnet_deploy.artifacts.manifest import load_manifest

    directory, _ = int8_tflite
    manifest = load_manifest(directory)
    assert isinstance(manifest.recipe, Recipe) and manifest.recipe is FULL
    assert manifest.target_spec is registry.get("tflite")
    doc = json.loads((directory / "manifest.json").read_text())
    assert doc["int8_recipe"]["schemes"]["specialist_presynth"] == "int8"


def test_an_unknown_recipe_in_a_manifest_is_one_clear_error(int8_tflite, tmp_path):
    from basisnet_deploy.artifacts.manifest import parse_manifest

    doc = json.loads((int8_tflite[0] / "manifest.json").read_text())
    doc["int8_recipe"] = {"name": "mystery"}
    with pytest.raises(UserError, match="int8_recipe 'mystery'"):
        parse_manifest(doc, "manifest.json")


def _target_name_constants(folders=tuple(ROOT / f for f in ("basisnet_deploy", "converters", "calibration"))):
    """(file, line, value) of every string constant equal to a registered target's name
    outside the registry; docstrings and help texts are longer strings, not these."""
    names = set(registry.names())
    found = []
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            if path.parent.name == "targets" and path.parent.parent.name == "basisnet_deploy":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and node.value in names:
                    found.append(f"{path.name}:{node.lineno}: {node.value!r}")
    return found


def test_no_module_outside_the_registry_names_a_target():
    assert _target_name_constants() == []


def test_the_name_check_finds_a_comparison(tmp_path):
    """The check above can fail: a module comparing with a target name is found."""
    (tmp_path / "probe.py").write_text('def f(m):\n    return m.target == "onnx"\n')
    assert _target_name_constants([tmp_path]) == ["probe.py:2: 'onnx'"]


def test_descriptors_are_frozen_data():
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.get("tflite").suffix = ".bin"
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get("onnx"))


@pytest.mark.parametrize("key, value", [("verification", [1]), ("export_seconds", "fast"),
                                        ("agreement_gate", True), ("generator", 3)])
def test_the_export_record_is_type_checked_on_load(int8_tflite, key, value):
    """What export recorded beside the schema is typed too: a wrong type is one clear error,
    not a crash where a command later reads it."""
    from basisnet_deploy.artifacts.manifest import parse_manifest

    doc = json.loads((int8_tflite[0] / "manifest.json").read_text())
    assert parse_manifest(doc, "m").to_json() == doc  # as written, read back unchanged
    doc[key] = value
    with pytest.raises(UserError, match=f"m: {key} must be a JSON"):
        parse_manifest(doc, "m")
