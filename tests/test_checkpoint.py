import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from basisnet_deploy.model import checkpoint
from basisnet_deploy.cli import cli, main
from basisnet_deploy.model.config import BasisNetConfig
from basisnet_deploy.data import Preprocessing
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.model.network import BasisNet


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from tests.conftest import TINY

    net = BasisNet(TINY)
    rng = np.random.default_rng(1)
    for w in net.weights:  # non-default values everywhere, BN statistics included
        w.assign(rng.standard_normal(w.shape).astype("float32") * 0.1 + (1 if "variance" in w.path else 0))
    cfg = BasisNetConfig(TINY, Preprocessing(resize="squash"), tuple("abcdefghij"))
    path = checkpoint.save(tmp_path_factory.mktemp("ck") / "ckpt", net, cfg)
    return path, net


def test_round_trip_gives_identical_outputs(saved):
    path, net = saved
    loaded, cfg = checkpoint.load(path)
    assert cfg.labels == tuple("abcdefghij")
    rng = np.random.default_rng(2)
    light = rng.standard_normal((2, 16, 16, 3)).astype("float32")
    image = rng.standard_normal((2, 32, 32, 3)).astype("float32")
    (a_out, a), (b_out, b) = net(light, image), loaded(light, image)
    assert np.array_equal(a.numpy(), b.numpy())
    assert np.array_equal(a_out["coefficients"].numpy(), b_out["coefficients"].numpy())


def _copy(saved, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(saved[0], dst)
    return dst


def _edit_config(path, fn):
    data = json.loads((path / "config.json").read_text())
    fn(data)
    (path / "config.json").write_text(json.dumps(data))


@pytest.mark.parametrize("breaker,message", [
    (lambda p: shutil.rmtree(p), "no such checkpoint directory"),
    (lambda p: (p / "config.json").unlink(), "config.json: missing"),
    (lambda p: (p / "config.json").write_text("{not json"), "invalid JSON at line 1"),
    (lambda p: _edit_config(p, lambda d: d["architecture"].update(depth=3)), "unknown key 'depth'"),
    (lambda p: _edit_config(p, lambda d: d["architecture"].pop("bases")), "missing key 'bases'"),
    (lambda p: _edit_config(p, lambda d: d.update(schema_version=99)), "unsupported schema_version 99"),
    (lambda p: _edit_config(p, lambda d: d["architecture"].update(bases="four")), "bases: must be int"),
    (lambda p: _edit_config(p, lambda d: d["architecture"].update(bases=4)),
     "/kernel' has shape"),
    (lambda p: _edit_config(p, lambda d: d["architecture"].update(backbone="resnet")), "unknown backbone"),
    # every value's type, at every depth, names its key path and the file
    (lambda p: _edit_config(p, lambda d: d["architecture"].update(nonshared=[8, "15"])),
     "config.json: architecture.nonshared[1]: must be int, got '15'"),
    (lambda p: _edit_config(p, lambda d: d["preprocessing"].update(input_range=[-1, None])),
     "config.json: preprocessing.input_range[1]: must be float, got None"),
    (lambda p: _edit_config(p, lambda d: d["preprocessing"].update(input_range=[0, 10 ** 400])),
     "config.json: preprocessing.input_range[1]: must be float, got 1000"),  # was an OverflowError
    (lambda p: _edit_config(p, lambda d: d.update(training={"settings": {"held_out": "0.2"}})),
     "config.json: training.settings.held_out: must be float, got '0.2'"),
    (lambda p: _edit_config(p, lambda d: d.update(training={"held_out_files": ["a.png", 3]})),
     "config.json: training.held_out_files[1]: must be str, got 3"),
    (lambda p: _edit_config(p, lambda d: d.update(training={"settings": {"seeds": 1}})),
     "config.json: training.settings: unknown key 'seeds'"),
    (lambda p: _edit_config(p, lambda d: d.update(training={"datasets": "digits"})),
     "config.json: training: unknown key 'datasets'"),
    (lambda p: _edit_config(p, lambda d: d.update(training=[])),
     "config.json: training: must be an object, got []"),
    (lambda p: (p / "model.index").unlink(), "model.index: missing"),
    (lambda p: (p / "model.index").write_bytes(b"garbage" * 10), "cannot read the checkpoint"),
    (lambda p: _truncate(p / "model.data-00000-of-00001"), "corrupt or truncated checkpoint data"),
])
def test_bad_checkpoints_give_one_clear_line(saved, tmp_path, breaker, message, capsys):
    path = _copy(saved, tmp_path)
    breaker(path)
    with pytest.raises(UserError) as err:
        checkpoint.load(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    # Through the CLI: exit 2, one Error: line, no traceback.
    with pytest.raises(SystemExit) as code:
        main(["evaluate", str(path)])
    assert code.value.code == 2
    err_text = capsys.readouterr().err
    assert err_text.startswith("Error: ") and message in err_text
    assert "Traceback" not in err_text and err_text.count("\n") == 1


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_save_is_atomic_and_refuses_foreign_directories(saved, tmp_path):
    path, net = saved
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    cfg = checkpoint.load_config(path)
    with pytest.raises(UserError, match="is not a basisnet-deploy checkpoint directory"):
        checkpoint.save(foreign, net, cfg)
    assert (foreign / "todo.txt").read_text() == "mine"
    # Overwriting a checkpoint leaves exactly one checkpoint and no temporary siblings.
    out = tmp_path / "ck"
    checkpoint.save(out, net, cfg)
    checkpoint.save(out, net, cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "notes"]
    assert checkpoint.load_config(out) == cfg
    assert json.loads((out / ".basisnet-deploy").read_text())["kind"] == "checkpoint"


def test_cli_cost_reads_a_checkpoint(saved):
    res = CliRunner().invoke(cli, ["cost", str(saved[0]), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["architecture"]["bases"] == 3
