"""User mistakes: one ``Error:`` line naming the file or option, exit 2, nothing written."""

import json
import os
import re
from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import Image

from basisnet_deploy.cli import main
from basisnet_deploy.data import load_image
from basisnet_deploy.data.datasets import describe_skipped, image_folder


def _exit_2(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.startswith("Error:")]) == 1, err
    return err


def _foreign(tmp_path, name="mine"):
    out = tmp_path / name
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"generator": "someone else"}))
    (out / "config.json").write_text("{}")
    return out


@pytest.mark.parametrize("command", ["train", "export"])
def test_foreign_out_is_refused_before_any_work(tmp_path, capsys, command):
    out = _foreign(tmp_path)
    argv = {"train": ["train", "--dataset", str(tmp_path / "no-such-data"), "--out", str(out)],
            "export": ["export", str(tmp_path / "no-such-ckpt"), "--out", str(out)]}[command]
    err = _exit_2(argv, capsys)
    assert str(out) in err and "is not a basisnet-deploy" in err  # not the data error
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_out_under_a_regular_file_is_one_error_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    err = _exit_2(["train", "--dataset", "digits", "--out", str(tmp_path / "f" / "ck")], capsys)
    assert "is a file, not a directory" in err


@pytest.mark.parametrize("argv,option", [
    (["calibrate-threshold", "ex", "--max-drop", "200"], "--max-drop"),
    (["calibrate-threshold", "ex", "--target-madds", "-1"], "--target-madds"),
    (["predict", "ex", "x.png", "--threshold", "1.5"], "--threshold"),
    (["train", "--out", "ck", "--held-out", "1"], "--held-out"),
    (["train", "--out", "ck", "--epochs", "0"], "--epochs"),
    (["bench", "ex", "--resynth-every", "-2"], "--resynth-every"),
])
def test_option_ranges_are_checked_at_parse_time(tmp_path, capsys, monkeypatch, argv, option):
    monkeypatch.chdir(tmp_path)
    err = _exit_2(argv, capsys)
    assert option in err and "range" in err
    assert list(tmp_path.iterdir()) == []


def test_tuning_steps_with_the_default_auto_recipe_names_auto_and_the_recipes_that_tune(
        ckpt, tmp_path, capsys):
    """--int8-recipe auto (the default) tunes no weights: the refusal names what was typed
    and the recipes of the table that tune, before any work, nothing written."""
    from basisnet_deploy.targets.recipes import RECIPES

    out = tmp_path / "ex"
    err = _exit_2(["export", str(ckpt), "--calibration", "digits", "--tuning-steps", "5",
                   "--out", str(out)], capsys)
    assert "--tuning-steps: --int8-recipe auto" in err
    assert not re.search(r"--int8-recipe full(?![\w-])", err), err  # auto tries it; it tunes nothing
    tuning = [r.name for r in RECIPES.values() if r.tuned]
    assert tuning and all(f"--int8-recipe {name}" in err for name in tuning), err
    assert list(tmp_path.iterdir()) == []


def test_verbose_flag_is_accepted_by_the_group(capsys):
    with pytest.raises(SystemExit) as e:
        main(["-v", "cost", "--preset", "demo", "--json"])
    assert e.value.code == 0 and json.loads(capsys.readouterr().out)["madds"] > 0


@pytest.mark.parametrize("mode,dtype,full", [("I;16", np.uint16, 65535), ("I", np.int32, 65535),
                                             ("F", np.float32, 1.0)])
def test_high_bit_depth_images_are_scaled_not_clipped(tmp_path, mode, dtype, full):
    ramp = np.linspace(0, full, 64 * 32).reshape(32, 64).astype(dtype)
    path = tmp_path / ("ramp.png" if mode == "I;16" else "ramp.tif")
    Image.fromarray(ramp).save(path)
    got = np.asarray(load_image(path)).astype(int)
    assert got.shape == (32, 64, 3)
    expected = np.round(ramp.astype(np.float64) * 255 / full)
    np.testing.assert_allclose(got[..., 0], expected, atol=1)
    assert (got == 255).mean() < 0.01  # a clipped image is ~100% white


def test_skipped_files_are_named_first_few_then_counted(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.new("RGB", (9, 9), (10, 20, 30)).save(tmp_path / c / "ok.png")
    for i in range(7):
        (tmp_path / "a" / f"bad{i}.png").write_bytes(b"not an image")
    ds = image_folder(tmp_path)
    text = describe_skipped(ds.skipped, ds.skipped_files)
    assert text.startswith("skipped 7 files (not an image: 7)")
    assert "bad0.png" in text and "bad4.png" in text and "bad5.png" not in text
    assert text.endswith("and 2 more")
    assert describe_skipped(Counter(), []) == ""


@pytest.mark.parametrize("verbose", ["", "1"])
def test_native_log_lines_are_dropped_unless_verbose(verbose):
    import os
    import subprocess
    import sys

    script = ("import os\nfrom basisnet_deploy.common.quiet import filter_native_logs\n"
              "with filter_native_logs():\n"
              "    os.write(2, b'I0000 00:00:1795830066.248667     355 cudart_stub.cc:31] noise\\n')\n"
              "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called\\n')\n"
              "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
              "    os.write(2, b'Error: a real line\\n')\n")
    env = {**os.environ, "BASISNET_VERBOSE": verbose}
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=60).stderr
    assert "Error: a real line" in err
    for native in ("noise", "InitializeLog", "XNNPACK"):
        assert (native in err) == bool(verbose), native


def test_a_calibration_set_of_1x1_images_is_refused(tmp_path):
    from basisnet_deploy.calibration.images import calibration_images
    from basisnet_deploy.common.errors import UserError

    for i in range(3):
        Image.new("RGB", (1, 1), (i * 80, 0, 0)).save(tmp_path / f"{i}.png")
    with pytest.raises(UserError, match="smaller than 8x8"):
        calibration_images(str(tmp_path), 10)
    Image.new("RGB", (20, 20), (9, 9, 9)).save(tmp_path / "real.png")
    calib = calibration_images(str(tmp_path), 10)
    assert len(calib.images) == 1 and calib.report()["skipped"] == {"smaller than 8x8": 3}


def test_a_tiny_or_single_class_calibration_set_is_warned_about(tmp_path):
    """Issue 10's bad input: fewer than 32 usable images, or all from one class folder, is
    a warning that names the folder and says why (recorded in the calibration report, which
    export prints and writes to the manifest); a flat folder or several classes is not."""
    from basisnet_deploy.calibration.images import calibration_images

    rng = np.random.default_rng(0)

    def write(folder, n):
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), np.uint8)).save(folder / f"{i}.png")

    write(tmp_path / "one" / "cat", 5)
    calib = calibration_images(str(tmp_path / "one"), 100)
    tiny, single = calib.warnings()
    assert "only 5 usable calibration images (fewer than 32)" in tiny
    assert "one class folder ('cat')" in single and calib.report()["warnings"] == [tiny, single]
    write(tmp_path / "two" / "cat", 20)
    write(tmp_path / "two" / "dog", 20)
    assert calibration_images(str(tmp_path / "two"), 100).warnings() == []
    write(tmp_path / "flat", 40)
    assert calibration_images(str(tmp_path / "flat"), 100).warnings() == []
    # the class is the top-level folder, as in training: two subfolders of one class are one
    write(tmp_path / "nested" / "cat" / "indoor", 20)
    write(tmp_path / "nested" / "cat" / "outdoor", 20)
    (tmp_path / "nested" / "cat" / "notes.txt").write_text("skipped, not counted as an image")
    nested = calibration_images(str(tmp_path / "nested"), 100)
    assert len(nested.images) == len(nested.folders) == 40
    (warning,) = nested.warnings()  # 40 images: not too few; one class
    assert "one class folder ('cat')" in warning
    assert calibration_images(str(tmp_path / "two" / "cat"), 100).warnings() == [
        f"{tmp_path / 'two' / 'cat'}: only 20 usable calibration images (fewer than 32); int8 "
        "ranges from so few may clip on other images. Add images or raise --calibration-size"]
    digits = calibration_images("digits", 16)
    assert len(digits.warnings()) == 1 and "only 16" in digits.warnings()[0]
    assert calibration_images("digits", 64).warnings() == []


def _failing_conversion(monkeypatch):
    """An export whose converter fails inside the staged directory (not the user's input)."""
    from types import SimpleNamespace

    from basisnet_deploy.converters.base import ExportError
    from basisnet_deploy.export import pipeline

    def convert(*_):
        try:
            raise RuntimeError("flatbuffer offset out of range")
        except RuntimeError as e:
            raise ExportError("lightweight: the converter crashed") from e

    monkeypatch.setattr(pipeline, "_read_inputs", lambda *_: SimpleNamespace(
        lm_coeff=np.zeros((1, 2, 3), np.float32), calib=None, held=None))
    monkeypatch.setattr(pipeline, "_verification_sample", lambda *_: None)
    monkeypatch.setattr(pipeline, "_tuned_weights", lambda *_: {})
    monkeypatch.setattr(pipeline, "_role_graphs", lambda *_: defaultdict(lambda: None))
    monkeypatch.setattr(pipeline, "_convert", convert)


def test_an_internal_export_failure_keeps_its_cause(tmp_path, monkeypatch):
    from basisnet_deploy.common.errors import InternalError, UserError
    from basisnet_deploy.converters.base import ExportError
    from basisnet_deploy.export.pipeline import export

    _failing_conversion(monkeypatch)
    with pytest.raises(InternalError, match="export failed: lightweight: the converter crashed") as e:
        export(tmp_path / "ckpt", tmp_path / "ex")
    assert not isinstance(e.value, UserError)
    assert isinstance(e.value.__cause__, ExportError)
    assert isinstance(e.value.__cause__.__cause__, RuntimeError)
    assert list(tmp_path.iterdir()) == []  # the staged directory is gone


@pytest.mark.parametrize("verbose", [False, True])
def test_an_internal_failure_is_one_line_and_exit_1_with_the_traceback_under_v(
        tmp_path, capsys, monkeypatch, verbose):
    monkeypatch.delenv("BASISNET_VERBOSE", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")  # -v lowers it: restored after the test
    _failing_conversion(monkeypatch)
    argv = ["export", str(tmp_path / "ckpt"), "--out", str(tmp_path / "ex")]
    with pytest.raises(SystemExit) as e:
        main(["-v", *argv] if verbose else argv)
    err = capsys.readouterr().err
    assert e.value.code == 1, err
    errors = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert errors and errors[-1].startswith("Error: export failed: lightweight: the converter crashed")
    assert len(errors) == 1, err
    if verbose:  # the whole chain: the converter's own exception first
        assert "Traceback" in err and "RuntimeError: flatbuffer offset out of range" in err
        assert err.index("RuntimeError") < err.index("ExportError") < err.index("InternalError")
    else:
        assert "Traceback" not in err and "-v" in errors[0]


def test_an_unexpected_exception_is_one_line_and_exit_1(capsys, monkeypatch):
    from basisnet_deploy.model import cost

    monkeypatch.delenv("BASISNET_VERBOSE", raising=False)

    def broken(arch):
        raise KeyError("stem")

    monkeypatch.setattr(cost, "basisnet_cost", broken)
    with pytest.raises(SystemExit) as e:
        main(["cost", "--preset", "demo"])
    err = capsys.readouterr().err
    assert e.value.code == 1, err
    assert "Traceback" not in err
    assert err.strip().splitlines() == ["Error: KeyError: 'stem' (run with -v for the traceback)"]


@pytest.mark.parametrize("command", ["train", "export"])
@pytest.mark.parametrize("signal_name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_run_stopped_by_a_signal_exits_128_plus_its_number(tmp_path, capsys, monkeypatch, command,
                                                             signal_name, code):
    """A stopped training or weight tuning (its state saved) exits as a shell reports a process
    that signal ended (130, 143), not 2 (a user mistake), so scripts can tell a stop from bad
    input."""
    from basisnet_deploy.export import pipeline
    from basisnet_deploy.quantization.settings import TuningInterrupted
    from basisnet_deploy.training import trainer
    from basisnet_deploy.training.resume import TrainingInterrupted

    def stopped(error):
        def run(*args, **kwargs):
            raise error(f"{signal_name} stopped it; the same command goes on from there", signal_name)
        return run

    monkeypatch.setattr(trainer, "train_checkpoint", stopped(TrainingInterrupted))
    monkeypatch.setattr(pipeline, "export", stopped(TuningInterrupted))
    argv = {"train": ["train", "--out", str(tmp_path / "ckpt")],
            "export": ["export", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out")]}[command]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == code, err
    stop = {"train": TrainingInterrupted, "export": TuningInterrupted}[command]
    assert stop("stopped by a caller's stop function").exit_code == 130  # not a signal's name
    assert [ln for ln in err.splitlines() if ln.startswith("Error:")] == \
        [f"Error: {signal_name} stopped it; the same command goes on from there"]


@pytest.mark.parametrize("signal_name, raised, code", [("SIGINT", "KeyboardInterrupt", None),
                                                        ("SIGTERM", "Terminated", 143)])
def test_a_second_signal_stops_at_once_as_that_signal_would(sigint_handled, signal_name, raised, code):
    """The first SIGINT/SIGTERM asks the loop to save and stop; a second one (an impatient
    user, a supervisor's follow-up) interrupts at once, and a second SIGTERM exits 143 as a
    process SIGTERM ended, not 130 as a Ctrl-C."""
    import os
    import signal

    from basisnet_deploy.training.resume import StopSignals

    sig = signal.Signals[signal_name]
    previous_term = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with StopSignals() as stop:
            os.kill(os.getpid(), sig)
            assert stop.received == signal_name  # the first one only asks
            with pytest.raises(BaseException) as e:  # a wrong type fails here, not the session
                os.kill(os.getpid(), sig)
                signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a bytecode boundary for the handler
        assert type(e.value).__name__ == raised
        if code is not None:
            assert e.value.code == code
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored on exit
    finally:
        signal.signal(signal.SIGTERM, previous_term)


def test_a_command_ended_by_sigterm_says_so_and_exits_143(tmp_path, capsys, monkeypatch):
    """SIGTERM during an export's write (or a second one during training) ends the command with
    one line on stderr, as Ctrl-C's "Interrupted.", and exit 143; never silently."""
    from basisnet_deploy.common.files import Terminated
    from basisnet_deploy.export import pipeline

    def terminated(*args, **kwargs):
        raise Terminated(143)

    monkeypatch.setattr(pipeline, "export", terminated)
    with pytest.raises(SystemExit) as e:
        main(["export", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out")])
    assert e.value.code == 143
    assert capsys.readouterr().err.strip().splitlines() == ["Terminated."]


@pytest.mark.parametrize("argv, flag", [
    (["cost", "--width", "nan"], "--width"),
    (["predict", "DIR", "x.png", "--threshold", "nan"], "--threshold"),
    (["bench", "DIR", "--threshold", "inf"], "--threshold"),
    (["calibrate-threshold", "DIR", "--max-drop", "nan"], "--max-drop"),
    (["calibrate-threshold", "DIR", "--target-madds", "inf"], "--target-madds"),
    (["cost", "-k", "0"], "--bases"),
    (["cost", "--classes", "1"], "--classes"),
])
def test_non_finite_numbers_and_bad_architecture_flags_name_the_option(tmp_path, capsys, argv, flag):
    """NaN passes every range comparison, so click's FloatRange took --threshold nan (and
    --max-drop nan ran every image before failing); architecture errors named internal keys
    ('option.bases')."""
    argv = [str(tmp_path) if a == "DIR" else a for a in argv]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and flag in err and "option." not in err, err


def test_threshold_none_means_the_specialist_answers_every_image(float_tflite, tmp_path, capsys):
    """'--threshold none', as the help says, never exits early (1 is not never: float32
    softmax reaches 1.0); 0 exits on every image."""
    from basisnet_deploy.data import digits

    image = str(tmp_path / "digit.png")
    digits().images[0].save(image)
    stages = {}
    for value in ("none", "0"):
        with pytest.raises(SystemExit) as e:
            main(["predict", str(float_tflite[0]), image, "--threshold", value, "--json"])
        assert e.value.code == 0
        stages[value] = json.loads(capsys.readouterr().out)[0]["stage"]
    assert stages == {"none": "specialist", "0": "lightweight"}


def test_progress_bar_rates_count_from_the_start_of_the_work(capsys):
    """Loops report (0, total) when their work starts, and the rate counts from there: not
    from before the setup (slow), nor from after the first batch (20 images looked done in
    microseconds: 13,576 image/s against 16 measured)."""
    import time

    from basisnet_deploy.cli import _progress

    def rate_after(start_call: bool, setup_s: float) -> float:
        with _progress("verify", unit="image") as progress:
            time.sleep(setup_s)  # loading models: not the work
            if start_call:
                progress(0, 40, {})
            time.sleep(0.2)  # the first batch
            progress(20, 40, {})
            return progress.bar.n / (time.time() - progress.bar.start_t)
    assert 20 / 0.5 < rate_after(True, 0.5) <= 20 / 0.2
    assert rate_after(False, 0.0) <= 20 / 0.2  # no start call: counted from the command's start



@pytest.mark.parametrize("argv, says", [
    (["cost", "--plain", "mv3-small", "-k", "4"], "--bases does not apply"),
    (["verify", "EXP", "--images", "EXP", "--dataset", "digits"], "not both"),
    (["bench", "EXP", "--images", "EXP", "--dataset", "digits"], "not both"),
    (["bench", "EXP", "--specialist-form", "coefficient", "--bases", "int8"], "--bases: for the presynth form only"),
    (["bench", "EXP", "--specialist-form", "coefficient", "--resynth-every", "5"], "--resynth-every: for the presynth"),
    (["report", "EXP", "--images", "digits", "--out", "OUT", "--classes", "1,1"], "names a class twice"),
    (["android-assets", "EXP", "--out", "EXP/sub"], "inside the export"),
    (["bench", "EXP", "--images", "EXP/manifest.json"], "a file, not a folder"),
    # int8 options on a float export: the manifest showed float32 input after --input-type uint8
    (["export", "EXP", "--input-type", "uint8", "--out", "OUT"], "--input-type uint8: applies to int8 exports"),
    (["export", "EXP", "--quantize", "float16", "--int8-recipe", "full", "--out", "OUT"],
     "--int8-recipe full: applies to int8 exports, and this one is float16 (--quantize float16)"),
    (["export", "EXP", "--coefficient-int8", "fakequant", "--out", "OUT"], "no --calibration"),
])
def test_options_that_would_be_ignored_are_refused(float_tflite, tmp_path, capsys, argv, says):
    """An option the command would silently ignore (or a path it would misuse) is one Error:
    line, before any work."""
    argv = [a.replace("EXP", str(float_tflite[0])).replace("OUT", str(tmp_path / "out")) for a in argv]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and says in err[0], err
    assert not (tmp_path / "out").exists() and not (float_tflite[0] / "sub").exists()


def test_commands_on_an_android_assets_copy_point_to_its_export(float_tflite, tmp_path, capsys):
    """An Android assets folder holds the bases as raw .bin for the Java core; check said its
    .npz bases were missing and told the user to re-export."""
    assets = tmp_path / "assets"
    with pytest.raises(SystemExit) as e:
        main(["android-assets", str(float_tflite[0]), "--out", str(assets)])
    assert e.value.code == 0
    capsys.readouterr()
    assert "path" not in json.loads((assets / "manifest.json").read_text())["checkpoint"]  # not in an APK
    for argv in (["check", str(assets)], ["bench", str(assets), "--frames", "2"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and err == [f"Error: {assets}: Android assets copied from "
                                             f"{float_tflite[0].name} for the app; run this command on that export"]


def _copy_export(source, target):
    import shutil

    shutil.copytree(source, target)
    return target, {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}


def test_json_out_and_plot_never_replace_what_the_tool_did_not_write(float_tflite, tmp_path, capsys):
    """--json-out and --plot are checked before any work: a file of the command's own export
    (an artifact, manifest.json), an existing file of another kind, or a missing folder is one
    Error: line, exit 2, and every byte stays; an earlier JSON result is replaced."""
    from basisnet_deploy.cli import main

    exp, before = _copy_export(float_tflite[0], tmp_path / "exp")
    (tmp_path / "notes.txt").write_text("mine")
    refused = [
        (["check", str(exp), "--json-out", str(exp / "lightweight.tflite")], "a folder this tool reads or writes"),
        (["check", str(exp), "--json-out", str(exp / "manifest.json")], "a folder this tool reads or writes"),
        (["check", str(exp), "--json-out", str(exp / "check.json")], "a folder this tool reads or writes"),
        (["check", str(exp), "--json-out", str(tmp_path / "notes.txt")], "is not a JSON file"),
        (["check", str(exp), "--json-out", str(tmp_path / "missing" / "r.json")], "does not exist"),
        (["calibrate-threshold", str(exp), "--dataset", "digits", "--max-drop", "1",
          "--plot", str(exp / "manifest.json")], "is not a PNG file"),
        (["calibrate-threshold", str(exp), "--dataset", "digits", "--max-drop", "1",
          "--plot", str(exp / "lightweight.tflite")], "is not a PNG file"),
    ]
    for argv, why in refused:
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and why in err[0], (argv, err)
        assert {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file()} == before, argv
        assert (tmp_path / "notes.txt").read_text() == "mine"
        assert not (tmp_path / "missing").exists()
    ckpt = json.loads((exp / "manifest.json").read_text())["checkpoint"]["path"]
    with pytest.raises(SystemExit) as e:  # the checkpoint the manifest records is read too
        main(["verify", str(exp), "--json-out", os.path.join(ckpt, "config.json")])
    assert e.value.code == 2 and "a folder this tool reads or writes" in capsys.readouterr().err
    (tmp_path / "result.json").write_text('{"old": true}')
    with pytest.raises(SystemExit) as e:
        main(["check", str(exp), "--json-out", str(tmp_path / "result.json")])
    assert e.value.code == 0
    assert json.loads((tmp_path / "result.json").read_text())["lightweight"]["sha256_ok"] is True


def test_verify_finds_the_checkpoint_from_any_folder_and_takes_checkpoint(
        float_tflite, ckpt, tmp_path, capsys, monkeypatch):
    """The manifest records the checkpoint's absolute path, so verify runs from another
    folder; a moved checkpoint is named with the --checkpoint fix, and a checkpoint whose
    config.json is not the export's is refused."""
    import shutil

    from basisnet_deploy.cli import main

    exp = float_tflite[0]
    manifest = json.loads((exp / "manifest.json").read_text())
    assert os.path.isabs(manifest["checkpoint"]["path"])
    monkeypatch.chdir(tmp_path)
    main_args = ["verify", str(exp), "--dataset", "digits", "--limit", "4", "--json"]
    with pytest.raises(SystemExit) as e:
        main(main_args)
    assert e.value.code == 0 and json.loads(capsys.readouterr().out)["images"] == 4

    moved, _ = _copy_export(exp, tmp_path / "moved")
    edited = json.loads((moved / "manifest.json").read_text())
    edited["checkpoint"]["path"] = "runs/elsewhere/ckpt"
    (moved / "manifest.json").write_text(json.dumps(edited))
    with pytest.raises(SystemExit) as e:
        main(["verify", str(moved), "--limit", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[-1].startswith("Error: runs/elsewhere/ckpt:") and "--checkpoint" in err[-1]
    with pytest.raises(SystemExit) as e:
        main(["verify", str(moved), "--dataset", "digits", "--limit", "4", "--json", "--checkpoint", str(ckpt)])
    assert e.value.code == 0 and json.loads(capsys.readouterr().out)["images"] == 4

    work = tmp_path / "work"  # an export that records its checkpoint relative to where it ran
    shutil.copytree(ckpt, work / "runs" / "ckpt")
    relative, _ = _copy_export(exp, work / "runs" / "exp")
    edited["checkpoint"]["path"] = "runs/ckpt"
    (relative / "manifest.json").write_text(json.dumps(edited))
    with pytest.raises(SystemExit) as e:  # run from tmp_path: found above the export
        main(["verify", str(relative), "--dataset", "digits", "--limit", "4", "--json"])
    assert e.value.code == 0 and json.loads(capsys.readouterr().out)["images"] == 4

    other = tmp_path / "other"
    shutil.copytree(ckpt, other)
    config = json.loads((other / "config.json").read_text())
    config["labels"] = list("abcdefghij")
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit) as e:
        main(["verify", str(moved), "--limit", "4", "--checkpoint", str(other)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and "not the checkpoint this export was made from" in err[-1]


def test_ctrl_c_inside_native_code_is_an_interruption_not_an_internal_failure(sigint_handled, capsys,
                                                                              monkeypatch):
    """Ctrl-C during TFLite conversion came out of pybind11 as a RuntimeError or SystemError,
    reported as an internal failure with exit 1; it is the user's stop: exit 130."""
    import signal

    from basisnet_deploy.model import cost

    def native(arch):  # as pybind11 does: the KeyboardInterrupt replaced by another exception
        try:
            os.kill(os.getpid(), signal.SIGINT)
            signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a bytecode boundary for the handler
        except KeyboardInterrupt:
            raise RuntimeError("pybind11::error_already_set: MISMATCH of original and normalized "
                               "active exception types") from None
        raise AssertionError("SIGINT did not interrupt")

    monkeypatch.setattr(cost, "basisnet_cost", native)
    with pytest.raises(SystemExit) as e:
        main(["cost", "--preset", "demo"])
    assert e.value.code == 130
    assert capsys.readouterr().err.strip().splitlines() == ["Interrupted."]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_train_refuses_a_class_count_its_dataset_does_not_have(tmp_path, capsys):
    """--classes 5 on a 10-class dataset was dropped without a word (the dataset sets it)."""
    err = _exit_2(["train", "--dataset", "digits", "--classes", "5", "--epochs", "1",
                   "--out", str(tmp_path / "ckpt")], capsys)
    assert "--classes 5: digits has 10 classes" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, says", [
    (["--dataset", "NODATA"], "no-such-data: no such directory"),
    (["--dataset", "digits", "--init-from", "NOTWEIGHTS"], "--init-from"),
])
def test_a_refused_train_creates_no_folders(tmp_path, capsys, argv, says):
    """The checkpoint's parent folders were made before the dataset and --init-from checks."""
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")
    argv = [a.replace("NODATA", str(tmp_path / "no-such-data"))
            .replace("NOTWEIGHTS", str(tmp_path / "x.png")) for a in argv]
    err = _exit_2(["train", *argv, "--epochs", "1", "--out", str(tmp_path / "new" / "deep" / "ckpt")],
                  capsys)
    assert says in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_android_assets_default_out_needs_the_android_demo_here(float_tflite, tmp_path, capsys,
                                                               monkeypatch):
    """Run outside the repository, the default --out made android_demo/app/src/main/assets/
    in whatever folder the user stood in."""
    monkeypatch.chdir(tmp_path)
    err = _exit_2(["android-assets", str(float_tflite[0])], capsys)
    assert "no android_demo/ here" in err and "--out DIR" in err, err
    assert list(tmp_path.iterdir()) == []


def test_predict_names_a_missing_export_and_another_runtime(float_tflite, tmp_path, capsys):
    """A missing export was "DIR/manifest.json: missing"; --runtime onnxruntime on a TFLite
    export reached onnxruntime, which read the .tflite as a broken protobuf."""
    Image.new("RGB", (20, 20), (9, 9, 9)).save(tmp_path / "x.png")
    err = _exit_2(["predict", str(tmp_path / "nodir"), str(tmp_path / "x.png")], capsys)
    assert f"{tmp_path / 'nodir'}: no such directory" in err, err
    err = _exit_2(["predict", str(float_tflite[0]), str(tmp_path / "x.png"), "--runtime", "onnxruntime"],
                  capsys)
    assert "--runtime onnxruntime:" in err and "which litert runs" in err, err


def test_an_eof_error_is_an_internal_failure_not_an_interruption(capsys, monkeypatch):
    """click turns EOFError into Abort as it does KeyboardInterrupt: a file that ended early
    read as the user's Ctrl-C (exit 130)."""
    from basisnet_deploy.model import cost

    monkeypatch.delenv("BASISNET_VERBOSE", raising=False)  # an earlier -v test may have set it

    def truncated(arch):
        raise EOFError("Ran out of input")

    monkeypatch.setattr(cost, "basisnet_cost", truncated)
    with pytest.raises(SystemExit) as e:
        main(["cost", "--preset", "demo"])
    assert e.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "Error: EOFError: Ran out of input (run with -v for the traceback)"]


def test_int8_options_spelled_at_their_defaults_are_not_refused(tmp_path, capsys):
    """Scripts that spell every option out: a default value changes nothing, so a float export
    takes it (the next error is the missing checkpoint's)."""
    err = _exit_2(["export", str(tmp_path / "nockpt"), "--input-type", "float32", "--int8-recipe", "auto",
                   "--coefficient-int8", "dynamic", "--out", str(tmp_path / "out")], capsys)
    assert "no such checkpoint directory" in err, err


def test_the_python_api_names_a_missing_export_or_a_file_given_as_one(tmp_path):
    from basisnet_deploy.artifacts.manifest import load_manifest
    from basisnet_deploy.common.errors import UserError

    Image.new("RGB", (20, 20)).save(tmp_path / "x.png")
    with pytest.raises(UserError, match="x.png: is a file, not a directory"):
        load_manifest(tmp_path / "x.png")
    with pytest.raises(UserError, match="nodir: no such directory"):
        load_manifest(tmp_path / "nodir")
