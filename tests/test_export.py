"""Export: every artifact runs and matches the float model; bad input fails cleanly."""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from basisnet_deploy.model import checkpoint
from basisnet_deploy.cli import main
from tests.conftest import export, lm_agreement
from basisnet_deploy.runtime.sessions import open_session
from basisnet_deploy.artifacts.synthesis import load_table, synthesize

from tests.conftest import FAST



def assert_agreement_is_measured(out, manifest: dict, role: str) -> None:
    """The recorded end-to-end agreement is a fraction of the verified images, and a fresh
    ``verify`` of the export on the same held-out images measures the same figure."""
    from basisnet_deploy.export.verify import verify_export

    recorded = manifest["verification"]
    count = recorded["images"]
    assert count == FAST["verify_images"]
    agreement = recorded[role]["end_to_end"]["top1_agreement"]
    assert agreement * count == pytest.approx(round(agreement * count))
    fresh = verify_export(out, limit=count)
    again, then = fresh.to_json()[role]["end_to_end"], recorded[role]["end_to_end"]
    assert again["top1_agreement"] == then["top1_agreement"]
    assert again["logits"] == pytest.approx(then["logits"], rel=1e-5)

def test_float_tflite_artifacts_match_the_float_model(float_tflite):
    out, m = float_tflite
    assert set(m["artifacts"]) == {"lightweight", "specialist_coefficient", "specialist_presynth"}
    v = m["verification"]
    assert v["lightweight"]["logits"]["max_rel"] <= 1e-4
    assert v["lightweight"]["coefficients"]["max_abs"] <= 1e-5
    for role in ("specialist_coefficient", "specialist_presynth"):
        assert v[role]["isolated"]["logits"]["max_rel"] <= 1e-4, role
        assert v[role]["end_to_end"]["top1_agreement"] == 1.0
    assert v["presynth_vs_coefficient"]["max_rel"] <= 1e-4
    for entry in m["artifacts"].values():
        data = (out / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        # no GPU in this test: a static guess, labelled so (tests/test_gpu.py runs the GPU)
        assert entry["gpu"]["status"] == "static-guess" and entry["gpu"]["reason"].startswith("runs"), entry["gpu"]
    lm_io = m["artifacts"]["lightweight"]
    assert [o["name"] for o in lm_io["outputs"]] == ["coefficients", "logits"]
    assert lm_io["inputs"][0]["shape"] == [1, 16, 16, 3]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["coefficients"]["shape"] == [8, 3] and on_disk["labels"][0] == "0"


def test_synthesize_patches_in_place_and_equals_the_specialist(float_tflite, ckpt):
    import tensorflow as tf

    out, m = float_tflite
    entry = m["artifacts"]["specialist_presynth"]
    template = (out / entry["file"]).read_bytes()
    table = load_table((out / entry["patch_table"]).read_text())
    bases = dict(np.load(out / entry["bases"]))
    assert len(table) == entry["patched_layers"] == 8 * 3 - 0  # L8-L15, three convs each
    rng = np.random.default_rng(5)
    coeff = rng.dirichlet(np.ones(3), size=8).astype(np.float32)
    model = synthesize(template, table, bases, coeff)
    assert len(model) == len(template)
    changed = np.flatnonzero(np.frombuffer(model, np.uint8) != np.frombuffer(template, np.uint8))
    ranges = [(p.weight_offset, p.weight_offset + 4 * int(np.prod(p.shape))) for p in table]
    assert all(any(lo <= i < hi for lo, hi in ranges) for i in changed)
    net, _ = checkpoint.load(ckpt)
    x = rng.standard_normal((1, 32, 32, 3)).astype(np.float32)
    ref = net.specialist([tf.constant(x), tf.constant(coeff[None])]).numpy()
    got = open_session(out / entry["file"], model=model).run({"image": x})["logits"]
    assert np.max(np.abs(got - ref)) <= 1e-4 * np.max(np.abs(ref))


def test_int8_tflite_export_runs_and_is_verified(int8_tflite):
    out, m = int8_tflite
    arts = m["artifacts"]
    assert arts["lightweight"]["quantization"] == "int8"
    assert arts["specialist_presynth"]["quantization"] == "int8"
    assert arts["specialist_coefficient"]["quantization"] == "dynamic"
    table = load_table((out / arts["specialist_presynth"]["patch_table"]).read_text())
    assert {p.dtype for p in table} == {"int8"} and all(p.input_scale > 0 for p in table)
    assert m["calibration"]["used"] == 16
    assert ["only 16 usable" in w for w in m["calibration"]["warnings"]] == [True]  # < 32
    # per-layer error of each static int8 artifact against float, on calibration images
    report = json.loads((out / m["layer_report"]["file"]).read_text())
    assert set(report["artifacts"]) == {"lightweight", "specialist_presynth"}
    for role, rows in report["artifacts"].items():
        added = [r["added"] for r in rows]
        assert added == sorted(added, reverse=True) and 0 < added[0] <= rows[0]["rel_rms"] < 10, role
        assert m["layer_report"]["worst"][role] == rows[0]
    assert_agreement_is_measured(out, m, "specialist_presynth")
    # int8 activations: what LiteRT's GPU accelerator miscomputes (tests/test_gpu.py)
    assert arts["specialist_presynth"]["gpu"]["reason"].startswith("miscomputes"), arts["specialist_presynth"]["gpu"]
    # No int8 HARD_SWISH (XNNPACK lacks it), so XNNPACK takes the specialist whole; the LM
    # splits once more, at the int8 SOFTMAX of its coefficient head.
    forms = m["hard_swish"]  # per artifact: spelled out for static int8 only
    assert forms["lightweight"].startswith("decomposed") and forms["specialist_presynth"].startswith("decomposed")
    assert forms["specialist_coefficient"] == "HARD_SWISH op"  # dynamic range: float activations
    for role, partitions in (("lightweight", 2), ("specialist_presynth", 1)):
        s = open_session(out / arts[role]["file"])
        s.run({"image": np.zeros(arts[role]["inputs"][0]["shape"], np.float32)})
        ops = [o["op_name"] for o in s.interpreter._get_ops_details()]
        assert "HARD_SWISH" not in ops and ops.count("DELEGATE") == partitions, role


def test_fakequant_coefficient_specialist_is_full_int8_and_runs(ckpt, tmp_path):
    from basisnet_deploy.converters.tflite_patch import _schema

    m = export(ckpt, tmp_path / "fq", target="tflite", calibration="digits", specialist="coefficient",
               coefficient_int8="fakequant", **FAST)
    entry = m["artifacts"]["specialist_coefficient"]
    assert entry["quantization"] == "int8"
    fb = _schema()
    model = fb.Model.GetRootAs((tmp_path / "fq" / entry["file"]).read_bytes(), 0)
    graph = model.Subgraphs(0)
    convs = [graph.Operators(i) for i in range(graph.OperatorsLength())
             if model.OperatorCodes(graph.Operators(i).OpcodeIndex()).BuiltinCode()
             in (fb.BuiltinOperator.CONV_2D, fb.BuiltinOperator.DEPTHWISE_CONV_2D)]
    # Every conv filter, runtime ones included, is int8 with zero point 0.
    for op in convs:
        f = graph.Tensors(op.Inputs(1))
        assert f.Type() == fb.TensorType.INT8
        assert not np.any(f.Quantization().ZeroPointAsNumpy())
    assert_agreement_is_measured(tmp_path / "fq", m, "specialist_coefficient")


def test_onnx_float_export(float_onnx):
    import onnx

    directory, m = float_onnx
    for entry in m["artifacts"].values():
        onnx.checker.check_model(onnx.load(directory / entry["file"]))
    v = m["verification"]
    assert v["lightweight"]["logits"]["max_rel"] <= 1e-4
    assert v["specialist_coefficient"]["isolated"]["logits"]["max_rel"] <= 1e-4
    assert v["specialist_presynth"]["isolated"]["logits"]["max_rel"] <= 1e-4


def test_onnx_int8_presynth_template_is_int8_and_patchable(ckpt, tmp_path):
    """QDQ template: int8 kernels, scales and int32 biases patched at their raw_data offsets."""
    import onnx

    out = tmp_path / "onnx8"
    m = export(ckpt, out, target="onnx", calibration="digits", specialist="presynth", **FAST)
    entry = m["artifacts"]["specialist_presynth"]
    assert entry["quantization"] == "int8"
    onnx.checker.check_model(onnx.load(out / entry["file"]))
    table = load_table((out / entry["patch_table"]).read_text())
    assert {p.dtype for p in table} == {"int8"} and {p.axis for p in table} == {0}
    assert any(p.bias_offset >= 0 for p in table)  # 1x1 convs carry the folded bias
    template = (out / entry["file"]).read_bytes()
    bases = dict(np.load(out / entry["bases"]))
    baked = np.asarray(entry["baked_coefficients"], np.float32)
    x = np.random.default_rng(2).standard_normal((1, 32, 32, 3)).astype(np.float32)
    # Re-synthesizing the baked coefficients reproduces the template (same quantization rule).
    ref = open_session(out / entry["file"]).run({"image": x})["logits"]
    again = open_session(out / entry["file"], model=synthesize(template, table, bases, baked)).run({"image": x})
    np.testing.assert_allclose(again["logits"], ref, rtol=0.05, atol=0.05 * np.abs(ref).max())
    other = np.random.default_rng(3).dirichlet(np.ones(3), size=8).astype(np.float32)
    moved = open_session(out / entry["file"], model=synthesize(template, table, bases, other)).run({"image": x})
    assert not np.allclose(moved["logits"], ref)  # the patch really changes the model
    assert_agreement_is_measured(out, m, "specialist_presynth")


def _cli(args, capsys):
    with pytest.raises(SystemExit) as code:
        main(args)
    return code.value.code, capsys.readouterr().err


def test_bad_inputs_exit_2_with_one_line_and_leave_nothing(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_text("not really a jpeg")
    (junk / "b.txt").write_text("text")
    cases = [
        (["export", str(tmp_path / "nope")], "no such checkpoint directory"),
        (["export", str(ckpt), "--out", str(out), "--calibration", str(empty)], "is empty"),
        (["export", str(ckpt), "--out", str(out), "--calibration", str(junk)], "none of its 2 files"),
        (["export", str(ckpt), "--out", str(out), "--quantize", "int8"], "needs real calibration"),
        (["export", str(ckpt), "--out", str(junk)], "not a basisnet-deploy export directory"),
        (["verify", str(tmp_path)], "manifest.json: missing"),
        (["export", str(ckpt), "--out", str(out), "--target", "onnx", "--input-type", "int8"],
         "--target onnx takes float32 input"),
    ]
    for args, message in cases:
        code, err = _cli(args, capsys)
        assert code == 2, args
        assert message in err and "Traceback" not in err, (args, err)
    code, err = _cli(["export", str(ckpt), "--target", "coreml"], capsys)
    assert code == 2 and "coreml" in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "junk"]  # no temp dirs left
    assert (junk / "b.txt").read_text() == "text"


def test_verify_refuses_a_truncated_artifact(float_tflite, tmp_path, capsys):
    import shutil

    out, _ = float_tflite
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    path = copy / "specialist_presynth.tflite"
    path.write_bytes(path.read_bytes()[:1000])
    code, err = _cli(["verify", str(copy)], capsys)
    assert code == 2 and "truncated or modified" in err
    code, err = _cli(["check", str(copy)], capsys)
    assert code == 2 and "specialist_presynth.tflite" in err


def test_truncated_model_bytes_fail_to_load_clearly(float_tflite):
    from basisnet_deploy.runtime.sessions import RuntimeLoadError

    out, m = float_tflite
    data = (out / "lightweight.tflite").read_bytes()
    with pytest.raises(RuntimeLoadError, match="truncated"):
        open_session(out / "lightweight.tflite", model=data[: len(data) // 2])


def test_calibration_folder_skips_and_counts(tmp_path):
    from basisnet_deploy.calibration.images import calibration_images

    for i in range(3):
        Image.new("RGB", (12, 9), (i * 50, 0, 0)).save(tmp_path / f"{i}.png")
    Image.new("CMYK", (8, 8)).save(tmp_path / "cmyk.jpg")
    (tmp_path / "notes.txt").write_text("x")
    got = calibration_images(str(tmp_path), 10, seed=1)
    assert len(got.images) == 4 and got.skipped == {"not an image": 1}
    again = calibration_images(str(tmp_path), 2, seed=1)
    assert [im.tobytes() for im in again.images] == [im.tobytes() for im in got.images[:2]]


def test_template_constants_stay_unique_when_biases_coincide(tmp_path):
    """Zero BN statistics give every conv an all-zero bias; the converter would merge those
    buffers, and patching one layer would rewrite the others. The template keeps them apart."""
    import keras

    from basisnet_deploy.model.config import BasisNetConfig
    from basisnet_deploy.data import Preprocessing
    from basisnet_deploy.model.network import BasisNet
    from basisnet_deploy.artifacts.synthesis import overlapping
    from tests.conftest import TINY

    keras.utils.set_random_seed(1)
    net = BasisNet(TINY)  # fresh BN: beta = mean = 0, so the folded biases are all zero
    cfg = BasisNetConfig(TINY, Preprocessing(resize="squash"), tuple("0123456789"),
                         {"dataset": "digits", "settings": {"held_out": 0.2, "seed": 0}})
    ck = checkpoint.save(tmp_path / "ck", net, cfg)
    m = export(ck, tmp_path / "i8", target="tflite", calibration="digits", specialist="presynth", **FAST)
    entry = m["artifacts"]["specialist_presynth"]
    table = load_table((tmp_path / "i8" / entry["patch_table"]).read_text())
    assert overlapping(table) is None
    assert len({p.bias_offset for p in table}) == len(table)
    with np.load(tmp_path / "i8" / entry["bases"]) as npz:
        assert all(not np.any(npz[p.layer + "/bias"]) for p in table)  # the case being guarded


def test_synthesize_refuses_overlapping_writes(float_tflite):
    from basisnet_deploy.artifacts.synthesis import overlapping

    out, m = float_tflite
    entry = m["artifacts"]["specialist_presynth"]
    table = load_table((out / entry["patch_table"]).read_text())
    template = (out / entry["file"]).read_bytes()
    bases = dict(np.load(out / entry["bases"]))
    clash = [table[0], table[1].__class__(**{**table[1].__dict__, "weight_offset": table[0].weight_offset})]
    assert "share bytes" in overlapping(clash)
    with pytest.raises(ValueError, match="overlapping"):
        synthesize(template, clash, bases, np.full((8, 3), 1 / 3, np.float32))


def test_fidelity_recipe_keeps_the_lm_float_and_int8_weights_in_the_template(ckpt, tmp_path):
    """--int8-recipe fidelity (TFLite): a float32 LM, whose coefficients are then the float
    model's up to LiteRT's arithmetic, and a weight-only int8 template (ai-edge-quantizer):
    every conv reads per-channel int8 weights through a DEQUANTIZE, which XNNPACK folds, so it
    takes the whole template (float speed); patches rewrite int8 kernels and their scales only
    (the float bias does not depend on coefficients), and the C fast path can write them."""
    out = tmp_path / "fid"
    m = export(ckpt, out, target="tflite", calibration="digits",
               specialist="presynth", int8_recipe="fidelity", **FAST)
    arts = m["artifacts"]
    assert arts["lightweight"]["quantization"] == "float32"
    _assert_weight_only_template(out, m)
    assert m["verification"]["lightweight"]["coefficients"]["max_abs"] < 1e-4
    assert m["verification"]["specialist_presynth"]["isolated"]["logits"]["max_rel"] < 0.1
    assert_agreement_is_measured(out, m, "specialist_presynth")


def test_fidelity_int8_lm_recipe_exports_int8_weights_with_the_lm_tuned(ckpt, tmp_path):
    """--int8-recipe fidelity-int8-lm (TFLite): a weight-only int8 LM whose weights were tuned on the
    calibration images (recorded in the manifest, with the template's static kernels), and a
    weight-only int8 template
    (ai-edge-quantizer): every conv reads per-channel int8 weights through a DEQUANTIZE, which
    XNNPACK folds, so it takes the whole template (float speed); patches rewrite int8 kernels
    and their scales only (the float bias does not depend on coefficients), and the C fast
    path can write them."""
    out = tmp_path / "fid"
    m = export(ckpt, out, target="tflite", calibration="digits",
               specialist="presynth", int8_recipe="fidelity-int8-lm", tuning_steps=40, **FAST)
    arts = m["artifacts"]
    assert arts["lightweight"]["quantization"] == "weight_only"
    assert _conv_filter_sources((out / arts["lightweight"]["file"]).read_bytes()) \
        == {"DEQUANTIZE of int8 per channel"}
    assert set(m["weight_tuning"]) == {"lightweight", "specialist_presynth"}
    for tuning in m["weight_tuning"].values():
        assert tuning["steps"] == 40 and tuning["held_back_loss"]["images"] == 4  # a quarter of 16
    tuning = m["weight_tuning"]["lightweight"]
    assert tuning["kept"] == "tuned" and 0 < tuning["best_step"] <= 40
    assert tuning["held_back_loss"]["tuned"] < tuning["held_back_loss"]["nearest_rounding"]
    _assert_not_nearest_rounding(ckpt, out / arts["lightweight"]["file"])
    _assert_weight_only_template(out, m)
    assert m["verification"]["specialist_presynth"]["isolated"]["logits"]["max_rel"] < 0.1
    assert_agreement_is_measured(out, m, "specialist_presynth")


def _assert_weight_only_template(out, m: dict) -> None:
    """The TFLite fidelity recipes' template: weight-only int8 (no static int8 artifact, so
    hard-swish stays one op and there is no layer report), one XNNPACK partition, 24 int8
    patches without biases, which the C fast path accepts."""
    from basisnet_deploy.artifacts.fast_synthesis import FastSynthesizer

    # no static int8 artifact, so hard-swish stays one op (the spelled-out form costs a float model)
    assert set(m["hard_swish"].values()) == {"HARD_SWISH op"}
    assert m["layer_report"] is None  # no static int8 artifact to report on
    entry = m["artifacts"]["specialist_presynth"]
    assert entry["quantization"] == "weight_only"
    template = (out / entry["file"]).read_bytes()
    assert _conv_filter_sources(template) == {"DEQUANTIZE of int8 per channel"}
    session = open_session(out / entry["file"])
    session.run({"image": np.zeros(entry["inputs"][0]["shape"], np.float32)})
    ops = [o["op_name"] for o in session.interpreter._get_ops_details()]
    assert ops.count("DELEGATE") == 1, ops  # one XNNPACK partition (dynamic range: one per conv)
    table = load_table((out / entry["patch_table"]).read_text())
    assert len(table) == 24 and all(p.dtype == "int8" and p.bias_offset == -1 for p in table)
    FastSynthesizer(template, table, bases=dict(np.load(out / entry["bases"])))  # accepts it


def _assert_not_nearest_rounding(ckpt, lm_file) -> None:
    """The exported LM is not the nearest int8 rounding of the checkpoint's LM: the tuned
    weights reached the converter (with them lost, the two agree to float ulps)."""
    import tensorflow as tf

    from basisnet_deploy.quantization.weight_tuning import channel_axis, on_int8_grid

    net, cfg = checkpoint.load(ckpt)
    lm = net.lightweight
    for v in lm.trainable_variables:
        if v.path.endswith("kernel"):
            v.assign(on_int8_grid(tf.constant(v.numpy()), channel_axis(v)))
    r = cfg.architecture.light_resolution
    image = np.random.default_rng(0).uniform(0, 1, (1, r, r, 3)).astype(np.float32)
    got = open_session(lm_file).run({"image": image})
    nearest = lm(image, training=False)
    assert max(float(np.abs(got[k] - nearest[k].numpy()).max()) for k in ("logits", "coefficients")) > 1e-4


def _conv_filter_sources(model_bytes: bytes) -> set[str]:
    """How each CONV_2D / DEPTHWISE_CONV_2D of a TFLite model gets its filter."""
    from basisnet_deploy.converters.tflite_patch import _schema

    fb = _schema()
    model = fb.Model.GetRootAs(model_bytes, 0)
    graph = model.Subgraphs(0)
    ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]
    code = {id(op): model.OperatorCodes(op.OpcodeIndex()).BuiltinCode() for op in ops}
    producer = {op.Outputs(j): op for op in ops for j in range(op.OutputsLength())}
    sources = set()
    for op in ops:
        if code[id(op)] not in (fb.BuiltinOperator.CONV_2D, fb.BuiltinOperator.DEPTHWISE_CONV_2D):
            continue
        prod = producer.get(op.Inputs(1))
        if prod is None:
            sources.add(f"constant of type {graph.Tensors(op.Inputs(1)).Type()}")
            continue
        source = graph.Tensors(prod.Inputs(0))
        q = source.Quantization()
        per_channel = q is not None and q.ScaleLength() == source.ShapeAsNumpy()[q.QuantizedDimension()]
        sources.add(f"{'DEQUANTIZE' if code[id(prod)] == fb.BuiltinOperator.DEQUANTIZE else code[id(prod)]}"
                    f" of {'int8' if source.Type() == fb.TensorType.INT8 else source.Type()}"
                    f" {'per channel' if per_channel else 'per tensor'}")
    return sources


def test_onnx_fidelity_recipe_exports_a_float_lm_and_a_weight_only_template(ckpt, tmp_path):
    """--int8-recipe fidelity (ONNX): float LM, int8 bases in the coefficient-input
    specialist, weight-only int8 template; the recorded verification is measured."""
    import onnx

    out = tmp_path / "onnxfid"
    m = export(ckpt, out, target="onnx", calibration="digits", specialist="all",
               int8_recipe="fidelity", **FAST)
    arts = m["artifacts"]
    assert [arts[r]["quantization"] for r in ("lightweight", "specialist_coefficient", "specialist_presynth")] \
        == ["float32", "dynamic", "weight_only"]
    assert m["weight_tuning"] is None  # the float32 LM's weights are the checkpoint's
    ops = {n.op_type for n in onnx.load(out / arts["specialist_coefficient"]["file"]).graph.node}
    assert "MatMulInteger" in ops and "ConvInteger" not in ops  # int8 bases, float convs
    ops = {n.op_type for n in onnx.load(out / arts["specialist_presynth"]["file"]).graph.node}
    # int8 kernels back to float by Cast and Mul, which onnxruntime folds at load (it runs a
    # DequantizeLinear every frame); no activation is quantized
    assert {"Cast", "Mul", "Conv"} <= ops and not ops & {"DequantizeLinear", "QuantizeLinear",
                                                          "DynamicQuantizeLinear", "ConvInteger"}
    assert m["verification"]["lightweight"]["coefficients"]["max_abs"] < 1e-4
    assert_agreement_is_measured(out, m, "specialist_presynth")


@pytest.mark.parametrize("target,scheme", [("onnx", "weight_only"), ("onnx", "dynamic"),
                                           ("tflite", "weight_only")])
def test_int8_template_patched_is_what_its_scheme_makes_of_the_synthesized_kernels(ckpt, target, scheme):
    """An int8 template with float activations (weight_only: per-channel int8 kernels turned
    back into float, by Cast and Mul in ONNX and DEQUANTIZE in TFLite; ONNX dynamic:
    ConvInteger with one scale per kernel), patched for another
    coefficient set, computes what the same scheme makes of the float model of that set; the
    fast path writes the reference's bytes; a float bias that is not the folded BN bias is
    refused."""
    from basisnet_deploy.artifacts.fast_synthesis import FastSynthesisError, FastSynthesizer
    from basisnet_deploy.converters import get_exporter
    from basisnet_deploy.converters.base import ExportError
    from basisnet_deploy.export.pipeline import _graphs, fold_bases
    from basisnet_deploy.model import checkpoint

    net, cfg = checkpoint.load(ckpt)
    rng = np.random.default_rng(3)
    baked, other = (rng.dirichlet(np.ones(3), size=8).astype(np.float32) for _ in range(2))
    ex, folded = get_exporter(target), fold_bases(net.specialist)
    template = ex.convert(_graphs(net, cfg, baked)["specialist_presynth"], scheme)
    table, bases = ex.patch_table(template, folded, baked, scheme)
    per_tensor = (target, scheme) == ("onnx", "dynamic")
    assert len(table) == 24 and all(p.dtype == "int8" and p.per_tensor == per_tensor
                                    and p.bias_offset == -1 for p in table)
    patched = synthesize(template, table, bases, other)
    fast = FastSynthesizer(template, table, bases=bases)
    assert bytes(fast.synthesize(other)) == patched
    if per_tensor:
        assert fast.kernel == "numpy"
        with pytest.raises(FastSynthesisError, match="per tensor"):
            FastSynthesizer(template, table, bases=bases, kernel="compiled")
    else:  # per channel: the C kernel, where it is built, writes the same bytes
        from basisnet_deploy.artifacts import fast_synthesis

        assert fast.kernel == ("numpy" if fast_synthesis._KERNEL is None else "compiled")
    own = ex.convert(_graphs(net, cfg, other)["specialist_presynth"], scheme)
    x = np.random.default_rng(2).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    name = "t" + ex.suffix
    want = open_session(Path(name), model=own).run({"image": x})["logits"]
    got = open_session(Path(name), model=patched).run({"image": x})["logits"]
    baked_out = open_session(Path(name), model=template).run({"image": x})["logits"]
    error, unpatched = np.abs(got - want).max(), np.abs(baked_out - want).max()
    assert error <= 1e-3 * np.abs(want).max() < unpatched
    # synthesis never rewrites the float biases, so locating the patches checks each one
    layer = next(iter(folded))
    bias = folded[layer].bias
    folded[layer] = dataclasses.replace(folded[layer], bias=bias + 0.01 * (np.abs(bias).max() + 1))
    with pytest.raises(ExportError, match=f"bias of {layer}"):
        ex.patch_table(template, folded, baked, scheme)


def test_the_agreement_gate_refuses_and_leaves_nothing(ckpt, tmp_path, capsys, monkeypatch):
    """Below --min-agreement the export fails with exit 1 and writes nothing; with
    --allow-low-agreement it lands, recorded in the manifest, and check and bench warn.
    The verification is real; only its LM agreement is lowered, so the gate must trip."""
    from basisnet_deploy.export import pipeline

    real = pipeline.verify_directory

    def lowered(*args, **kwargs):
        return lm_agreement(real(*args, **kwargs), 0.75)

    monkeypatch.setattr(pipeline, "verify_directory", lowered)
    out = tmp_path / "gated"
    args = ["export", str(ckpt), "--calibration", "digits", "--calibration-size", "16",
            "--verify-images", "12", "--specialist", "presynth", "--out", str(out)]
    with pytest.raises(SystemExit) as code:
        main(args + ["--min-agreement", "100.5"])
    assert code.value.code == 2  # out of range, refused at parse time
    with pytest.raises(SystemExit) as code:
        main(args)
    err = capsys.readouterr().err
    assert code.value.code == 1 and "Traceback" not in err
    assert "lightweight agrees with the float model on 75.00% of 12 held-out images" in err
    assert not out.exists() and not list(tmp_path.glob(".gated*"))  # no staging left
    with pytest.raises(SystemExit) as code:
        main(args + ["--allow-low-agreement"])
    assert code.value.code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    gate = manifest["agreement_gate"]
    assert (gate["min_agreement"], gate["forced"], gate["below"]) == (99.0, True, {"lightweight": 75.0})
    assert gate["images"] == 12 and gate["interval_95"]["lightweight"][0] < 75.0 < gate["interval_95"]["lightweight"][1]
    # --int8-recipe auto (the default) tried full, then fidelity, and forced the last through
    choice = manifest["recipe_choice"]
    assert [t["recipe"] for t in choice["tried"]] == ["full"] and choice["chosen"] == "fidelity"
    assert manifest["int8_recipe"]["name"] == "fidelity"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["check", str(out)])
    assert "forced through the agreement gate" in capsys.readouterr().out


def test_export_json_out_writes_the_manifest_and_prints_the_table(ckpt, tmp_path, capsys):
    out, doc = tmp_path / "exp", tmp_path / "export.json"
    with pytest.raises(SystemExit) as code:
        main(["export", str(ckpt), "--target", "tflite", "--specialist", "coefficient",
              "--verify-images", "4", "--min-agreement", "0", "--out", str(out), "--json-out", str(doc)])
    assert code.value.code == 0
    assert capsys.readouterr().out.startswith("exported in")
    written = json.loads(doc.read_text())
    assert written == json.loads((out / "manifest.json").read_text())
