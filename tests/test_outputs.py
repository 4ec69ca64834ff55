"""A command replaces only what it wrote: markers, refusals before work, staging clean-up."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from basisnet_deploy.common.errors import UserError
from basisnet_deploy.common.files import MARKER_FILE, check_output_dir, staged_directory


def _write(target, kind="export", legacy=None):
    with staged_directory(target, kind, legacy=legacy) as tmp:
        (tmp / "result.txt").write_text("new")


def test_new_output_is_marked_and_a_marked_output_is_replaced(tmp_path):
    out = tmp_path / "a" / "b"
    _write(out)
    assert json.loads((out / MARKER_FILE).read_text()) == {
        "tool": "basisnet-deploy", "version": __import__("basisnet_deploy").__version__,
        "kind": "export"}
    (out / "stale.txt").write_text("old")
    _write(out)
    assert sorted(p.name for p in out.iterdir()) == [MARKER_FILE, "result.txt"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]  # no .tmp or .old left


@pytest.mark.parametrize("content", [{"manifest.json": "{}"}, {"config.json": "{}"},
                                     {"notes.txt": "mine"}])
def test_foreign_non_empty_directory_is_refused_and_untouched(tmp_path, content):
    out = tmp_path / "out"
    out.mkdir()
    for name, text in content.items():
        (out / name).write_text(text)
    with pytest.raises(UserError, match="is not a basisnet-deploy export directory"):
        _write(out)
    assert {p.name: p.read_text() for p in out.iterdir()} == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_folder_inside_an_output_is_never_deleted_with_it(tmp_path):
    """An export written into a checkpoint folder was deleted, unsaid, when train replaced
    the checkpoint: the tool's outputs hold files only, so a folder in one is refused."""
    out = tmp_path / "ckpt"
    _write(out, kind="checkpoint")
    _write(out / "export", kind="export")
    with pytest.raises(UserError, match="holds the folder 'export', which replacing this checkpoint"):
        _write(out, kind="checkpoint")
    assert (out / "export" / "result.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


@pytest.mark.parametrize("spelled", [".", "sub/..", ".."])
def test_the_current_directory_or_one_holding_it_is_refused(tmp_path, monkeypatch, spelled):
    """--out . was a ValueError after all the work (an empty name); replacing the folder the
    user stands in would leave their shell in a deleted one."""
    here = tmp_path / "here"
    (here / "sub").mkdir(parents=True)
    monkeypatch.chdir(here)
    with pytest.raises(UserError, match=r"is the current directory or holds it.*--out out"):
        _write(Path(spelled))
    assert sorted(p.name for p in here.iterdir()) == ["sub"]


def test_a_relative_out_from_a_deleted_current_directory_is_one_error(tmp_path, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(UserError, match="the current directory no longer exists"):
        _write(Path("out"))


def test_outputs_follow_the_umask_not_mkdtemp_private_mode(tmp_path):
    old = os.umask(0o027)
    try:
        _write(tmp_path / "out")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750


def test_output_of_another_kind_is_refused(tmp_path):
    out = tmp_path / "out"
    _write(out, kind="checkpoint")
    with pytest.raises(UserError, match="not a basisnet-deploy export directory"):
        _write(out, kind="export")
    assert (out / "result.txt").exists()


def test_legacy_output_is_replaced_only_when_the_legacy_rule_accepts_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"generator": "basisnet-deploy 0.0.9"}))
    from basisnet_deploy.artifacts.manifest import legacy_export

    _write(out, legacy=legacy_export)
    assert (out / "result.txt").exists() and not (out / "manifest.json").exists()


def test_symlinked_out_is_refused_before_any_write(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(UserError, match="symbolic link"):
        _write(link)
    assert list(real.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_out_and_parent_are_refused_before_any_write(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(UserError, match="not writable"):
            _write(parent / "out")
    finally:
        parent.chmod(0o755)
    assert list(parent.iterdir()) == []


def test_read_only_out_is_refused_as_root_too(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _write(out)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(out) else real_access(p, mode))
    with pytest.raises(UserError, match="read-only"):
        _write(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_out_under_a_regular_file_is_one_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a directory"):
        check_output_dir(tmp_path / "file" / "sub" / "out", "export")
    with pytest.raises(UserError, match="exists and is not a directory"):
        check_output_dir(tmp_path / "file", "export")


def test_error_inside_removes_the_staging_directory(tmp_path):
    with pytest.raises(RuntimeError):
        with staged_directory(tmp_path / "out", "export") as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_staging_removes_the_staging_directory(tmp_path, sig):
    # A process started in the background inherits SIGINT as ignored (a shell's `cmd &`, some
    # CI runners): restore Python's handler so the test does not depend on how it was run.
    script = textwrap.dedent(f"""
        import signal, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from basisnet_deploy.common.files import staged_directory
        with staged_directory({str(tmp_path / 'out')!r}, "export") as tmp:
            (tmp / "half.txt").write_text("x")
            print("ready", flush=True)
            time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    assert any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir())
    proc.send_signal(sig)
    proc.wait(timeout=20)
    assert proc.returncode != 0
    assert list(tmp_path.iterdir()) == []


def test_result_files_stay_out_of_the_tools_folders(tmp_path):
    """check_output_file: a result JSON goes outside every folder the command reads or writes
    (its --out, which may not exist yet) and every folder the tool wrote (a marker, a manifest
    or a config.json in it): a later command would refuse or misread a stray file there. An
    input file is never replaced; an earlier result or an empty file (mktemp) is."""
    from basisnet_deploy.common.files import MARKER_FILE, OutputError, check_output_file

    exp, ckpt, report, out = (tmp_path / n for n in ("exp", "ckpt", "report", "new-out"))
    for folder, name in ((exp, "manifest.json"), (ckpt, "config.json"), (report, ".basisnet-report")):
        folder.mkdir()
        (folder / name).write_text("{}")
    (tmp_path / "bench.json").write_text("{}")
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "empty.png").write_bytes(b"")
    for ok in (tmp_path / "result.json", tmp_path / "empty.json"):
        check_output_file(ok, "--json-out", "JSON", folders=[exp, out], files=[tmp_path / "bench.json"])
        ok.write_text('{"written": 1}')  # a re-run may replace it
        check_output_file(ok, "--json-out", "JSON", folders=[exp, out], files=[tmp_path / "bench.json"])
    check_output_file(tmp_path / "empty.png", "--plot", "PNG")
    check_output_file(exp / "plot.png", "--plot", "PNG", folders=[exp])  # a plot beside the export is fine
    for bad, why in ((exp / "r.json", "inside"), (ckpt / "r.json", "inside"), (report / "r.json", "inside"),
                     (out / "r.json", "inside"), (exp / MARKER_FILE, "inside"),
                     (tmp_path / "bench.json", "which this command reads"),
                     (tmp_path / "no" / "r.json", "does not exist")):
        with pytest.raises(OutputError, match=why):
            check_output_file(bad, "--json-out", "JSON", folders=[exp, out], files=[tmp_path / "bench.json"])
