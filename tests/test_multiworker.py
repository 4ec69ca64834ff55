"""Two worker processes on 127.0.0.1 train one model with MultiWorkerMirroredStrategy."""

import json
import os
import subprocess
import sys

import pytest

from basisnet_deploy.training.distribute import local_cluster


CLI = [sys.executable, "-c", "import sys; from basisnet_deploy.cli import main; main(sys.argv[1:])"]
ARGS = ["train", "--dataset", "digits", "--epochs", "1", "--batch-size", "32", "--bases", "2",
        "--width", "0.35", "--light-width", "0.35", "--resolution", "16",
        "--light-resolution", "16", "--strategy", "multi-worker", "--json"]


def test_two_workers_train_one_checkpoint_that_loads_and_evaluates(tmp_path):
    from basisnet_deploy.training.trainer import evaluate_checkpoint

    procs = []
    for index, tf_config in enumerate(local_cluster(2)):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": tf_config}
        out = tmp_path / f"ckpt{index}"
        procs.append(subprocess.Popen([*CLI, *ARGS,
                                       "--out", str(out)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=420)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, stderr[-2000:]
        results.append(json.loads(stdout))
    chief, other = results
    assert chief["chief"] is True and other["chief"] is False
    assert (tmp_path / "ckpt0" / "config.json").is_file()
    assert not (tmp_path / "ckpt1").exists()  # only the chief writes
    assert chief["held_out"] == other["held_out"]  # both hold the same model
    again = evaluate_checkpoint(tmp_path / "ckpt0")
    assert again.split == "held-out"
    assert again.specialist_top1 == pytest.approx(chief["held_out"]["specialist_top1"])


def test_multi_worker_without_tf_config_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    p = subprocess.run([*CLI, *ARGS, "--out",
                        str(tmp_path / "c")], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "TF_CONFIG is not set" in p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in p.stderr  # TF's own start-up notices aside


def test_local_cluster_gives_each_worker_a_valid_tf_config_with_one_chief():
    from basisnet_deploy.training.distribute import parse_tf_config

    clusters = [parse_tf_config(text) for text in local_cluster(3)]
    addresses = clusters[0].tasks["worker"]
    assert len(set(addresses)) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)
    assert [c.task_index for c in clusters] == [0, 1, 2]
    assert all(c.tasks == clusters[0].tasks for c in clusters)
    assert [c.is_chief for c in clusters] == [True, False, False]
