"""LiteRT's GPU accelerator, run for real: on SwiftShader (a software Vulkan GPU) here and in
CI, or the machine's own GPU with BASISNET_TEST_GPU=system (tests/conftest.py ``gpu``).

What each test would catch:
- the GPU export's artifacts not compiling fully on the GPU, or computing something else;
- the int8 artifacts the accelerator miscompiles reported as running (the old "compatible");
- the static guess (no device) disagreeing with what the accelerator does;
- bench/predict silently running the specialist on the CPU, or on a GPU that miscomputes;
- a GPU failure ending in a traceback or in numbers instead of one error line.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from basisnet_deploy.cli import main
from basisnet_deploy.data import digits
from basisnet_deploy.runtime.gpu import (GPU_TOLERANCE, GpuStatus, artifact_kind, probe_gpu,
                                         static_gpu_guess)

ROLES = ("lightweight", "specialist_coefficient", "specialist_presynth")


def test_the_gpu_export_runs_fully_on_the_gpu_and_matches_the_cpu(gpu, float16_tflite):
    out, manifest = float16_tflite
    for role in ROLES:
        verdict = probe_gpu(out / manifest["artifacts"][role]["file"])
        assert verdict.status is GpuStatus.RUNS, (role, verdict)
        assert verdict.max_rel < 1e-3 and verdict.probes == 3, (role, verdict)
        assert verdict.adapter, verdict  # the device the accelerator chose is named
        assert verdict.top1_agreement == 1.0, (role, verdict)


def test_int8_artifacts_get_the_accelerators_verdict_and_the_guess_matches_it(gpu, int8_tflite):
    """The `full` recipe: static int8 artifacts miscompute (a rejected shader), the
    dynamic-range coefficient-input specialist runs; never "compatible" for the former."""
    out, manifest = int8_tflite
    expected = {"lightweight": GpuStatus.MISCOMPUTES, "specialist_presynth": GpuStatus.MISCOMPUTES,
                "specialist_coefficient": GpuStatus.RUNS}
    for role, status in expected.items():
        path = out / manifest["artifacts"][role]["file"]
        verdict = probe_gpu(path)
        assert verdict.status is status, (role, verdict)
        if status is GpuStatus.MISCOMPUTES:
            assert "shader" in verdict.reason, verdict
        # without a device, check's static guess names the same outcome
        assert static_gpu_guess(path).reason.startswith(status.value), (role, artifact_kind(path))


def test_check_reports_the_accelerators_verdict(gpu, int8_tflite, capsys):
    out, _ = int8_tflite
    with pytest.raises(SystemExit) as e:
        main(["check", str(out), "--json"])
    assert e.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lightweight"]["gpu"]["status"] == "miscomputes"
    assert report["specialist_coefficient"]["gpu"]["status"] == "runs"
    assert "SwiftShader" in report["lightweight"]["gpu"]["adapter"] or gpu == "system"


def test_no_device_is_one_error_with_the_fix_or_a_fallback_that_says_so(float16_tflite, tmp_path,
                                                                        monkeypatch, capsys):
    out, _ = float16_tflite
    monkeypatch.setenv("VK_ICD_FILENAMES", str(tmp_path / "no-such-icd.json"))
    image = tmp_path / "digit.png"
    digits().images[0].save(image)
    with pytest.raises(SystemExit) as e:
        main(["predict", str(out), str(image), "--delegate", "gpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("Error:") and "no GPU device" in err[0] and "--allow-fallback" in err[0]
    with pytest.raises(SystemExit) as e:
        main(["predict", str(out), str(image), "--delegate", "gpu", "--allow-fallback"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("FALLBACK: gpu unavailable")


def test_a_specialist_the_gpu_miscomputes_is_an_error_naming_it(gpu, int8_tflite, capsys):
    out, _ = int8_tflite
    with pytest.raises(SystemExit) as e:
        main(["bench", str(out), "--delegate", "gpu", "--specialist-form", "presynth", "--frames", "5"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("  ")]
    assert e.value.code == 2 and len(err) == 1, err
    assert "specialist_presynth.tflite" in err[0] and "miscomputes" in err[0] and "float16" in err[0]


@pytest.mark.parametrize("form", ["coefficient", "presynth"])
def test_bench_runs_the_specialist_on_the_gpu_and_compares_it_with_the_cpu(gpu, float16_tflite, form):
    from basisnet_deploy.report.bench import BenchOptions, bench

    out, _ = float16_tflite
    report = bench(out, BenchOptions(delegate="gpu", form=form, frames=12, warmup=2, gpu_check_frames=12))
    assert report.fallback is None
    assert report.processors["specialist"].startswith("GPU: ") and report.processors["lightweight"] == "CPU (XNNPACK)"
    g = report.gpu
    assert g.frames_compared == 12 and g.top1_agreement == 1.0 and g.max_rel < GPU_TOLERANCE, g
    assert g.compile_ms > 0 and g.software == ("SwiftShader" in (g.adapter or ""))
    for mode in ("sequential", "pipelined"):
        assert report.runners[mode].throughput_fps > 0
    if form == "presynth":  # a re-synthesis on the GPU: new coefficients to the first output
        synthesis = report.stages["synthesis"]
        assert synthesis.to_first_output_ms["p50"] >= synthesis.with_session_recreation_ms["p50"] > 0
        assert report.runners["sequential"].resyntheses >= 1


def test_predict_on_the_gpu_gives_the_cpus_top1(gpu, float16_tflite, tmp_path):
    from basisnet_deploy.runtime.predict import RuntimeOptions, predict

    out, _ = float16_tflite
    paths = []
    for i, im in enumerate(digits().images[:4]):
        paths.append(str(tmp_path / f"{i}.png"))
        im.save(paths[-1])
    on_gpu = predict(out, paths, RuntimeOptions(delegate="gpu"), threshold=1.0)
    on_cpu = predict(out, paths, RuntimeOptions(delegate="xnnpack", form="coefficient"), threshold=1.0)
    assert all(p.specialist_processor.startswith("GPU") and p.stage == "specialist" for p in on_gpu)
    assert [p.index for p in on_gpu] == [p.index for p in on_cpu]
    assert np.allclose([p.confidence for p in on_gpu], [p.confidence for p in on_cpu], atol=1e-4)


def test_export_records_the_gpu_verdict_when_a_device_is_present(gpu, ckpt, tmp_path):
    from tests.conftest import FAST, export

    manifest = export(ckpt, tmp_path / "f16", target="tflite", quantize="float16",
                      specialist="coefficient", **FAST)
    for role in ("lightweight", "specialist_coefficient"):
        verdict = manifest["artifacts"][role]["gpu"]
        assert verdict["status"] == "runs" and verdict["adapter"], verdict


def test_onnx_exports_run_on_onnxruntimes_webgpu_ep(gpu, float_onnx, tmp_path):
    """onnxruntime-ep-webgpu: every node on the WebGPU EP (CPU fallback disabled), outputs as
    the CPU EP's; predict through it gives the CPU's answer."""
    from basisnet_deploy.runtime.gpu import onnx_webgpu_devices, probe_onnx_webgpu
    from basisnet_deploy.runtime.predict import RuntimeOptions, predict

    out, manifest = float_onnx
    devices, why = onnx_webgpu_devices()
    assert devices, why
    for role in ("lightweight", "specialist_coefficient"):
        verdict = probe_onnx_webgpu(out / manifest["artifacts"][role]["file"], devices, count=1)
        assert verdict.status is GpuStatus.RUNS and verdict.max_rel < 1e-3, (role, verdict)
    from basisnet_deploy.export.check import check_export

    report = check_export(out).to_json()
    assert {report[r]["gpu"]["status"] for r in ROLES} == {"runs"}, report
    path = str(tmp_path / "0.png")
    digits().images[0].save(path)
    on_gpu = predict(out, [path], RuntimeOptions(delegate="gpu"), threshold=1.0)
    on_cpu = predict(out, [path], RuntimeOptions(form="coefficient"), threshold=1.0)
    assert on_gpu[0].specialist_processor == "GPU: WebGpu EP"
    assert on_gpu[0].index == on_cpu[0].index
    assert abs(on_gpu[0].confidence - on_cpu[0].confidence) < 1e-4


def test_bench_gpu_on_the_demo_exports_recipe_runs_the_specialist_on_the_gpu(gpu, tmp_path, capsys):
    """`make demo`'s export (demo preset, int8 `fidelity` recipe; random weights here, the
    ops are the same): its default GPU form, the dynamic-range coefficient-input specialist,
    runs on the GPU with no fallback; its weight-only template is refused, by name."""
    import keras

    from basisnet_deploy.data import Preprocessing
    from basisnet_deploy.model import checkpoint
    from basisnet_deploy.model.config import PRESETS, BasisNetConfig
    from basisnet_deploy.model.network import BasisNet

    keras.utils.set_random_seed(0)
    cfg = BasisNetConfig(PRESETS["demo"], Preprocessing(resize="squash"), tuple("0123456789"),
                         {"dataset": "digits", "settings": {"held_out": 0.2, "seed": 0}})
    ckpt = checkpoint.save(tmp_path / "ckpt", BasisNet(cfg.architecture), cfg)
    out = tmp_path / "export"
    with pytest.raises(SystemExit) as e:
        main(["export", str(ckpt), "--target", "tflite", "--calibration", "digits", "--calibration-size",
              "32", "--int8-recipe", "fidelity", "--verify-images", "8", "--min-agreement", "0",
              "--out", str(out), "--json"])
    assert e.value.code == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["artifacts"]["specialist_coefficient"]["gpu"]["status"] == "runs"
    assert manifest["artifacts"]["specialist_presynth"]["gpu"]["status"] == "refused"
    with pytest.raises(SystemExit) as e:
        main(["bench", str(out), "--delegate", "gpu", "--frames", "12", "--warmup", "2", "--json"])
    assert e.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fallback"] is None and report["specialist_form"] == "coefficient"
    assert report["processors"]["specialist"].startswith("GPU: ")
    assert report["gpu"]["top1_agreement"] == 1.0 and report["gpu"]["max_rel"] < GPU_TOLERANCE


@pytest.mark.parametrize("library, says", [("missing.so", "no such file"), ("README.md", "no ELF header"),
                                           ("numpy", "cannot load this delegate library")])
def test_a_bad_delegate_path_is_one_error_line(float16_tflite, tmp_path, capsys, library, says):
    """With or without --delegate gpu: never a traceback, nor ai-edge-litert's complaint from
    its half-made Delegate."""
    from pathlib import Path

    out, _ = float16_tflite
    numpy_library = next((Path(np.__file__).parent / "_core").glob("_multiarray_umath*.so"))  # ELF, no delegate
    path = {"missing.so": str(tmp_path / "missing.so"), "README.md": str(Path(__file__).parent.parent / "README.md"),
            "numpy": str(numpy_library)}[library]
    image = tmp_path / "digit.png"
    digits().images[0].save(image)
    for delegate in (["--delegate", "gpu"], []):
        with pytest.raises(SystemExit) as e:
            main(["predict", str(out), str(image), "--delegate-path", path, *delegate])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and err[0].startswith("Error:") and says in err[0], err


def test_a_gpu_session_refuses_an_artifact_the_gpu_miscompiles(gpu, int8_tflite):
    """Whatever reaches the GPU unchecked (bench's baseline, say) is refused when its shaders
    fail, not run for numbers."""
    from basisnet_deploy.runtime.gpu import GpuContext, GpuUnavailable

    out, manifest = int8_tflite
    context = GpuContext()
    try:
        with pytest.raises(GpuUnavailable, match="shader failed"):
            context.session(str(out / manifest["artifacts"]["lightweight"]["file"]), name="lightweight")
    finally:
        context.close()


def test_nan_outputs_never_count_as_agreement():
    from basisnet_deploy.runtime.gpu import relative_error

    ref = np.array([1.0, -2.0, 3.0], np.float32)
    assert relative_error(ref, ref) == 0.0
    assert relative_error(ref, np.array([1.0, np.nan, 3.0], np.float32)) == float("inf")
    assert not relative_error(ref, np.full(3, np.inf, np.float32)) <= GPU_TOLERANCE
    # nor as the same answer: argmax reads an all-NaN output as class 0, the CPU's answer here
    from basisnet_deploy.runtime.gpu import GpuStatus, GpuVerdict, _compare

    cpu = [{"logits": np.array([[3.0, 1.0, 0.0]], np.float32)}] * 2
    gpu = [{"logits": np.full((1, 3), np.nan, np.float32)}, cpu[0]]
    verdict = _compare(GpuVerdict("specialist", GpuStatus.RUNS), cpu, gpu)
    assert (verdict.top1_agreement, verdict.status) == (0.5, GpuStatus.MISCOMPUTES), verdict


def test_answers_of_non_finite_rows_match_nothing():
    from basisnet_deploy.common.answers import NO_ANSWER, agreeing, answers, same_answer

    logits = np.array([[0.0, 2.0], [np.nan, 0.0], [np.inf, 0.0], [np.nan, np.nan]], np.float32)
    assert answers(logits).tolist() == [1, NO_ANSWER, NO_ANSWER, NO_ANSWER]
    assert agreeing(logits, logits).tolist() == [True, False, False, False]  # NaN never equals NaN
    assert same_answer([0.0, 2.0], np.array([[1.0, 5.0]])) and not same_answer([2.0, 0.0], [np.nan, 1.0])
