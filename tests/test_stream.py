"""Streaming image folders: same tensors as predict's preprocessing, skips counted,
augmentation seeded, held-out split recorded, bad folders refused, resume, TF_CONFIG checks."""

import json
import os
import signal

import numpy as np
import pytest
from PIL import Image

from basisnet_deploy.common.errors import UserError
from basisnet_deploy.data import DataError, Preprocessing, load_image, preprocess
from basisnet_deploy.data.folders import list_folder

PRE = Preprocessing(resize="center_crop")


def _photo(size=(120, 90)):
    from sklearn.datasets import load_sample_images

    return Image.fromarray(load_sample_images().images[0]).resize(size)


def _odd_files(folder):
    """JPEG with EXIF rotation, greyscale, palette with transparency, RGBA, 16-bit PNG."""
    photo = _photo()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    photo.save(folder / "exif.jpg", exif=exif.tobytes(), quality=90)
    photo.convert("L").save(folder / "grey.png")
    pal = photo.convert("P", palette=Image.ADAPTIVE, colors=32)
    pal.info["transparency"] = 3
    pal.save(folder / "palette.png", transparency=3)
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(photo.size))
    rgba.save(folder / "alpha.png")
    wide = (np.asarray(photo.convert("L"), np.uint16) * 257).astype(np.uint16)
    Image.fromarray(wide).save(folder / "sixteen.png")


@pytest.fixture
def odd_folder(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        _odd_files(tmp_path / name)
    (tmp_path / "a" / "broken.jpg").write_bytes(b"not a jpeg at all")
    data = (tmp_path / "a" / "exif.jpg").read_bytes()
    (tmp_path / "b" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    return tmp_path


def test_streamed_tensors_equal_predict_preprocessing_and_skips_are_counted(odd_folder):
    from basisnet_deploy.training import stream

    files = list_folder(odd_folder)
    spec = stream.StreamSpec(16, 32, PRE)
    decoder = stream.Decoder(spec, stream.SkipLog())
    got = list(stream.file_dataset(files, np.arange(len(files.paths)), decoder, 0))
    readable = [p for p in files.absolute() if "broken" not in p and "truncated" not in p]
    assert len(got) == len(readable) == 10
    for path, (light, image, label) in zip(readable, got):
        im = load_image(path)
        assert np.array_equal(light.numpy(), preprocess(im, 16, PRE)), path
        assert np.array_equal(image.numpy(), preprocess(im, 32, PRE)), path
    assert load_image(odd_folder / "a" / "exif.jpg").size == (90, 120)  # the rotation applied
    summary = decoder.skips.summary()
    assert summary["count"] == 2 and sorted(os.path.basename(p) for p in summary["first"]) == [
        "broken.jpg", "truncated.jpg"]


def test_augmentation_is_one_seeded_crop_for_both_stages(odd_folder):
    from basisnet_deploy.training import stream

    files = list_folder(odd_folder)
    dec = stream.Decoder(stream.StreamSpec(16, 32, PRE, augment=True, seed=3), stream.SkipLog())
    path = files.absolute()[0]
    light, image, ok = dec(path.encode(), 5, 1)
    again = dec(path.encode(), 5, 1)
    other = dec(path.encode(), 5, 2)
    assert ok and np.array_equal(light, again[0]) and np.array_equal(image, again[1])
    assert not np.array_equal(image, other[1])
    crop = stream.augment(load_image(path), np.random.default_rng([3, 1, 5]))
    squash = Preprocessing(resize="squash", crop_fraction=PRE.crop_fraction)
    assert np.array_equal(light, preprocess(crop, 16, squash))
    assert np.array_equal(image, preprocess(crop, 32, squash))


def test_bad_folders_are_one_line_errors(tmp_path):
    (tmp_path / "one").mkdir()
    _photo().save(tmp_path / "one" / "x.jpg")
    with pytest.raises(DataError, match="at least two"):
        list_folder(tmp_path)
    (tmp_path / "two").mkdir()
    with pytest.raises(DataError, match="class folder is empty"):
        list_folder(tmp_path)
    (tmp_path / "two" / "notes.txt").write_text("x")
    (tmp_path / "one" / "x.jpg").unlink()
    (tmp_path / "one" / "y.txt").write_text("x")
    with pytest.raises(DataError, match="no image files"):
        list_folder(tmp_path)


def _small_folder(root, per_class=24):
    photo = _photo((160, 120))
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            im = photo.rotate(90 * c).resize((64 + i, 48))
            im.save(root / name / f"{i:03d}.jpg")
    return root


TINY_FLAGS = ["--epochs", "1", "--batch-size", "8", "--bases", "2", "--width", "0.35",
              "--light-width", "0.35", "--resolution", "16", "--light-resolution", "16",
              "--classes", "2", "--json"]


def test_folder_training_records_held_out_files_that_evaluate_and_export_use(tmp_path, capsys):
    from basisnet_deploy.cli import main
    from basisnet_deploy.data.datasets import evaluation_set
    from basisnet_deploy.model.checkpoint import load_config

    data = _small_folder(tmp_path / "photos")
    (data / "dog" / "zz-corrupt.jpg").write_bytes(b"\xff\xd8garbage")
    out = tmp_path / "ckpt"
    with pytest.raises(SystemExit) as code:
        main(["train", "--dataset", str(data), "--out", str(out), *TINY_FLAGS])
    assert code.value.code in (0, None)
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "images/s" in captured.err and "zz-corrupt.jpg" in captured.err
    cfg = load_config(out)
    held = cfg.training["held_out_files"]
    assert len(held) == 10 and report["train_examples"] == 39 and cfg.training["augment"] is True
    train_files = set(list_folder(data).paths) - set(held)
    assert not train_files & set(held)
    with pytest.raises(SystemExit):
        main(["evaluate", str(out), "--json"])
    again = json.loads(capsys.readouterr().out)
    assert again["split"] == "held-out"
    assert again["examples"] + again["skipped"] == len(held)
    assert again["specialist_top1"] == report["held_out"]["specialist_top1"]
    ev = evaluation_set(cfg)
    assert sum(1 for _ in ev.examples()) == again["examples"] and ev.source.startswith("held-out")
    assert len(ev) == len(held) and ev.skipped.total == again["skipped"]
    assert not os.path.exists(tmp_path / ".ckpt.resume")  # removed once the checkpoint exists


def test_unwritable_checkpoint_directory_is_refused_before_training(tmp_path, capsys):
    from basisnet_deploy.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # its "subdirectory" cannot be created, even by root
    with pytest.raises(SystemExit) as code:
        main(["train", "--out", str(blocker / "ckpt"), *TINY_FLAGS])
    err = capsys.readouterr().err
    assert code.value.code == 2 and "is a file, not a directory" in err
    assert len(err.strip().splitlines()) == 1


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, sigint_handled):
    from basisnet_deploy.data import digits
    from basisnet_deploy.model.config import ArchConfig, TrainSettings
    from basisnet_deploy.training.resume import TrainingInterrupted
    from basisnet_deploy.training.trainer import RunOptions, train

    ds = digits().subset(range(120))
    arch = ArchConfig(bases=2, nonshared=(8, 15), width=0.35, resolution=16, light_width=0.35,
                      light_resolution=16, num_classes=10, bn_momentum=0.9)
    settings = TrainSettings(epochs=2, batch_size=32, seed=5)
    pre = Preprocessing(resize="squash")
    full = train(ds, arch, pre, settings)
    run = RunOptions(resume_dir=str(tmp_path / "resume"))

    def kill_in_epoch_two(step, total, logs):
        if step == 3:  # 95 // 32 = 2 steps per epoch: mid second epoch
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="1 completed epochs"):
        train(ds, arch, pre, settings, kill_in_epoch_two, run)
    resumed = train(ds, arch, pre, settings, None, run)
    assert resumed.metrics["resumed_from_epoch"] == 1
    assert [e["epoch"] for e in resumed.metrics["epochs"]] == [2]
    for a, b in zip(full.net.weights, resumed.net.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.path)
    other = TrainSettings(epochs=2, batch_size=32, seed=6)
    with pytest.raises(UserError, match=r"different settings \(settings.seed: \d+ -> 6\)"):
        train(ds, arch, pre, other, None, run)


@pytest.mark.parametrize("text, message", [
    ("{not json", "invalid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "'task'"),
    ('{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}', "not in"),
])
def test_malformed_tf_config_is_one_line(text, message):
    from basisnet_deploy.training.distribute import parse_tf_config

    with pytest.raises(UserError, match=message):
        parse_tf_config(text)


def test_unreachable_worker_is_a_clear_error_in_bounded_time():
    import socket
    import time

    from basisnet_deploy.training.distribute import parse_tf_config, probe

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # closed when the block ends: nothing listens there
    cluster = parse_tf_config(json.dumps({"cluster": {"worker": ["127.0.0.1:1", f"127.0.0.1:{dead}"]},
                                          "task": {"type": "worker", "index": 0}}))
    start = time.monotonic()
    with pytest.raises(UserError, match=f"127.0.0.1:{dead} unreachable"):
        probe(cluster, 2.0)
    assert time.monotonic() - start < 10


def test_large_images_are_decoded_to_one_short_side_by_every_loader(tmp_path):
    """Training (cached or not), calibration and verification decode a large image to the
    same short side (decode_side): a JPEG at a reduced DCT scale, then shrunk like any other
    format; the tensors are close to the full decode's and identical across loaders."""
    from sklearn.datasets import load_sample_images

    from basisnet_deploy.calibration.images import calibration_images
    from basisnet_deploy.data import image_folder
    from basisnet_deploy.data.preprocessing import decode_side
    from basisnet_deploy.training import stream

    photo = Image.fromarray(load_sample_images().images[0])  # 640x427
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        photo.save(tmp_path / name / "big.jpg", exif=exif.tobytes(), quality=92)
        photo.save(tmp_path / name / "big.png")
    side = decode_side(PRE, 32, 16)
    assert side == 2 * 37  # twice the short side center_crop resizes to (32 / 0.875)
    assert decode_side(PRE, 32, 16, augment=True) == 4 * 37  # room for 8%-area crops
    jpeg, png = tmp_path / "a" / "big.jpg", tmp_path / "a" / "big.png"
    with Image.open(jpeg) as im:  # what the decoder does alone: 1/4 scale (1/8 would be < 74)
        im.draft(None, (160, 106))
        assert im.size == (160, 107)
    assert load_image(jpeg, side).size == (107, 160)  # upright, under 2 * 74: kept
    assert load_image(png, side).size == (222, 148)  # shrunk to 2 * 74
    assert load_image(png).size == (640, 427)
    full, reduced = preprocess(load_image(jpeg), 32, PRE), preprocess(load_image(jpeg, side), 32, PRE)
    assert 0 < np.abs(full - reduced).mean() < 0.03  # another photo differs by ~0.8

    files = list_folder(tmp_path)
    folder = image_folder(tmp_path, side)
    sample = calibration_images(str(tmp_path), 10, min_side=side)
    assert sorted(im.size for im in sample.images) == sorted(im.size for im in folder.images)
    for cache in (None, str(tmp_path / "cache"), str(tmp_path / "cache")):  # fill, then read
        decoder = stream.Decoder(stream.StreamSpec(16, 32, PRE, cache_dir=cache), stream.SkipLog())
        streamed = list(stream.file_dataset(files, np.arange(len(files.paths)), decoder, 0))
        for path, (light, image, _), im in zip(files.absolute(), streamed, folder.images):
            assert np.array_equal(image.numpy(), preprocess(im, 32, PRE)), (path, cache)
            assert np.array_equal(light.numpy(), preprocess(im, 16, PRE)), (path, cache)


def test_a_stopped_non_chief_worker_leaves_no_scratch_directory(tmp_path):
    """A non-chief worker's throwaway resume directory goes when its process ends early."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; "
            "from basisnet_deploy.training.resume import ResumeState; "
            "s = ResumeState(Path(sys.argv[1]), {}, {}, chief=False); print(s._scratch, flush=True); "
            "raise SystemExit('stopped')")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "resume")],
                          capture_output=True, text=True, timeout=300)
    scratch = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 1 and "basisnet-worker-" in scratch
    assert not os.path.exists(scratch)


def test_an_explicit_digits_is_the_held_out_split_of_a_checkpoint_trained_on_digits():
    """--dataset digits for a checkpoint trained on digits with another seed: its own held-out
    split, never its training images (a fixed seed-0 fifth shares images with that training
    set)."""
    from basisnet_deploy.data import digits
    from basisnet_deploy.data.datasets import evaluation_set
    from basisnet_deploy.model.config import BasisNetConfig
    from basisnet_deploy.data import Preprocessing
    from tests.conftest import TINY

    cfg = BasisNetConfig(TINY, Preprocessing(resize="squash"), tuple("0123456789"),
                         {"dataset": "digits", "settings": {"held_out": 0.25, "seed": 7}})
    train_idx, test_idx = digits().split_indices(0.25, 7)
    assert list(evaluation_set(cfg, "digits").indices) == list(evaluation_set(cfg).indices) == list(test_idx)
    assert not set(evaluation_set(cfg, "digits").indices) & set(train_idx)
