"""The full-integer recipe with int16 activations (``--int8-recipe full-16x8``), on the tiny
random checkpoint: what its artifacts are made of, read from the files themselves, and what
its recipe data does. Whether it keeps the float model's answers is measured on held-out
photos (tests/test_fidelity_photos.py, benchmarks/results/full_integer_a16w8/)."""

import json

import numpy as np
import pytest

from basisnet_deploy.common.errors import UserError
from tests.conftest import FAST, export

RECIPE = dict(calibration="digits", int8_recipe="full-16x8", specialist="presynth", tuning_steps=20)
INT16 = np.dtype(np.int16)


@pytest.fixture(scope="module")
def tflite_16x8(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "a16w8"
    return out, export(ckpt, out, target="tflite", **RECIPE, **FAST)


@pytest.fixture(scope="module")
def onnx_16x8(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "a16w8-onnx"
    return out, export(ckpt, out, target="onnx", **RECIPE, **FAST)


def _tflite_ops(path) -> list[tuple[str, list, list]]:
    """(op name, input dtypes, output dtypes) of every op, from the flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    tensors = {t["index"]: np.dtype(t["dtype"]) for t in it.get_tensor_details()}
    return [(op["op_name"], [tensors.get(i) for i in op["inputs"]], [tensors[i] for i in op["outputs"]])
            for op in it._get_ops_details()]


def test_every_tflite_conv_and_dense_op_runs_int8_weights_on_int16_activations(tflite_16x8):
    directory, manifest = tflite_16x8
    for role in ("lightweight", "specialist_presynth"):
        assert manifest["artifacts"][role]["quantization"] == "int16x8"
        ops = _tflite_ops(directory / manifest["artifacts"][role]["file"])
        weighted = [op for op in ops if op[0] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
        assert len(weighted) >= 5, role
        for name, ins, outs in weighted:
            assert ins[0] == INT16 and ins[1] == np.int8 and outs == [INT16], (role, name, ins, outs)
            assert ins[2] in (None, np.int64), (role, name, ins)  # 16x8 kernels take int64 biases
        # integer from end to end: float only at the model's input and outputs
        inner = [op for op in ops if op[0] not in ("QUANTIZE", "DEQUANTIZE")]
        assert all(np.float32 not in ins + outs for _, ins, outs in inner), role
        assert [op[0] for op in ops].count("QUANTIZE") == 1, role  # the image, once


def test_the_manifest_records_the_recipes_range_choices(tflite_16x8):
    _, manifest = tflite_16x8
    recipe = manifest["int8_recipe"]
    assert recipe["name"] == "full-16x8"
    assert set(recipe["schemes"].values()) == {"int16x8"}
    assert recipe["activation_ranges"] == {"margin": 1.5, "role_margins": {"lightweight": 3.0},
                                           "within_op_bounds": True,
                                           "template_ranges": "each calibration image's own kernels"}
    assert "specialist_coefficient" not in recipe["schemes"]
    assert set(manifest["weight_tuning"]) == {"lightweight", "specialist_presynth"}


@pytest.mark.parametrize("role", ["lightweight", "specialist_presynth"])
def test_the_image_range_is_the_calibration_images_extremes_widened_by_the_roles_margin(tflite_16x8, ckpt, role):
    """Each model's input QUANTIZE scale is its role's margin x max |pixel| / 32767 over the
    calibration images at its resolution: the extremes, not ai-edge-quantizer's moving average
    of them, widened by the margin the recipe gives that role (symmetric int16): 3x for the
    lightweight model, 1.5x for the template."""
    from ai_edge_litert.interpreter import Interpreter

    from basisnet_deploy.calibration.images import calibration_images
    from basisnet_deploy.data import preprocess
    from basisnet_deploy.model import checkpoint
    from basisnet_deploy.targets.kinds import Role
    from basisnet_deploy.targets.recipes import FULL_16X8

    directory, manifest = tflite_16x8
    _, cfg = checkpoint.load(ckpt)
    a = cfg.architecture
    resolution = a.light_resolution if role == "lightweight" else a.resolution
    calib = calibration_images("digits", FAST["calibration_size"], seed=0)
    extreme = max(float(np.abs(preprocess(im, resolution, cfg.preprocessing)).max()) for im in calib.images)
    it = Interpreter(model_path=str(directory / manifest["artifacts"][role]["file"]))
    quantize = next(op for op in it._get_ops_details() if op["op_name"] == "QUANTIZE")
    scale = it.get_tensor_details()[quantize["outputs"][0]]["quantization"][0]
    margin = FULL_16X8.ranges.margin_for(Role(role))
    assert margin == {"lightweight": 3.0, "specialist_presynth": 1.5}[role]
    assert scale == pytest.approx(margin * extreme / 32767, rel=1e-4)


def test_the_template_is_patched_with_int64_biases_by_both_synthesizers(tflite_16x8):
    """Beside int16 activations the bias is int64: the reference synthesize(), the runner's
    synthesizer and the compiled kernel and NumPy path each write the same bytes, and the
    patched template runs."""
    from basisnet_deploy.artifacts.manifest import load_manifest
    from basisnet_deploy.artifacts.synthesis import load_presynth, synthesize
    from basisnet_deploy.runtime.sessions import LiteRTSession
    from basisnet_deploy.runtime.synthesizer import model_bytes_fn
    from basisnet_deploy.targets.kinds import Role

    directory, _ = tflite_16x8
    manifest = load_manifest(directory)
    presynth = load_presynth(directory, manifest.artifacts[Role.SPECIALIST_PRESYNTH])
    assert {p.bias_dtype for p in presynth.table} == {"int64"}
    k = next(iter(presynth.bases.values())).shape[0]
    coefficients = np.random.default_rng(0).dirichlet(np.ones(k), size=1 + max(p.slot for p in presynth.table))
    reference = synthesize(presynth.template, presynth.table, presynth.bases, coefficients)
    assert model_bytes_fn(presynth)(coefficients) == reference != presynth.template
    from basisnet_deploy.artifacts.fast_synthesis import FastSynthesizer, compiled_available

    auto = FastSynthesizer(presynth.template, presynth.table, bases=presynth.bases)
    assert auto.kernel == ("compiled" if compiled_available() else "numpy")  # int64 biases too
    for kernel in ("numpy", "compiled") if compiled_available() else ("numpy",):
        fast = FastSynthesizer(presynth.template, presynth.table, bases=presynth.bases, kernel=kernel)
        assert bytes(fast.synthesize(coefficients)) == reference, kernel
    session = LiteRTSession(reference, name="synthesized")
    out = session.run({"image": np.zeros((1, 32, 32, 3), np.float32)})
    assert all(np.all(np.isfinite(v)) for v in out.values())


def test_the_gpu_accelerator_refuses_int16_activations_and_the_static_guess_says_so(tflite_16x8, gpu):
    """Run on LiteRT's GPU accelerator (SwiftShader): 'Tensor type(INT16) is not supported'.
    Without a device, the export's static guess for this kind of artifact says the same."""
    from basisnet_deploy.runtime.gpu import GpuStatus, probe_gpu, static_gpu_guess

    directory, manifest = tflite_16x8
    for role in ("lightweight", "specialist_presynth"):
        path = directory / manifest["artifacts"][role]["file"]
        verdict = probe_gpu(path)
        assert verdict.status is GpuStatus.REFUSED and "INT16" in json.dumps(verdict.to_json()), verdict
        guess = static_gpu_guess(path)
        assert guess.status is GpuStatus.STATIC_GUESS and guess.reason.startswith("refused"), guess


def test_every_onnx_conv_reads_int16_activations_and_int8_weights(onnx_16x8):
    import onnx
    from onnx import numpy_helper

    directory, manifest = onnx_16x8
    for role in ("lightweight", "specialist_presynth"):
        assert manifest["artifacts"][role]["quantization"] == "int16x8"
        model = onnx.load(directory / manifest["artifacts"][role]["file"])
        values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        producers = {out: node for node in model.graph.node for out in node.output}
        convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
        assert len(convs) >= 5, role
        for node in convs:
            x, w = (producers[node.input[i]] for i in (0, 1))
            assert x.op_type == w.op_type == "DequantizeLinear", (role, node.name)
            assert values[x.input[2]].dtype == np.int16, (role, node.name)
            assert values[w.input[0]].dtype == np.int8, (role, node.name)


def test_the_recipe_makes_no_coefficient_input_specialist_and_says_which_to_ask_for(ckpt, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(UserError, match="makes no specialist_coefficient.*--specialist presynth"):
        export(ckpt, out, **{**RECIPE, "specialist": "all"}, **FAST)
    assert not out.exists()


def test_android_assets_refuses_an_int16x8_template(tflite_16x8, tmp_path):
    from basisnet_deploy.export.android import android_assets

    directory, _ = tflite_16x8
    with pytest.raises(UserError, match="int16 activations.*--int8-recipe full or fidelity"):
        android_assets(directory, tmp_path / "assets")
    assert not (tmp_path / "assets").exists()


def test_the_recipe_is_listed_with_its_summary_in_export_help():
    from click.testing import CliRunner

    from basisnet_deploy.cli import cli

    result = CliRunner().invoke(cli, ["export", "--help"])
    text = " ".join(result.output.split())
    assert "'full-16x8': full-integer: int8 weights tuned" in text
    assert "--int8-recipe fidelity-int8-lm or full-16x8 only: steps that tune" in text


def test_the_layer_report_ranks_the_error_each_int16x8_op_adds(tflite_16x8):
    """Both full-integer models get the per-layer report the static int8 ones get: every
    int16 tensor dequantized and compared with the float model's on calibration images, the
    op that adds the most error first, the manifest naming each model's worst tensor."""
    directory, manifest = tflite_16x8
    report = json.loads((directory / manifest["layer_report"]["file"]).read_text())
    assert set(report["artifacts"]) == {"lightweight", "specialist_presynth"}
    for role, rows in report["artifacts"].items():
        assert isinstance(rows, list) and len(rows) > 5, (role, rows)
        added = [r["added"] for r in rows]
        assert added == sorted(added, reverse=True), role
        # the weights are on their int8 grid in both models, so this is the int16 activations'
        # error: 0.0003 (LM) and 0.003 (template) here; a misread scale gives ~1 or more
        assert 0 < rows[0]["added"] <= max(r["rel_rms"] for r in rows) < 0.05, (role, rows[:3])
        assert manifest["layer_report"]["worst"][role] == rows[0]


def test_predict_says_the_int16x8_specialist_ran_on_the_builtin_kernels(tflite_16x8, tmp_path, capsys):
    """XNNPACK has no 16x8 kernels and takes none of the template's ops: the processor printed
    says so rather than "CPU (XNNPACK)" (a float export prints that: tests/test_runner.py)."""
    from basisnet_deploy.cli import main
    from basisnet_deploy.data import digits

    path = str(tmp_path / "0.png")
    digits().images[0].save(path)
    with pytest.raises(SystemExit) as code:
        main(["predict", str(tflite_16x8[0]), path, "--json", "--threshold", "1"])
    assert code.value.code == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["stage"] == "specialist"
    assert row["specialist_processor"] == "CPU (builtin kernels: XNNPACK took none of the ops)"


def test_an_export_stopped_while_tuning_goes_on_from_the_saved_state(ckpt, tflite_16x8, tmp_path,
                                                                     sigint_handled):
    """SIGINT during the LM's tuning: nothing lands, the tuning's state stays beside the output,
    and the same export goes on from it to what the uninterrupted export kept (the module's
    export, same options); once the export lands the state is gone."""
    import os
    import signal

    from basisnet_deploy.export.pipeline import ExportOptions, export as run_export, tuning_state_dir
    from basisnet_deploy.quantization.settings import TuningInterrupted

    out = tmp_path / "a16w8"
    options = ExportOptions(target="tflite", **RECIPE, **FAST)

    def interrupt(message):
        if "step 10/20" in message:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TuningInterrupted, match="SIGINT stopped the int8 weight tuning after step 10/20"):
        run_export(ckpt, out, options, interrupt)
    assert not out.exists()
    assert (tuning_state_dir(out) / "lightweight" / "run.json").is_file()
    tuning = run_export(ckpt, out, options).to_json()["weight_tuning"]
    assert not tuning_state_dir(out).exists()
    whole = tflite_16x8[1]["weight_tuning"]
    assert tuning["lightweight"]["resumed_from_step"] == 10
    assert tuning["specialist_presynth"]["resumed_from_step"] == 0  # not reached when stopped
    for role in whole:
        assert (tuning[role]["best_step"], tuning[role]["held_back_loss"]) == \
            (whole[role]["best_step"], whole[role]["held_back_loss"]), role


def test_a_gpu_fallback_says_what_ran_the_int16x8_specialist(tflite_16x8, tmp_path, capsys):
    """The GPU does not run int16x8 models (or there is no GPU): with --allow-fallback the
    specialist runs on the CPU, and the note names what ran it, the builtin kernels, not
    "CPU (XNNPACK)", which took none of its ops."""
    from basisnet_deploy.cli import main
    from basisnet_deploy.data import digits

    path = str(tmp_path / "0.png")
    digits().images[0].save(path)
    with pytest.raises(SystemExit) as code:
        main(["predict", str(tflite_16x8[0]), path, "--json", "--threshold", "1",
              "--delegate", "gpu", "--allow-fallback"])
    assert code.value.code == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["specialist_processor"] == "CPU (fallback)"
    assert row["fallback"].startswith("gpu unavailable (")
    assert row["fallback"].endswith("; ran on CPU (builtin kernels: XNNPACK took none of the ops)")


def _add_model_out_of_scale():
    """Two convs whose outputs reach ~1e6, then relu6 of their sum: the ADD's output range (6)
    is far more than 16,384x narrower than its inputs'."""
    import keras
    import tensorflow as tf

    from basisnet_deploy.calibration.reader import FeedReader
    from basisnet_deploy.converters.base import Graph

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    image = keras.Input((8, 8, 4), batch_size=1, name="image")
    convs = [keras.layers.Conv2D(8, 1, name=f"wide{i}") for i in range(2)]
    x = keras.layers.ReLU(6.0)(keras.layers.Add()([conv(image) for conv in convs]))
    model = keras.Model(image, keras.layers.GlobalAveragePooling2D()(x))
    for conv in convs:
        kernel, bias = conv.get_weights()
        conv.set_weights([rng.normal(0, 1e6, kernel.shape).astype(np.float32), bias])
    graph = Graph("lightweight", model, lambda image: {"logits": model(image)},
                  [tf.TensorSpec([1, 8, 8, 4], tf.float32, name="image")], ["logits"])
    feeds = [{"image": rng.standard_normal((1, 8, 8, 4)).astype(np.float32)} for _ in range(4)]
    return graph, FeedReader(feeds)


def test_an_int16_add_litert_cannot_prepare_is_refused_with_its_name():
    """LiteRT aborts the whole process (SIGABRT, nothing to catch) when it prepares an int16
    ADD whose output range is over 16,384x narrower than an input's; the converter refuses
    such a model with one message naming the op, instead of writing it."""
    from basisnet_deploy.converters.base import ExportError
    from basisnet_deploy.converters.tflite import TFLiteExporter

    graph, calibration = _add_model_out_of_scale()
    with pytest.raises(ExportError, match=r"lightweight: int16x8 gave the ADD/SUB '.*' an output range "
                                          r"6 against an input range of .*LiteRT's int16 kernel"):
        TFLiteExporter().convert(graph, "int16x8", calibration)


def test_litert_aborts_on_the_int16_add_the_converter_refuses(tmp_path, monkeypatch):
    """The premise of the check above, in this LiteRT: the same model, written without the
    check, kills the interpreter's process with SIGABRT when it is prepared."""
    import signal
    import subprocess
    import sys

    from basisnet_deploy.converters import tflite
    from basisnet_deploy.converters.tflite import TFLiteExporter

    graph, calibration = _add_model_out_of_scale()
    monkeypatch.setattr(tflite, "_check_int16_adds", lambda model, graph: None)
    path = tmp_path / "add.tflite"
    path.write_bytes(TFLiteExporter().convert(graph, "int16x8", calibration))
    script = ("from ai_edge_litert.interpreter import Interpreter\n"
              f"Interpreter(model_path={str(path)!r}).allocate_tensors()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120,
                          cwd=tmp_path)  # a core file, where enabled, lands there
    assert proc.returncode == -signal.SIGABRT, proc.stderr.decode()[-500:]


def test_onnxruntime_runs_an_int16_add_of_any_range_as_a_float_add(onnx_16x8):
    """The ONNX target needs no check like LiteRT's: onnxruntime keeps an int16 QDQ Add as
    DequantizeLinear -> float Add -> QuantizeLinear (no integer rescale), so an output range
    100,000x narrower than its inputs' saturates instead of aborting; and in the recipe's own
    artifacts no Add is fused into an integer op."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    def qdq(src, name, scale):
        return [helper.make_node("QuantizeLinear", [src, f"{name}_s", f"{name}_z"], [f"{name}_q"]),
                helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_d"])]

    inits = [t for n, sc in (("a", 1.0), ("b", 1.0), ("o", 1e-5))
             for t in (numpy_helper.from_array(np.array(sc, np.float32), f"{n}_s"),
                       numpy_helper.from_array(np.array(0, np.int16), f"{n}_z"))]
    nodes = qdq("x", "a", 1.0) + qdq("y", "b", 1.0) + [helper.make_node("Add", ["a_d", "b_d"], ["s"])]
    nodes += qdq("s", "o", 1e-5)
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("x", "y")]
    graph = helper.make_graph(nodes, "add16", io,
                              [helper.make_tensor_value_info("o_d", TensorProto.FLOAT, [4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": np.array([0, 1, -1, 3], np.float32),
                             "y": np.array([0, 0, 0, -3], np.float32)})[0]
    assert got == pytest.approx([0, 32767e-5, -32768e-5, 0], abs=1e-6)  # saturated, exact

    out, _ = onnx_16x8
    for artifact in sorted(out.glob("*.onnx")):
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(out.parent / f"{artifact.stem}.optimized.onnx")
        ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])
        ops = {n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node}
        assert "Add" in ops or "Sum" in ops or "Conv" in ops, (artifact.name, ops)
        assert not ops & {"QLinearAdd", "QLinearConv", "QLinearMatMul"}, (artifact.name, ops)
