"""The cost model reproduces the paper's published ImageNet figures within 2%."""

import json

import pytest
from click.testing import CliRunner

from basisnet_deploy.cli import cli
from basisnet_deploy.model.config import ArchConfig
from basisnet_deploy.artifacts.manifest import PipelineCost
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.model.cost import basisnet_cost, plain_cost


def close(value, published, rel=0.02):
    return abs(value - published) <= rel * published


@pytest.mark.parametrize("arch,res,madds,params", [
    ("mv3-large", 224, 217e6, 5.45e6),
    ("mv3-small", 128, 19.9e6, None),
    ("mv3-small", 224, 56.5e6, 2.5e6),
])
def test_plain_networks(arch, res, madds, params):
    c = plain_cost(arch, 1.0, res, 1000)
    assert close(c["madds"], madds), c["madds"]
    if params:
        assert close(c["params"], params), c["params"]


@pytest.mark.parametrize("bases,madds,params", [
    (1, 273e6, 8.07e6),
    (16, 290e6, 24.9e6),
    (128, 416e6, 150.3e6),
])
def test_basisnet_mv3_l11_l15(bases, madds, params):
    cfg = ArchConfig(bases=bases, nonshared=(11, 15), light_resolution=224)
    c = basisnet_cost(cfg)
    assert close(c["madds"], madds), c["madds"]
    assert close(c["params"], params), c["params"]
    # Each extra basis adds ~1.1M params and ~1.1M MAdds (L11-L15 conv weights, no SE).
    assert close(c["nonshared_weights_per_basis"], 1.1e6, rel=0.03)
    assert c["stages"]["synthesis"]["madds"] == bases * c["nonshared_weights_per_basis"]


def test_early_exit_average():
    c = basisnet_cost(ArchConfig())
    cost = PipelineCost.from_json(c)
    assert cost.expected_madds(0.0) == c["madds"]
    assert cost.expected_madds(1.0) == c["stages"]["lightweight"]["madds"]
    assert cost.to_json() == c  # the same keys, in the same order
    assert list(cost.to_json()) == list(c)


def test_a_cost_model_without_its_stages_is_a_user_error():
    with pytest.raises(UserError, match="x/manifest.json: cost is not a cost model"):
        PipelineCost.from_json({"madds": 1, "params": 2, "stages": {"lightweight": {}}},
                               "x/manifest.json")


@pytest.mark.parametrize("args,madds", [
    (["--plain", "mv3-large", "--json"], 217e6),
    (["--bases", "16", "--nonshared", "11-15", "--light-resolution", "224", "--json"], 290e6),
])
def test_cli_json_totals(args, madds):
    res = CliRunner().invoke(cli, ["cost", *args])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert isinstance(out["madds"], int) and isinstance(out["params"], int)
    assert close(out["madds"], madds)


def test_cli_table_and_bad_flags():
    runner = CliRunner()
    res = runner.invoke(cli, ["cost", "--bases", "16"])
    assert res.exit_code == 0 and "pipeline" in res.output and "synthesis" in res.output
    res = runner.invoke(cli, ["cost", "--bases", "0"])
    assert res.exit_code != 0 and "bases" in str(res.exception)
    res = runner.invoke(cli, ["cost", "--nonshared", "8to15"])
    assert res.exit_code == 2 and "block range" in res.output


def test_cost_params_match_the_keras_model(tiny):
    """The cost model and the Keras builder read one table: their parameter counts agree
    once BN is folded (Keras keeps gamma, beta, mean, variance; the cost counts one bias)."""
    from basisnet_deploy.model.network import BasisNet

    net = BasisNet(tiny)
    bn = sum(int(w.shape[0]) for w in net.weights if w.path.endswith("gamma"))
    keras_params = net.lightweight.count_params() + net.specialist.count_params()
    assert keras_params - 3 * bn == basisnet_cost(tiny)["params"]
