"""The wheel installs one top-level name, and the console script answers --help."""

import subprocess
import sys
import zipfile
from pathlib import Path

from click.testing import CliRunner

from basisnet_deploy.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_only_the_basisnet_deploy_namespace(tmp_path):
    # Built in pip's isolated build environment, as a user's `pip install` builds it: a venv
    # without setuptools (the default from Python 3.12) must still build the wheel.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("basisnet_deploy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"basisnet_deploy", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert "basisnet_deploy/converters/__init__.py" in names
    assert "basisnet_deploy/calibration/__init__.py" in names
    # Every package folder of the source tree is in the wheel (pyproject lists them by hand).
    for init in sorted((ROOT / "basisnet_deploy").rglob("__init__.py")):
        assert str(init.relative_to(ROOT)) in names, init


def test_mapped_packages_import_from_the_namespace():
    import basisnet_deploy.calibration
    import basisnet_deploy.converters

    assert Path(basisnet_deploy.converters.__file__).parent.name == "converters"
    assert Path(basisnet_deploy.calibration.__file__).parent.name == "calibration"


def test_help_explains_every_command_and_offers_the_same_json_options():
    runner = CliRunner()
    res = runner.invoke(cli, ["--help"])
    assert res.exit_code == 0
    assert len(cli.commands) == 11
    for command in cli.commands:
        assert command in res.output
        sub = runner.invoke(cli, [command, "--help"])
        assert sub.exit_code == 0 and len(sub.output) > 300, command
        assert "--json " in sub.output and "--json-out FILE" in sub.output, command
