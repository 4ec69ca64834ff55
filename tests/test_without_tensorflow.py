"""The runtime half runs without TensorFlow (docs/development.md "Installs").

Each command runs in a fresh interpreter where importing tensorflow, keras or tf2onnx fails as
if they were not installed: predict, bench, calibrate-threshold and check must work; commands
that need TensorFlow must say so in one line and exit 2.
"""

import json
import subprocess
import sys

import pytest

from basisnet_deploy.data import digits

BLOCK = """
import importlib.abc, sys
class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "tf_keras"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoTensorFlow())
from basisnet_deploy.cli import main
main(sys.argv[1:])
"""


def run_without_tf(*args):
    return subprocess.run([sys.executable, "-c", BLOCK, *map(str, args)], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def export_copy(float_tflite, tmp_path_factory):
    """A copy of the float export, so calibrate-threshold may write its manifest."""
    import shutil

    copy = tmp_path_factory.mktemp("notf") / "export"
    shutil.copytree(float_tflite[0], copy)
    return copy


def test_predict_bench_threshold_and_check_run_without_tensorflow(export_copy, tmp_path):
    image = tmp_path / "digit.png"
    digits().images[0].save(image)
    done = run_without_tf("predict", export_copy, image, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["stage"] in ("lightweight", "specialist")
    done = run_without_tf("bench", export_copy, "--frames", "6", "--warmup", "1", "--runner",
                          "sequential", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runners"]["sequential"]["throughput_fps"] > 0
    done = run_without_tf("calibrate-threshold", export_copy, "--dataset", "digits",
                          "--max-drop", "1", "--json")
    assert done.returncode == 0, done.stderr
    assert "chosen" in json.loads(done.stdout)
    done = run_without_tf("check", export_copy, "--json")
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)["lightweight"]
    # the GPU verdict needs no TensorFlow: here (no GPU device) the labelled static guess
    assert verdict["sha256_ok"] and verdict["gpu"]["status"] in ("static-guess", "runs"), verdict


def test_commands_that_need_tensorflow_say_so_in_one_line(ckpt, tmp_path):
    done = run_without_tf("export", ckpt, "--out", tmp_path / "x")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("Error: this command needs tensorflow")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x").exists()
