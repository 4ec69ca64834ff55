"""``report``: the page, its JSON, the browser check and the bad-input errors."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from basisnet_deploy.cli import main
from basisnet_deploy.common.jsonable import jsonable
from basisnet_deploy.data import digits
from basisnet_deploy.report.html_cells import FORMATS
from basisnet_deploy.data.heldout import sample_indices
from basisnet_deploy.report.page import MARKER, ReportOptions, build_report

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
LIMIT = 60  # images per report run: small, the machine is shared


@pytest.fixture(scope="module")
def bench_file(float_tflite, tmp_path_factory):
    from basisnet_deploy.report.bench import BenchOptions, bench

    report = bench(float_tflite[0], BenchOptions(frames=6, warmup=1, runner="sequential"))
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    path.write_text(json.dumps(jsonable(report)))
    return path


@pytest.fixture(scope="module")
def report(float_tflite, bench_file, tmp_path_factory):
    """(out dir, result) of one report on the float export, with a bench file."""
    out = tmp_path_factory.mktemp("rep") / "report"
    result = build_report(float_tflite[0], out, ReportOptions(images="digits", bench=str(bench_file),
                                                              limit=LIMIT))
    return out, result


class _Numbers(HTMLParser):
    """Every <span data-key data-fmt> on the page with its text."""

    def __init__(self):
        super().__init__()
        self.found, self._open = [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "span" and "data-key" in a:
            self._open = [a["data-key"], a["data-fmt"], ""]

    def handle_data(self, data):
        if self._open is not None:
            self._open[2] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._open is not None:
            self.found.append(tuple(self._open))
            self._open = None


def _pointer(doc, key):
    for part in key.strip("/").split("/"):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def test_the_report_folder_holds_the_page_pictures_json_and_marker(report):
    out, result = report
    names = {p.name for p in out.iterdir()}
    assert {"index.html", "report.json", MARKER} <= names
    pictures = [n for n in names if n.endswith(".png")]
    assert sorted(pictures) == result.files.pictures and len(pictures) == 6
    for name in pictures:
        assert Image.open(out / name).size[0] >= 300
    page = (out / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained, no network
    assert page.count('src="data:image/png;base64,') == 6


def test_every_number_on_the_page_is_the_json_value(report):
    out, _ = report
    doc = json.loads((out / "report.json").read_text())
    parser = _Numbers()
    parser.feed((out / "index.html").read_text())
    assert len(parser.found) > 60
    for key, fmt, text in parser.found:
        value = _pointer(doc, key)
        assert text == ("-" if value is None else FORMATS[fmt](value)), key
    sections = {k.split("/")[1] for k, _, _ in parser.found}
    assert {"images", "specialization", "similar_classes", "basis_health", "early_exit",
            "fidelity", "cost"} <= sections


def test_the_json_numbers_match_an_independent_run(report, float_tflite):
    """Recompute the Fig. 3 means, the health counts and the exit figures from the artifacts."""
    from basisnet_deploy.runtime.backends import make_factory
    from basisnet_deploy.runtime.deployment import Deployment
    from basisnet_deploy.runtime.runner import softmax

    _, result = report
    dep = Deployment(float_tflite[0])
    ds = digits()
    _, held = ds.split_indices(0.2, 0)
    idx = sample_indices(ds.labels[held], LIMIT)
    assert len(set(ds.labels[held][idx].tolist())) == 10  # the sample spans every class
    held = [held[i] for i in idx]
    lm = make_factory("litert", "xnnpack")(dep.path("lightweight"))
    outs = [lm.run({"image": dep.frame(ds.images[i])[0]}) for i in held]
    coeff = np.stack([np.asarray(o["coefficients"])[0] for o in outs])
    labels = ds.labels[held]
    for basis in result.specialization.bases:
        for cls in basis.classes:
            want = coeff[labels == int(cls["name"]), -1, basis.basis].mean()
            assert cls["mean_coefficient"] == pytest.approx(want, abs=1e-4)
    top = coeff.argmax(-1)
    freq = np.asarray(result.basis_health.largest_frequency)
    assert freq == pytest.approx(np.stack([(top == k).mean(0) for k in range(coeff.shape[2])], -1),
                                 abs=1e-4)
    lm_acc = np.mean([softmax(np.asarray(o["logits"])[0]).argmax() == y for o, y in zip(outs, labels)])
    assert result.fidelity.fresh["lightweight"]["accuracy"] == pytest.approx(lm_acc, abs=1e-4)
    never = result.early_exit.curve[-1]
    assert never["threshold"] is None and never["exit_rate"] == 0
    assert never["accuracy"] == pytest.approx(
        result.fidelity.fresh["specialist_presynth"]["accuracy"], abs=1e-4)


def _chromium():
    exe = shutil.which("chromium")
    if exe is None:
        done = subprocess.run(["bash", str(ROOT / "scripts" / "install-test-deps.sh")],
                              capture_output=True, text=True)
        exe = shutil.which("chromium")
        if exe is None:
            pytest.skip(f"chromium is not installed and scripts/install-test-deps.sh could not "
                        f"install it: {done.stderr.strip().splitlines()[-1:]}")
    return exe


def browse(page: Path, tmp: Path, screenshot: Path | None = None) -> dict:
    """Open ``page`` in headless Chromium: images loaded (n/m), console lines, DOM."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'chromium-profile'}", "--enable-logging=stderr", "--v=0"]
    url = page.resolve().as_uri()
    done = subprocess.run([_chromium(), *flags, "--dump-dom", url], capture_output=True,
                          text=True, timeout=120)
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', done.stdout)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    if screenshot is not None:
        subprocess.run([_chromium(), *flags, f"--screenshot={screenshot}", "--window-size=1280,3000",
                        "--hide-scrollbars", url], capture_output=True, timeout=120)
    return {"loaded": loaded.groups() if loaded else None, "console": console}


def test_the_page_loads_in_headless_chromium(report, tmp_path):
    out, result = report
    shot = tmp_path / "report.png"
    seen = browse(out / "index.html", tmp_path, shot)
    assert seen["loaded"] == ("6", "6"), seen
    assert seen["console"] == []
    assert Image.open(shot).size == (1280, 3000)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "report.png")


def test_the_browser_check_sees_a_broken_image_and_a_console_error(tmp_path):
    """The check above must be able to fail."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><script>window.addEventListener('load',function(){"
                    "var i=[].slice.call(document.images),ok=i.filter(function(x){return x.complete"
                    "&&x.naturalWidth>0});document.body.setAttribute('data-images-loaded',ok.length"
                    "+'/'+i.length)});console.error('planted');</script></head><body>"
                    "<img src='missing.png'><img src='data:image/png;base64,AAAA'></body></html>")
    seen = browse(page, tmp_path)
    assert seen["loaded"] == ("0", "2")
    assert any("planted" in line for line in seen["console"])


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as code:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return code.value.code, captured.out, captured.err


def _one_line_error(code, err, *words):
    lines = [l for l in err.splitlines() if l.startswith("Error:")]
    assert code == 2 and len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]


def test_cli_replaces_a_previous_report_and_prints_json(report, float_tflite, capsys):
    out, _ = report
    (out / "notes.txt").write_text("the user's, not the report's")
    args = ["report", float_tflite[0], "--images", "digits", "--out", out, "--limit", 20,
            "--classes", "3,8", "--layer", "L8", "--json"]
    code, _, err = _cli(capsys, *args)
    _one_line_error(code, err, "holds files the report did not write (notes.txt)")
    assert (out / "notes.txt").read_text() == "the user's, not the report's"
    (out / "notes.txt").unlink()
    (out / "early_exit.png").write_bytes(b"old")
    code, stdout, err = _cli(capsys, *args)
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["images"]["count"] == 20 and doc["similar_classes"]["classes"] == ["3", "8"]
    assert doc["specialization"]["block"] == "L8" and doc["cost"]["bench"] is None
    assert (out / "early_exit.png").read_bytes()[:4] == b"\x89PNG" and (out / MARKER).is_file()
    assert json.loads((out / "report.json").read_text())["images"]["count"] == 20


def test_an_out_folder_that_is_not_a_report_is_refused(float_tflite, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = _cli(capsys, "report", float_tflite[0], "--images", "digits", "--out", out)
    _one_line_error(code, err, "not a previous basisnet-deploy report")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_export_without_a_specialist_is_refused(float_tflite, tmp_path, capsys):
    copy = tmp_path / "lm-only"
    shutil.copytree(float_tflite[0], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for role in ("specialist_coefficient", "specialist_presynth"):
        manifest["artifacts"].pop(role)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = _cli(capsys, "report", copy, "--images", "digits", "--out", tmp_path / "r")
    _one_line_error(code, err, "neither a pre-synthesized nor a coefficient-input specialist")
    assert not (tmp_path / "r").exists()


def test_images_whose_classes_are_not_the_labels_are_refused(float_tflite, tmp_path, capsys):
    for name in ("cat", "dog"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        digits().images[0].save(tmp_path / "imgs" / name / "a.png")
    code, _, err = _cli(capsys, "report", float_tflite[0], "--images", tmp_path / "imgs",
                        "--out", tmp_path / "r")
    _one_line_error(code, err, "'cat'", "labels")
    assert not (tmp_path / "r").exists()


def test_a_bench_file_of_another_export_is_refused(float_tflite, bench_file, tmp_path, capsys):
    doc = json.loads(bench_file.read_text())
    for sha, words in (("0" * 64, "from another export"), (None, "has no manifest_sha256")):
        doc["manifest_sha256"] = sha
        other = tmp_path / "other.json"
        other.write_text(json.dumps(doc))
        code, _, err = _cli(capsys, "report", float_tflite[0], "--images", "digits", "--bench", other,
                            "--out", tmp_path / "r")
        _one_line_error(code, err, words)
    assert not (tmp_path / "r").exists()


def test_unknown_layer_and_classes_are_refused(float_tflite, tmp_path, capsys):
    for args, words in ((["--layer", "L99"], "--layer L99"), (["--classes", "3,x"], "'x'")):
        code, _, err = _cli(capsys, "report", float_tflite[0], "--images", "digits",
                            "--out", tmp_path / "r", "--limit", 10, *args)
        _one_line_error(code, err, words)


def test_report_runs_without_tensorflow(float_tflite, tmp_path):
    from tests.test_without_tensorflow import run_without_tf

    done = run_without_tf("report", float_tflite[0], "--images", "digits", "--limit", 12,
                          "--out", tmp_path / "r", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["images"]["count"] == 12


def _cost_doc(report) -> dict:
    """The fixture's report as JSON (its folder may since hold a report made without --bench)."""
    return jsonable(report[1].to_json())


def test_the_cost_section_shows_synthesis_with_its_session_recreation(report):
    """bench's '+ re-create' (and '+ first run') reach the page: synthesis p50 alone left out
    the session re-creation that every re-synthesis pays."""
    from basisnet_deploy.report.html_tables import cost_section

    doc = _cost_doc(report)
    synthesis = (doc["cost"]["bench"].get("synthesis") or {}).get("with_session_recreation_ms")
    assert synthesis and synthesis["p50"] > doc["cost"]["bench"]["stages"]["synthesis"]["p50"]
    html = cost_section(doc, {"cost.png": b"png"})
    for key in ("with_session_recreation_ms", "to_first_output_ms"):
        assert f'data-key="/cost/bench/synthesis/{key}/p50"' in html
    assert '<td class="t">synthesis + re-create</td>' in html


def test_the_cost_section_names_a_bench_fallback_and_where_the_specialist_ran(report):
    """A bench whose delegate fell back (--allow-fallback), or whose xnnpack ran as
    onnxruntime's CPU EP, is not shown as that delegate's figures alone."""
    from basisnet_deploy.report.html_tables import cost_section

    doc = _cost_doc(report)
    doc["cost"]["bench"]["delegate"] = "gpu"
    doc["cost"]["bench"]["fallback"] = "GPU unavailable (no Vulkan device); ran on CPU (XNNPACK)"
    html = cost_section(doc, {"cost.png": b"png"})
    assert "delegate gpu <span class=flag>(not run: FALLBACK: GPU unavailable" in html
    doc["cost"]["bench"].update(delegate="xnnpack", fallback=None, processors={
        "lightweight": "CPU EP", "specialist": "CPU EP (this onnxruntime build has no XnnpackExecutionProvider)"})
    html = cost_section(doc, {"cost.png": b"png"})
    assert ("delegate xnnpack (the specialist ran on CPU EP (this onnxruntime build has no "
            "XnnpackExecutionProvider))") in html


def test_the_runs_progress_starts_once_its_sessions_open(float_tflite, monkeypatch):
    """The fresh run's (0, total), from which its bar's rate counts, comes after every
    form's sessions open, not before (the rate then included the session creation)."""
    from basisnet_deploy.report import page
    from basisnet_deploy.runtime import backends
    from basisnet_deploy.runtime.deployment import Deployment

    events, make = [], backends.make_factory

    def logging_factory(*args, **kwargs):
        factory = make(*args, **kwargs)

        def opened(path, model=None):
            events.append(("open", Path(path).name))
            return factory(path, model)
        return opened
    monkeypatch.setattr(backends, "make_factory", logging_factory)
    dep = Deployment(float_tflite[0])
    data = page.labelled_images("digits", dep.manifest.labels, 4, dep.decode_side)
    page.fresh_run(dep, data, progress=lambda done, total, logs: events.append(("progress", done)))
    first_start = events.index(("progress", 0))
    opened = {name for kind, name in events[:first_start] if kind == "open"}
    assert opened == {"lightweight.tflite", "specialist_presynth.tflite",
                      "specialist_coefficient.tflite"}, events
    assert [e for e in events if e[0] == "progress"][-1] == ("progress", len(data.held))
