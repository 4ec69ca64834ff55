"""Training learns, is repeatable, and the CLI writes a checkpoint that loads."""

import json

import numpy as np
import pytest

from basisnet_deploy.model import checkpoint
from basisnet_deploy.cli import main
from basisnet_deploy.data import Preprocessing
from basisnet_deploy.data import digits
from basisnet_deploy.training.trainer import TrainSettings, train

SETTINGS = TrainSettings(epochs=8, batch_size=32, warmup_epochs=0.5, seed=0)


@pytest.fixture(scope="module")
def digits_subset():
    ds = digits()
    keep = np.random.default_rng(0).permutation(len(ds.images))[:600]
    return ds.subset(sorted(keep))


def test_tiny_training_beats_chance_by_a_wide_margin(digits_subset, tiny):
    result = train(digits_subset, tiny, Preprocessing(resize="squash"), SETTINGS)
    held = result.metrics["held_out"]
    assert held["examples"] == 120
    # Chance is 0.1. The figure depends on the CPU's float kernels: 0.358 on this project's
    # current 2-core AVX2 machines (the same code gave >= 0.5 on an AVX-512 one), so the bar
    # is 2.5x chance: an untrained or broken training loop stays near 0.1.
    assert held["specialist_top1"] >= 0.25
    assert result.config.training["dataset"] == "digits"


def test_same_seed_same_weights(digits_subset, tiny):
    settings = TrainSettings(epochs=1, batch_size=32, seed=7)
    a = train(digits_subset, tiny, Preprocessing(resize="squash"), settings)
    b = train(digits_subset, tiny, Preprocessing(resize="squash"), settings)
    for wa, wb in zip(a.net.weights, b.net.weights):
        assert np.array_equal(wa.numpy(), wb.numpy()), wa.path


def test_mirrored_strategy_runs(digits_subset, tiny):
    settings = TrainSettings(epochs=1, batch_size=32, strategy="mirrored")
    result = train(digits_subset.subset(range(200)), tiny, Preprocessing(resize="squash"), settings)
    assert result.metrics["steps"] == 160 // 32


def test_cli_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "ckpt"
    args = ["train", "--dataset", "digits", "--out", str(out), "--epochs", "1", "--bases", "2",
            "--width", "0.35", "--light-width", "0.35", "--resolution", "16",
            "--light-resolution", "16", "--json"]
    with pytest.raises(SystemExit) as code:
        main(args)
    assert code.value.code in (0, None)
    report = json.loads(capsys.readouterr().out)
    assert report["held_out"]["examples"] == 359
    # the train command's JSON document: its keys and their order
    assert list(report) == ["checkpoint", "chief", "held_out", "train_seconds", "steps",
                            "resumed_from_epoch", "epochs", "train_examples", "skipped"]
    assert report["checkpoint"] == str(out) and report["chief"] is True and report["skipped"] == {}
    net, cfg = checkpoint.load(out)
    assert cfg.architecture.bases == 2 and cfg.labels == tuple("0123456789")
    with pytest.raises(SystemExit):
        main(["evaluate", str(out), "--json"])
    again = json.loads(capsys.readouterr().out)
    assert again["split"] == "held-out"
    assert again["specialist_top1"] == report["held_out"]["specialist_top1"]


def test_cli_refuses_a_foreign_output_directory(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(SystemExit) as code:
        main(["train", "--out", str(tmp_path), "--epochs", "1"])
    assert code.value.code == 2
    assert "is not a basisnet-deploy checkpoint directory" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "x"


_TRAIN_AND_HASH = """
import hashlib, sys
import numpy as np
from basisnet_deploy.data import Preprocessing, digits
from basisnet_deploy.model.config import PRESETS
from basisnet_deploy.training.trainer import TrainSettings, train
ds = digits()
ds = ds.subset(sorted(np.random.default_rng(0).permutation(len(ds.images))[:400]))
settings = TrainSettings(epochs=1, seed=3, eps_hold=0.0, eps_decay=0.5)
result = train(ds, PRESETS["demo"], Preprocessing(resize="squash"), settings)
digest = hashlib.sha256()
for w in result.net.weights:
    digest.update(np.ascontiguousarray(w.numpy()).tobytes())
print(digest.hexdigest())
"""


def test_same_seed_same_weights_in_separate_processes():
    """Two processes, same command: the same weight bytes. At the demo preset Grappler's
    rewrites made the coefficient gradient differ in its last bits between processes from
    the first step with eps < 1 (here the second of five), which one process cannot see."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    procs = [subprocess.Popen([sys.executable, "-c", _TRAIN_AND_HASH], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    try:
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    digests = [out.strip().splitlines()[-1] for out, _ in outs]
    assert digests[0] == digests[1]
