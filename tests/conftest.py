import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from basisnet_deploy.model.config import ArchConfig  # noqa: E402

# Small enough to build in a second and train for a few seconds on 2 cores.
TINY = ArchConfig(bases=3, nonshared=(8, 15), width=0.35, resolution=32, light_width=0.35,
                  light_resolution=16, num_classes=10, bn_momentum=0.9)


@pytest.fixture
def tiny():
    return TINY


@pytest.fixture
def sigint_handled():
    """SIGINT reaches Python as in a terminal, for a test that sends one. A process started in
    the background (a shell's `cmd &`, some CI runners) inherits SIGINT ignored, and the code
    under test keeps an ignored SIGINT ignored (a run started with nohup must not stop on it),
    so the test would otherwise depend on how it was launched."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


# Export options that keep tests quick. The agreement gate is off (min_agreement 0): these
# are random-init networks, whose agreement means nothing; tests/test_export.py tests the gate.
FAST = dict(calibration_size=16, verify_images=12, min_agreement=0.0)


def export(checkpoint_dir, out_dir, **options) -> dict:
    """Export with ``ExportOptions(**options)``; the manifest as written to disk (JSON)."""
    from basisnet_deploy.export.pipeline import ExportOptions
    from basisnet_deploy.export.pipeline import export as run_export

    return run_export(checkpoint_dir, out_dir, ExportOptions(**options)).to_json()


def lm_agreement(verification, agreement: float):
    """A verification result whose lightweight model agrees with float on ``agreement``."""
    import dataclasses

    return dataclasses.replace(verification, lightweight=dataclasses.replace(
        verification.lightweight, top1_agreement=agreement))


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory):
    """A random-init TINY checkpoint with non-trivial BN statistics (so folding is tested)."""
    import numpy as np

    from basisnet_deploy.model import checkpoint
    from basisnet_deploy.model.config import BasisNetConfig
    from basisnet_deploy.data import Preprocessing
    from basisnet_deploy.model.network import BasisNet

    import keras

    keras.utils.set_random_seed(0)  # the same random network whatever ran before
    net = BasisNet(TINY)
    rng = np.random.default_rng(0)
    for w in net.weights:
        if w.path == "lm_logits/kernel":  # spread the LM's confidences across inputs
            w.assign(rng.normal(0, 1.0, w.shape).astype("float32"))
        elif "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2.0, w.shape).astype("float32"))
        elif "moving_mean" in w.path or w.path.endswith("beta"):
            w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))
    cfg = BasisNetConfig(TINY, Preprocessing(resize="squash"), tuple("0123456789"),
                         {"dataset": "digits", "settings": {"held_out": 0.2, "seed": 0}})
    return checkpoint.save(tmp_path_factory.mktemp("ck") / "ckpt", net, cfg)


@pytest.fixture(scope="session")
def float_tflite(ckpt, tmp_path_factory):
    """(directory, manifest) of a float TFLite export of ``ckpt``."""

    out = tmp_path_factory.mktemp("exp") / "tflite"
    return out, export(ckpt, out, target="tflite", **FAST)


@pytest.fixture(scope="session")
def int8_tflite(ckpt, tmp_path_factory):
    """(directory, manifest) of an int8 TFLite export of ``ckpt``, calibrated on digits."""

    out = tmp_path_factory.mktemp("exp") / "i8"
    return out, export(ckpt, out, target="tflite", calibration="digits", **FAST)


@pytest.fixture(scope="session")
def float_onnx(ckpt, tmp_path_factory):
    """(directory, manifest) of a float ONNX export of ``ckpt``."""

    out = tmp_path_factory.mktemp("exp") / "onnx"
    return out, export(ckpt, out, target="onnx", **FAST)


@pytest.fixture
def gpu(monkeypatch, tmp_path_factory):
    """LiteRT's GPU accelerator on a GPU for this test: SwiftShader, the software Vulkan GPU in
    Debian's chromium package (with libvulkan1; scripts/install-test-deps.sh installs both),
    unless BASISNET_TEST_GPU=system asks for the machine's own Vulkan driver. Never skipped:
    without a GPU the test fails and says what to install."""
    from basisnet_deploy.runtime.gpu import SWIFTSHADER_ICD

    if os.environ.get("BASISNET_TEST_GPU") != "system":
        if not os.path.isfile(SWIFTSHADER_ICD):
            pytest.fail(f"no GPU for the GPU tests: {SWIFTSHADER_ICD} is missing; run "
                        "scripts/install-test-deps.sh (chromium, libvulkan1) or set "
                        "BASISNET_TEST_GPU=system on a machine with a Vulkan GPU")
        monkeypatch.setenv("VK_ICD_FILENAMES", SWIFTSHADER_ICD)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("xdg")))
    if os.environ.get("BASISNET_TEST_GPU") != "system":  # onnxruntime's WebGPU EP may take SwiftShader
        monkeypatch.setenv("ORT_WEBGPU_EP_ALLOW_SOFTWARE_ADAPTER", "1")
    return os.environ.get("VK_ICD_FILENAMES", "system")


@pytest.fixture(scope="session")
def float16_tflite(ckpt, tmp_path_factory):
    """(directory, manifest) of a float16 TFLite export of ``ckpt``: the GPU-ready export."""

    out = tmp_path_factory.mktemp("exp") / "f16"
    return out, export(ckpt, out, target="tflite", quantize="float16", **FAST)


@pytest.fixture
def refuse_decoding(monkeypatch):
    """Fails the test if any held-out image is decoded: for checks that must come first."""
    from basisnet_deploy.data import heldout

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded before the folder was checked")

    monkeypatch.setattr(heldout, "load_image", no_decoding)
