"""The Android demo's JVM core against the Python toolchain, on golden vectors made here.

Python writes images, coefficients and logits; ``dev.basisnet.core.GoldenTool`` runs the
app's core code on them; the results must be equal: preprocessing tensor for tensor,
synthesized .tflite byte for byte (then run here, same prediction), early-exit decisions.
The core's own unit tests (scheduler order and backpressure, manifest errors, ...) run under
JUnit in ``make jvm-test``.
"""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from basisnet_deploy.export.android import android_assets
from basisnet_deploy.cli import main
from basisnet_deploy.data import Preprocessing
from basisnet_deploy.data import digits, preprocess
from basisnet_deploy.runtime.deployment import Deployment
from tests.conftest import export
from basisnet_deploy.runtime.runner import softmax
from basisnet_deploy.runtime.sessions import open_session
from basisnet_deploy.artifacts.synthesis import synthesize
from basisnet_deploy.artifacts import compact_bases
from basisnet_deploy.artifacts.fast_synthesis import FastSynthesizer, compiled_available

from tests.conftest import FAST

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "android_demo" / "core" / "src"
JAVA = Path("/usr/share/java")


@pytest.fixture(scope="module")
def golden_tool(tmp_path_factory):
    """A command running GoldenTool: the classes ``make jvm-build`` made, or compiled here."""
    if not (shutil.which("java") and shutil.which("javac") and (JAVA / "gson.jar").is_file()):
        msg = ("the JVM core needs JDK 17, Gson and JUnit 5: apt-get install openjdk-17-jdk-headless "
               "libgoogle-gson-java junit5 (make test and .ci/run do)")
        if os.environ.get("BASISNET_JVM_CLASSES"):
            pytest.fail(msg)
        pytest.skip(msg)
    built = os.environ.get("BASISNET_JVM_CLASSES")
    if built:
        cp = f"{Path(built) / 'main'}:{Path(built) / 'test'}:{JAVA / 'gson.jar'}"
    else:  # plain pytest: compile main and test sources together
        classes = tmp_path_factory.mktemp("jvm")
        junit = ":".join(str(JAVA / j) for j in ("junit-jupiter-api.jar", "opentest4j.jar",
                                                 "junit-platform-commons.jar", "apiguardian.jar"))
        subprocess.run(["javac", "--release", "17", "-d", str(classes), "-cp",
                        f"{JAVA / 'gson.jar'}:{junit}", *map(str, CORE.rglob("*.java"))], check=True)
        cp = f"{classes}:{JAVA / 'gson.jar'}"

    def run(jobs: dict, where: Path):
        path = where / "jobs.json"
        path.write_text(json.dumps(jobs))
        subprocess.run(["java", "-cp", cp, "dev.basisnet.core.GoldenTool", str(path)], check=True)

    return run


def _images(tmp_path):
    """RGB PNGs at awkward sizes: noise, gradients, a real digit upscaled."""
    rng = np.random.default_rng(3)
    out = []
    for i, (w, h) in enumerate([(37, 23), (8, 8), (300, 200), (50, 121), (32, 32), (17, 240)]):
        if i % 2 == 0:
            a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        else:
            yy, xx = np.mgrid[0:h, 0:w]
            a = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1),
                          (xx + yy) % 256], -1).astype(np.uint8)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(a, "RGB").save(path)
        out.append(path)
    path = tmp_path / "digit.png"
    digits().images[0].resize((64, 64), Image.NEAREST).save(path)
    out.append(path)
    return out


def test_preprocessing_equals_python_tensor_for_tensor(golden_tool, tmp_path):
    cases = []
    for image in _images(tmp_path):
        for resize in ("squash", "center_crop"):
            for interp in ("bilinear", "bicubic", "nearest"):
                for res, crop, rng in ((16, 0.875, (-1.0, 1.0)), (33, 1.0, (0.0, 1.0)), (224, 0.875, (-1.0, 1.0))):
                    cases.append(dict(image=str(image), resize=resize, interpolation=interp, resolution=res,
                                      crop_fraction=crop, low=rng[0], high=rng[1],
                                      out=str(tmp_path / f"pre{len(cases)}.f32")))
    cases[0].update(scale=0.0078125, zero_point=-1, quantized_out=str(tmp_path / "q0.i8"))
    golden_tool({"preprocess": cases}, tmp_path)

    mismatched = []
    for c in cases:
        pre = Preprocessing(resize=c["resize"], crop_fraction=c["crop_fraction"],
                            input_range=(c["low"], c["high"]), interpolation=c["interpolation"])
        with Image.open(c["image"]) as im:
            want = preprocess(im.convert("RGB"), c["resolution"], pre)
        got = np.fromfile(c["out"], "<f4").reshape(want.shape)
        if not np.array_equal(got, want):
            mismatched.append((Path(c["image"]).name, c["resize"], c["interpolation"], c["resolution"],
                               float(np.max(np.abs(got - want)))))
    assert not mismatched, mismatched
    assert len(cases) == 7 * 2 * 3 * 3

    # Input quantization, as the Python runtime feeds an int8 input
    c = cases[0]
    x = np.fromfile(c["out"], "<f4")
    want_q = np.clip(np.round(x / c["scale"] + c["zero_point"]), -128, 127).astype(np.int8)
    assert np.array_equal(np.fromfile(c["quantized_out"], np.int8), want_q)


def _assets(directory, tmp_path, name):
    return android_assets(directory, tmp_path / name).out


def _template_export(which, int8_tflite, float_tflite, ckpt, tmp_path):
    """An export whose template is ``which``; weight_only: the fidelity recipe's (make demo's),
    int8 kernels and scales with a float bias."""
    if which == "float16":
        export(ckpt, tmp_path / "f16", target="tflite", quantize="float16", specialist="presynth", **FAST)
        return tmp_path / "f16"
    if which == "weight_only":
        export(ckpt, tmp_path / "wo", target="tflite", calibration="digits", specialist="presynth",
               int8_recipe="fidelity", **FAST)
        return tmp_path / "wo"
    return (int8_tflite if which == "int8" else float_tflite)[0]


@pytest.mark.parametrize("which", ["int8", "float32", "float16", "weight_only"])
def test_synthesized_tflite_is_byte_identical_and_predicts_the_same(
        which, golden_tool, int8_tflite, float_tflite, ckpt, tmp_path):
    directory = _template_export(which, int8_tflite, float_tflite, ckpt, tmp_path)
    assets = _assets(directory, tmp_path, "assets")
    dep = Deployment(directory)
    p = dep.presynth()
    int8_template = which in ("int8", "weight_only")
    assert {t.dtype for t in p.table} == {"int8" if int8_template else which}
    assert all(t.bias_offset >= 0 for t in p.table) == (which == "int8")

    # Coefficient sets: the lightweight model's on real digits, a one-hot extreme, a batch mean.
    ds = digits()
    lm = open_session(dep.path("lightweight"))
    frames = [dep.frame(ds.images[i]) for i in (0, 7, 13)]
    real = [np.asarray(lm.run({"image": f[0]})["coefficients"], np.float32)[0] for f in frames]
    onehot = np.zeros_like(real[0])
    onehot[:, -1] = 1
    # All zero: every synthesized channel is dead, so every weight scale is the bias floor.
    sets = real + [onehot, np.mean(real, axis=0), np.zeros_like(real[0])]
    jobs, compact_jobs = [], []
    for i, c in enumerate(sets):
        (tmp_path / f"c{i}.f32").write_bytes(np.ascontiguousarray(c, "<f4").tobytes())
        jobs.append({"coefficients": str(tmp_path / f"c{i}.f32"), "out": str(tmp_path / f"java{i}.tflite")})
        compact_jobs.append({"coefficients": str(tmp_path / f"c{i}.f32"),
                             "out": str(tmp_path / f"java_int8_{i}.tflite")})
    golden_tool({"synthesize": [{"assets": str(assets), "sets": jobs},
                                {"assets": str(assets), "sets": compact_jobs, "compact": True}]}, tmp_path)

    for i, c in enumerate(sets):
        ours = synthesize(p.template, p.table, p.bases, c)
        theirs = (tmp_path / f"java{i}.tflite").read_bytes()
        assert theirs == ours, f"set {i}: JVM synthesis differs from Python's in " \
            f"{int(np.sum(np.frombuffer(theirs, np.uint8) != np.frombuffer(ours, np.uint8)))} bytes"
        assert theirs != p.template or which == "float32"
        x = frames[i % len(frames)][1]
        got = open_session(p.path, model=theirs).run({"image": x})["logits"]
        want = open_session(p.path, model=ours).run({"image": x})["logits"]
        assert int(np.argmax(got)) == int(np.argmax(want))
        np.testing.assert_array_equal(got, want)

    # The same sets from the compact int8 bases (specialist_bases_int8.bin): byte for byte the
    # Python definition (compact_bases.synthesize_reference) and, for int8 templates, the fused
    # kernel (FastSynthesizer(compact=...), compiled and NumPy); LiteRT gives the same logits.
    arrays = dep.compact_bases()
    kernels = (["numpy"] + (["compiled"] if compiled_available() else [])) if int8_template else []
    fast = [FastSynthesizer(p.template, p.table, compact=arrays, kernel=k) for k in kernels]
    for i, c in enumerate(sets):
        ours = compact_bases.synthesize_reference(p.template, p.table, arrays, c)
        theirs = (tmp_path / f"java_int8_{i}.tflite").read_bytes()
        assert theirs == ours, f"set {i}: JVM compact synthesis differs from Python's in " \
            f"{int(np.sum(np.frombuffer(theirs, np.uint8) != np.frombuffer(ours, np.uint8)))} bytes"
        for f in fast:
            assert bytes(f.synthesize(c)) == theirs, f"set {i}: FastSynthesizer({f.kernel}) differs"
        assert theirs != p.template
        x = frames[i % len(frames)][1]
        got = open_session(p.path, model=theirs).run({"image": x})["logits"]
        want = open_session(p.path, model=ours).run({"image": x})["logits"]
        np.testing.assert_array_equal(got, want)


def test_early_exit_decisions_equal_the_runner(golden_tool, float_tflite, tmp_path):
    # Real lightweight logits plus spread random ones (the untrained test LM is near-uniform).
    dep = Deployment(float_tflite[0])
    lm = open_session(dep.path("lightweight"))
    ds = digits()
    real = [np.asarray(lm.run({"image": dep.frame(ds.images[i])[0]})["logits"], np.float32)[0]
            for i in range(0, 200, 4)]
    spread = np.random.default_rng(1).normal(0, 2.5, (150, 10)).astype(np.float32)
    logits = np.concatenate([np.stack(real), spread])
    conf = np.sort(softmax(logits).max(-1))
    # A threshold in the widest gap near the median: float32 softmax may differ in the last
    # ulp between NumPy's SIMD exp and Java's, so a confidence *at* the threshold could flip.
    middle = range(len(conf) // 4, 3 * len(conf) // 4)
    i = max(middle, key=lambda j: conf[j + 1] - conf[j])
    threshold = float((conf[i] + conf[i + 1]) / 2)
    (tmp_path / "logits.f32").write_bytes(np.ascontiguousarray(logits, "<f4").tobytes())
    golden_tool({"decide": {"logits": str(tmp_path / "logits.f32"), "classes": 10,
                            "threshold": threshold, "out": str(tmp_path / "d.txt")}}, tmp_path)
    rows = [r.split() for r in (tmp_path / "d.txt").read_text().split("\n") if r]
    probs = softmax(logits)
    want = [(int(np.argmax(p)), int(float(np.max(p)) >= np.float32(threshold))) for p in probs]
    assert [(int(a), int(b)) for a, b, _ in rows] == want
    np.testing.assert_allclose([float(c) for _, _, c in rows], probs.max(-1), rtol=1e-6)
    assert 0 < sum(e for _, e in want) < len(want)  # both outcomes exercised


def test_android_assets_command(int8_tflite, tmp_path, capsys):
    directory = int8_tflite[0]
    out = tmp_path / "assets"
    with pytest.raises(SystemExit) as e:
        main(["android-assets", str(directory), "--out", str(out), "--json"])
    assert e.value.code == 0
    report = json.loads(capsys.readouterr().out)
    m = json.loads((out / "manifest.json").read_text())
    raw = m["artifacts"]["specialist_presynth"]["bases_raw"]
    assert report["files"]["specialist_bases.bin"] == raw["bytes"]
    with np.load(directory / "specialist_bases.npz") as npz:
        for name, entry in raw["tensors"].items():
            data = np.fromfile(out / "specialist_bases.bin", "<f4", count=int(np.prod(entry["shape"])),
                               offset=entry["offset"]).reshape(entry["shape"])
            np.testing.assert_array_equal(data, npz[name])
    # The compact int8 bases, raw, every tensor at its recorded offset on a 4-byte boundary.
    raw8 = m["artifacts"]["specialist_presynth"]["bases_int8_raw"]
    blob = (out / "specialist_bases_int8.bin").read_bytes()
    assert report["files"]["specialist_bases_int8.bin"] == raw8["bytes"] == len(blob)
    assert raw8["sha256"] == hashlib.sha256(blob).hexdigest()
    assert raw8["format"] == compact_bases.FORMAT and raw8["byte_order"] == "little"
    with np.load(directory / "specialist_bases_int8.npz") as npz:
        want = {k: npz[k] for k in npz.files if k != "format"}
    assert set(raw8["tensors"]) == set(want)
    for name, entry in raw8["tensors"].items():
        dtype = {"int8": np.int8, "float32": "<f4"}[entry["dtype"]]
        assert entry["offset"] % 4 == 0 and np.dtype(dtype) == want[name].dtype
        data = np.frombuffer(blob, dtype, count=int(np.prod(entry["shape"])),
                             offset=entry["offset"]).reshape(entry["shape"])
        np.testing.assert_array_equal(data, want[name])
    with np.load(directory / "specialist_bases.npz") as npz:  # a quarter of the float32 bytes
        for name in (k for k in want if k.endswith("/q8")):
            assert 4 * want[name].nbytes == npz[name[:-len("/q8")]].nbytes
    # Re-running replaces its own output; anything else is refused and left alone.
    with pytest.raises(SystemExit) as e:
        main(["android-assets", str(directory), "--out", str(out)])
    assert e.value.code == 0
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["android-assets", str(directory), "--out", str(other)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "not a basisnet-deploy android-assets directory" in err and "Traceback" not in err
    assert (other / "notes.txt").read_text() == "keep me"
    # A tampered artifact is caught before anything is written.
    bad = tmp_path / "bad"
    shutil.copytree(directory, bad)
    lm = bad / "lightweight.tflite"
    lm.write_bytes(lm.read_bytes()[:1000])
    with pytest.raises(SystemExit) as e:
        main(["android-assets", str(bad), "--out", str(tmp_path / "never")])
    assert e.value.code == 2
    assert "truncated or modified" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
