"""Streamed verification: the same figures as scoring the whole stack at once, unreadable
files counted, and bad folders refused before any image is decoded."""

import json

import numpy as np
import pytest
from PIL import Image

from basisnet_deploy.cli import main


def _stacked_figures(directory, net, held) -> dict:
    """The figures computed the stacked way: every image decoded, both resolutions stacked,
    the float model run on the whole stack as one batch, each artifact one frame at a time."""
    import tensorflow as tf

    from basisnet_deploy.artifacts.manifest import Role, load_manifest
    from basisnet_deploy.artifacts.synthesis import load_presynth, synthesize
    from basisnet_deploy.data import preprocess
    from basisnet_deploy.runtime.sessions import open_session

    m = load_manifest(directory)
    images = [e.image for e in held.examples()]
    labels = np.asarray(held.labels)
    light = np.stack([preprocess(im, m.light_resolution, m.preprocessing) for im in images])
    image = np.stack([preprocess(im, m.resolution, m.preprocessing) for im in images])
    ref = net.lightweight(tf.constant(light), training=False)
    ref_sp = net.specialist([tf.constant(image), ref["coefficients"]], training=False).numpy()
    lm = open_session(directory / m.artifacts[Role.LIGHTWEIGHT].file)
    outs = [lm.run({"image": x[None]}) for x in light]
    got = np.concatenate([o["logits"] for o in outs])
    coeff = np.concatenate([o["coefficients"] for o in outs])
    ps = load_presynth(directory, m.artifacts[Role.SPECIALIST_PRESYNTH])
    e2e = np.concatenate([open_session(ps.path, model=synthesize(ps.template, ps.table, ps.bases, c))
                          .run({"image": x[None]})["logits"] for x, c in zip(image, coeff)])

    def scores(r, g):
        d = np.abs(g - r)
        top2 = np.sort(r, -1)[:, -2:]
        gaps = top2[:, 1] - top2[:, 0]
        differ = np.argmax(r, -1) != np.argmax(g, -1)
        return {"agree": float((~differ).mean()),
                "acc": float((np.argmax(g, -1) == labels).mean()),
                "err": (float(d.max()), float(d.mean()), float(d.max() / np.abs(r).max())),
                "ties": (float(np.median(gaps)), int(differ.sum()),
                         float((r.max(-1) - r[np.arange(len(r)), np.argmax(g, -1)])[differ].max())
                         if differ.any() else None)}
    return {"lm": scores(ref["logits"].numpy(), got), "e2e": scores(ref_sp, e2e)}


def test_streamed_verification_gives_the_stacked_figures(int8_tflite):
    """Several float batches (13 + a short last one) against one stack of all 40 images."""
    from basisnet_deploy.artifacts.manifest import load_manifest
    from basisnet_deploy.data.datasets import evaluation_set
    from basisnet_deploy.export.verify import verify_directory
    from basisnet_deploy.model import checkpoint

    out, _ = int8_tflite
    net, cfg = checkpoint.load(load_manifest(out).checkpoint["path"])
    held = evaluation_set(cfg).sample(40)
    calls = []
    streamed = verify_directory(out, load_manifest(out), net, held, batch_size=13,
                                progress=lambda done, total, logs: calls.append(done))
    assert calls == [0, 13, 26, 39, 40, 40]  # (0, total) as the work starts, then each batch
    stacked = _stacked_figures(out, net, held)
    for got, want in ((streamed.lightweight, stacked["lm"]),
                      (streamed.specialist_presynth.end_to_end, stacked["e2e"])):
        assert got.top1_agreement == want["agree"] and got.accuracy == want["acc"]
        err = got.logits
        assert (err.max_abs, err.mean_abs, err.max_rel) == pytest.approx(want["err"], rel=1e-4)
        median, disagreeing, max_gap = want["ties"]
        assert got.ties.median_gap == pytest.approx(median, rel=1e-5)
        assert got.ties.disagreeing == disagreeing
        assert (got.ties.disagreeing_max_gap is None) == (max_gap is None)
        if max_gap is not None:
            assert got.ties.disagreeing_max_gap == pytest.approx(max_gap, rel=1e-5)
    assert streamed.images == 40 and sum(streamed.classes.values()) == 40
    assert streamed.skipped["count"] == 0


def _cli(args, capsys):
    with pytest.raises(SystemExit) as code:
        main(args)
    out, err = capsys.readouterr()
    return code.value.code, out, err


def _photo(path, mode="RGB", fmt=None, seed=0):
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, (40, 40)).astype(np.uint16)).save(path)
        return
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).convert(mode).save(path, fmt)


def test_unreadable_files_are_counted_and_16_bit_and_cmyk_are_scored(float_tflite, tmp_path, capsys):
    out, _ = float_tflite
    root = tmp_path / "held"
    for name in ("3", "7"):
        (root / name).mkdir(parents=True)
        _photo(root / name / "a.png", seed=int(name))
    _photo(root / "3" / "deep.png", mode="I;16")
    _photo(root / "7" / "print.jpg", mode="CMYK", fmt="JPEG")
    (root / "3" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (root / "7" / "notes.txt").write_text("not a photo")
    code, text, err = _cli(["verify", str(out), "--images", str(root), "--json"], capsys)
    assert code in (0, None), err
    v = json.loads(text)
    assert v["images"] == 4 and v["classes"] == {"3": 2, "7": 2}
    assert v["skipped"]["count"] == 2 and sum(v["skipped"]["by_reason"].values()) == 2
    assert {p.rsplit("/", 1)[1] for p in v["skipped"]["first"]} == {"broken.jpg", "notes.txt"}
    assert "accuracy" in v["lightweight"] and "Traceback" not in err


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "the folder is empty"),
    (lambda root: [(root / c).mkdir() or _photo(root / c / "x.png") for c in ("cat", "dog")],
     "class folders ['cat', 'dog'] are not among the model's labels"),
    (lambda root: [(root / c).mkdir() for c in ("3", "7")] and _photo(root / "3" / "x.png"),
     "class folder is empty"),
])
def test_bad_folders_are_refused_before_any_image_is_decoded(float_tflite, tmp_path, capsys,
                                                             refuse_decoding, make, message):
    root = tmp_path / "held"
    root.mkdir()
    make(root)
    code, _, err = _cli(["verify", str(float_tflite[0]), "--images", str(root)], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_threshold_and_report_stream_a_folder_and_count_what_they_skip(float_tflite, tmp_path, capsys):
    import shutil

    from basisnet_deploy.data import digits

    ds = digits()
    root = tmp_path / "held"
    for c in ("3", "7"):
        (root / c).mkdir(parents=True)
        for n, i in enumerate(np.flatnonzero(ds.labels == int(c))[:4]):
            ds.images[i].save(root / c / f"{n}.png")
    (root / "7" / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    copy = tmp_path / "exp"
    shutil.copytree(float_tflite[0], copy)
    code, text, err = _cli(["calibrate-threshold", str(copy), "--images", str(root),
                            "--max-drop", "1", "--json"], capsys)
    assert code in (0, None), err
    t = json.loads(text)
    assert t["images"] == 8 and t["classes"] == {"3": 4, "7": 4} and t["skipped"]["count"] == 1
    code, text, err = _cli(["report", str(copy), "--images", str(root), "--out",
                            str(tmp_path / "r"), "--json"], capsys)
    assert code in (0, None), err
    images = json.loads(text)["images"]
    assert images["count"] == 8 and images["classes"] == 2 and images["skipped"]["count"] == 1


def test_limit_draws_the_same_seeded_sample_in_every_command(float_tflite, tmp_path, capsys):
    """verify, evaluate, calibrate-threshold and report --limit 7 score the same 7 files: a
    seeded sample spread over the classes, not the first 7 listed."""
    import shutil

    from basisnet_deploy.data import digits
    from basisnet_deploy.data.heldout import class_counts, sample_indices

    ds = digits()
    root = tmp_path / "held"
    for c in ("2", "5", "8"):
        (root / c).mkdir(parents=True)
        for n, i in enumerate(np.flatnonzero(ds.labels == int(c))[:6]):
            ds.images[i].save(root / c / f"{n}.png")
    labels = np.repeat([2, 5, 8], 6)
    picked = sample_indices(labels, 7, 0)
    want = class_counts(labels[picked], tuple("0123456789"))
    assert sorted(want.values()) == [2, 2, 3] and list(picked) != list(range(7))
    assert list(sample_indices(labels, 7, 0)) == list(picked)
    copy = tmp_path / "exp"
    shutil.copytree(float_tflite[0], copy)
    ckpt = json.loads((copy / "manifest.json").read_text())["checkpoint"]["path"]
    runs = {"verify": ["verify", str(copy)],
            "evaluate": ["evaluate", ckpt, "--dataset"],
            "calibrate-threshold": ["calibrate-threshold", str(copy), "--max-drop", "1", "--images"],
            "report": ["report", str(copy), "--out", str(tmp_path / "r"), "--images"]}
    got = {}
    for name, args in runs.items():
        if name == "verify":
            args = [*args, "--images"]
        code, text, err = _cli([*args, str(root), "--limit", "7", "--json"], capsys)
        assert code in (0, None), err
        got[name] = json.loads(text)
    assert got["verify"]["classes"] == want and got["calibrate-threshold"]["classes"] == want
    assert {c: v["examples"] for c, v in got["evaluate"]["classes"].items()} == want
    assert got["report"]["images"]["count"] == 7 and got["report"]["images"]["classes"] == 3


def test_a_large_folder_of_links_to_real_photos_and_bad_files_is_counted_never_fatal(
        float_tflite, tmp_path, capsys):
    """660 files: symlinks to real photographs (JPEG, PNG, greyscale), 16-bit PNGs and CMYK
    JPEGs made from them (scored), truncated files and non-images (skipped, counted by
    reason); every file is accounted for, per class."""
    pytest.importorskip("skimage")
    from tests.photo_fixture import load_photo, photo_path

    shared = tmp_path / "sources"
    shared.mkdir()
    sources = {"3": [photo_path("china"), photo_path("camera")],
               "7": [photo_path("coffee"), photo_path("grace_hopper")]}
    small = load_photo("rocket").resize((96, 64))
    small.convert("CMYK").save(shared / "cmyk.jpg", "JPEG")
    Image.fromarray((np.asarray(small.convert("L"), np.uint16) * 257)).save(shared / "deep.png")
    assert Image.open(shared / "deep.png").mode.startswith("I;16")
    assert Image.open(shared / "cmyk.jpg").mode == "CMYK"
    jpeg = photo_path("china").read_bytes()
    (shared / "truncated.jpg").write_bytes(jpeg[:200])
    (shared / "text.jpg").write_text("not a photo")
    (shared / "notes.txt").write_text("notes")
    kinds = [*(("photo",) * 6), "cmyk", "deep", "truncated", "text", "notes"]
    want_images = {"3": 0, "7": 0}
    root = tmp_path / "held"
    for i in range(660):
        c = "37"[i % 2]
        (root / c).mkdir(parents=True, exist_ok=True)
        kind = kinds[(i // 2) % len(kinds)]
        src = {"photo": sources[c][(i // 2) % 2], "cmyk": shared / "cmyk.jpg",
               "deep": shared / "deep.png", "truncated": shared / "truncated.jpg",
               "text": shared / "text.jpg", "notes": shared / "notes.txt"}[kind]
        (root / c / f"{i:05d}-{kind}{src.suffix}").symlink_to(src)
        want_images[c] += kind in ("photo", "cmyk", "deep")
    code, text, err = _cli(["verify", str(float_tflite[0]), "--images", str(root), "--json"], capsys)
    assert code in (0, None), err
    v = json.loads(text)
    assert v["classes"] == want_images and v["images"] == sum(want_images.values())
    bad = sum(1 for p in root.rglob("*") if p.is_file() and
              p.name.split("-")[1].split(".")[0] in ("truncated", "text", "notes"))
    assert v["skipped"]["count"] == bad and v["images"] + bad == 660
    assert v["skipped"]["by_reason"].get("truncated", 0) > 0 and len(v["skipped"]["first"]) == 5
    assert "Traceback" not in err


def test_export_verification_says_its_rate_and_time_left_on_long_runs(monkeypatch):
    from basisnet_deploy.export import verify

    clock = iter([100.0, 110.0, 135.0, 140.0, 170.0])  # start, then one per call
    monkeypatch.setattr(verify.time, "perf_counter", lambda: next(clock))
    said = []
    progress = verify.rate_lines(said.append, every_s=30)
    for done in (10, 50, 60, 100):  # at 10 s, 35 s (a line), 40 s, and the end (none)
        progress(done, 100, {})
    assert said == ["verified 50/100 images, 1.4 images/s, about 35 s left"]


def test_disagreements_report_how_close_to_a_tie_the_float_answers_were():
    """A flipped near tie and a flipped clear answer, over two batches: the largest gap among
    the flips is the clear one's, the median is over every image, and the text says both."""
    from basisnet_deploy.cli.render import verification_text
    from basisnet_deploy.export.verify import ScoreStats

    stats = ScoreStats()
    labels = np.zeros(3, np.int64)
    ref = np.array([[2.0, 1.99, 0.0], [5.0, 1.0, 0.0], [0.0, 3.0, 1.0]], np.float32)
    got = np.array([[1.9, 2.0, 0.0], [5.0, 1.0, 0.0], [0.0, 3.0, 1.0]], np.float32)
    stats.add(ref, got, labels)  # flips the 0.01 near tie
    assert stats.result().ties.disagreeing_max_gap == pytest.approx(0.01, abs=1e-6)
    ref2 = np.array([[0.0, 0.0, 6.0]], np.float32)
    stats.add(ref2, np.array([[7.0, 0.0, 6.0]], np.float32), labels[:1])  # flips a gap of 6
    ties = stats.result().ties
    assert (ties.disagreeing, ties.disagreeing_max_gap) == (2, pytest.approx(6.0))
    assert ties.median_gap == pytest.approx(np.median([0.01, 4.0, 2.0, 6.0]))
    agreeing = ScoreStats()
    agreeing.add(ref, ref, labels)
    assert agreeing.result().ties.disagreeing_max_gap is None
    third = ScoreStats()  # a flip past the runner-up to a class float ranked far below
    third.add(np.array([[5.0, 4.99, 0.0]], np.float32), np.array([[0.0, 0.0, 9.0]], np.float32),
              labels[:1])
    assert third.result().ties.disagreeing_max_gap == pytest.approx(5.0)
    broken = ScoreStats()  # NaN float logits: left out, never read as a tie
    broken.add(np.array([[np.nan, 1.0, 0.0], [3.0, 0.5, 0.0]], np.float32),
               np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 4.0]], np.float32), labels[:2])
    ties = broken.result().ties
    assert (ties.disagreeing, ties.disagreeing_max_gap, ties.median_gap) == (2, 3.0, 2.5)
    nothing = ScoreStats()
    nothing.add(np.full((1, 3), np.nan, np.float32), np.array([[0.0, 1.0, 0.0]], np.float32), labels[:1])
    assert (nothing.result().ties.disagreeing_max_gap, nothing.result().ties.median_gap) == (None, None)

    def record(score):
        return {"images": 4, "source": "s", "lightweight": {
            **score.to_json(), "coefficients": {"max_abs": 0.0, "mean_abs": 0.0, "max_rel": 0.0}}}
    text = "\n".join(verification_text(record(stats.result())))
    assert "lightweight: 2 image(s), gap <= 6 (median 3)" in text
    assert "gap <=" not in "\n".join(verification_text(record(agreeing.result())))
    assert "gap <= n/a" in "\n".join(verification_text(record(nothing.result())))


def test_non_finite_outputs_are_counted_never_scored_as_agreeing_or_exact(tmp_path):
    """An artifact that answers NaN: its error figures are None with the count of bad values
    (a NaN batch after a good one reported a max error of 0 before), its NaN rows never agree
    (argmax picks a NaN's index, "agreeing" where float answers class 0), the text says so,
    and the record is strict JSON (null, never a bare NaN)."""
    from basisnet_deploy.cli.render import emit, verification_text
    from basisnet_deploy.common.files import write_json_atomically
    from basisnet_deploy.export.verify import ErrorStats, ScoreStats

    ref = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]], np.float32)
    errors = ErrorStats()
    errors.add(ref, ref + 0.5)
    errors.add(ref, np.full_like(ref, np.nan))
    summary = errors.result()
    assert (summary.max_abs, summary.mean_abs, summary.max_rel, summary.non_finite) == (None, None, None, 6)
    healthy = ErrorStats()
    healthy.add(ref, ref + 0.5)
    assert healthy.result().max_abs == pytest.approx(0.5) and healthy.result().non_finite == 0

    stats = ScoreStats()
    labels = np.array([0, 1])
    stats.add(ref, np.array([[np.nan, 0.0, 0.0], [0.0, 2.0, np.inf]], np.float32), labels)
    score = stats.result()
    assert (score.top1_agreement, score.accuracy, score.logits.non_finite) == (0.0, 0.0, 2)
    assert score.ties.disagreeing == 2

    record = {"images": 2, "source": "s",
              "lightweight": {**score.to_json(), "coefficients": summary.to_json()}}
    text = "\n".join(verification_text(record))
    assert "non-finite" in text and "nan" not in text.lower().replace("nan or", "")
    assert "WARNING: lightweight logits: 2 NaN or infinite value(s)" in text
    assert "WARNING: lightweight coefficients: 6 NaN or infinite value(s)" in text
    old = {**record, "lightweight": {**record["lightweight"],  # a record holding bare NaN
                                     "logits": {"max_abs": np.nan, "mean_abs": np.nan, "max_rel": np.nan}}}
    assert "non-finite" in "\n".join(verification_text(old))

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    write_json_atomically(tmp_path / "m.json", {"v": {"max_rel": float("nan"), "n": np.float32("inf")}})
    assert strict((tmp_path / "m.json").read_text()) == {"v": {"max_rel": None, "n": None}}
    emit(score, as_json=False, json_out=str(tmp_path / "out.json"), text=lambda r: [])
    assert strict((tmp_path / "out.json").read_text())["logits"]["max_abs"] is None


def test_export_verification_rates_leave_the_setup_out(monkeypatch):
    """(0, total) marks the start of the work: 30 s of setup before it neither prints a line
    ("0/100 images, about 1e11 s left") nor halves the rate."""
    from basisnet_deploy.export import verify

    clock = iter([100.0, 130.0, 160.0])  # built; setup done (the work starts); 50 images later
    monkeypatch.setattr(verify.time, "perf_counter", lambda: next(clock))
    said = []
    progress = verify.rate_lines(said.append, every_s=20)
    progress(0, 100, {})
    progress(50, 100, {})
    assert said == ["verified 50/100 images, 1.7 images/s, about 30 s left"]
