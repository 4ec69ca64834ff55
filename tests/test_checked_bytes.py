"""A session for an export's artifact runs the bytes that were checked against the manifest.

Each test replaces the model files on disk with other valid models (same inputs and outputs,
other weights) right after the sha256 check: a session that opened the file again would run
the replacement silently.
"""

import shutil

import numpy as np
import pytest

from basisnet_deploy.artifacts import manifest as manifest_module
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.data import digits


def _other_tflite(data: bytes) -> bytes:
    """``data`` with every float32 weight tensor found once in the file negated: a valid
    model, same signature, other outputs."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    it.allocate_tensors()
    out = bytearray(data)
    changed = 0
    for t in it.get_tensor_details():
        if np.dtype(t["dtype"]) != np.float32:
            continue
        try:
            value = it.get_tensor(t["index"])
        except ValueError:
            continue
        raw = value.tobytes()
        if value.size >= 8 and np.all(np.isfinite(value)) and np.any(value) and data.count(raw) == 1:
            at = data.index(raw)
            out[at:at + len(raw)] = (-value).astype(np.float32).tobytes()
            changed += 1
    assert changed, "no weight tensor to change"
    return bytes(out)


def _other_onnx(data: bytes) -> bytes:
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string(data)
    for i, init in enumerate(model.graph.initializer):
        value = numpy_helper.to_array(init)
        if value.dtype == np.float32 and value.size >= 8:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(-value, init.name))
    return model.SerializeToString()


def _swap_models(directory):
    """Every model file of the export replaced by another valid model."""
    m = manifest_module.load_manifest(directory)
    for entry in m.artifacts.values():
        path = directory / entry.file
        data = path.read_bytes()
        path.write_bytes(_other_onnx(data) if entry.file.endswith(".onnx") else _other_tflite(data))


@pytest.fixture
def swap_after_check(monkeypatch):
    """check_files as it is, then every model file swapped on disk."""
    real = manifest_module.check_files

    def check_then_swap(directory, m):
        result = real(directory, m)
        _swap_models(directory)
        return result
    for module in ("basisnet_deploy.artifacts.manifest", "basisnet_deploy.runtime.deployment",
                   "basisnet_deploy.export.check"):
        monkeypatch.setattr(f"{module}.check_files", check_then_swap)


def _frames(dep):
    return [dep.frame(im) for im in digits().images[:4]]


def _outputs(directory, runtime, form):
    """(LM logits, coefficients, specialist logits) of the export run by the runner."""
    from basisnet_deploy.runtime.backends import make_factory
    from basisnet_deploy.runtime.deployment import Deployment
    from basisnet_deploy.runtime.runner import stage_outputs

    dep = Deployment(directory)
    outs = list(stage_outputs(dep, make_factory(runtime, "xnnpack"), form, _frames(dep)))
    return (np.stack([o.lm_logits for o in outs]), np.stack([o.coefficients for o in outs]),
            np.stack([o.logits for o in outs]))


@pytest.mark.parametrize("export, runtime", [("float_tflite", "litert"), ("float_onnx", "onnxruntime")])
def test_the_runner_runs_the_checked_models_when_the_files_are_swapped_after_the_check(
        export, runtime, request, tmp_path):
    from basisnet_deploy.runtime.deployment import Deployment
    from basisnet_deploy.runtime.sessions import open_session

    directory = tmp_path / "ex"
    shutil.copytree(request.getfixturevalue(export)[0], directory)
    dep = Deployment(directory)
    forms = [f for f, role in (("coefficient", "specialist_coefficient"), ("presynth", "specialist_presynth"))
             if role in {r.value for r in dep.artifacts}]
    assert forms
    want = {form: _outputs(directory, runtime, form) for form in forms}
    light = dep.path("lightweight")
    _swap_models(directory)
    swapped = open_session(light)  # the replacement computes other logits
    other = np.stack([np.asarray(swapped.run({"image": f[0]})["logits"], np.float32)[0]
                      for f in _frames(dep)])
    assert not np.allclose(other, want[forms[0]][0])
    shutil.rmtree(directory)
    shutil.copytree(request.getfixturevalue(export)[0], directory)
    request.getfixturevalue("swap_after_check")
    for form in forms:
        got = _outputs(directory, runtime, form)
        for w, g in zip(want[form], got):
            np.testing.assert_array_equal(w, g)
        shutil.rmtree(directory)  # the next Deployment checks the original files again
        shutil.copytree(request.getfixturevalue(export)[0], directory)


def test_verification_refuses_a_file_swapped_after_the_check(float_tflite, tmp_path, swap_after_check):
    from basisnet_deploy.export.verify import Artifacts

    directory = tmp_path / "ex"
    shutil.copytree(float_tflite[0], directory)
    m = manifest_module.load_manifest(directory)
    manifest_module.check_files(directory, m)  # swaps the files after the check
    with pytest.raises(UserError, match="lightweight.tflite.*sha256 differs"):
        Artifacts(directory, m)


def test_no_session_of_an_export_opens_its_file_by_path(float_tflite, tmp_path, monkeypatch, capsys):
    """check and predict: every LiteRT interpreter is made from bytes."""
    from basisnet_deploy.cli import main
    from basisnet_deploy.runtime import sessions

    real = sessions._litert_interpreter_module()
    paths = []

    class Spy:
        OpResolverType = real.OpResolverType
        load_delegate = staticmethod(real.load_delegate)

        @staticmethod
        def Interpreter(model_path=None, **kwargs):
            if model_path is not None:
                paths.append(model_path)
            return real.Interpreter(model_path=model_path, **kwargs)
    monkeypatch.setattr(sessions, "_litert_interpreter_module", lambda: Spy)
    directory = tmp_path / "ex"
    shutil.copytree(float_tflite[0], directory)
    image = tmp_path / "digit.png"
    digits().images[0].save(image)
    for argv in (["check", str(directory)], ["predict", str(directory), str(image)],
                 ["predict", str(directory), str(image), "--specialist-form", "coefficient"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0, capsys.readouterr().err
    assert paths == []


def test_an_onnx_model_with_external_data_is_refused_by_name(tmp_path, monkeypatch):
    """A session loads the checked bytes, from which onnxruntime cannot resolve another file,
    and the manifest has no sha256 for one: refused even where onnx.checker finds the file."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import set_external_data

    from basisnet_deploy.artifacts.model_check import ModelCheckError, check_model_bytes

    monkeypatch.chdir(tmp_path)
    weights = np.ones((2, 2), np.float32)
    (tmp_path / "weights.bin").write_bytes(weights.tobytes())
    w = numpy_helper.from_array(weights, "w")
    set_external_data(w, location="weights.bin")
    w.ClearField("raw_data")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    onnx.checker.check_model(onnx.load_model_from_string(data))  # the checker alone lets it pass
    with pytest.raises(ModelCheckError, match=r"m\.onnx: tensor 'w' is stored in an external data file"):
        check_model_bytes(data, tmp_path / "m.onnx")
