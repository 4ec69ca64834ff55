"""Streamed ``evaluate``: the same top-1 figures, overall and per class, as decoding every
image and running the float model on the whole stack; unreadable files counted; ``--limit``
a seeded sample; bad folders refused before any image is decoded."""

import json

import numpy as np
import pytest

from basisnet_deploy.cli import main


def _stacked_top1(ckpt, images, labels) -> dict:
    """Every image preprocessed at both resolutions, stacked, the model run on it at once."""
    import tensorflow as tf

    from basisnet_deploy.data import preprocess
    from basisnet_deploy.model import checkpoint

    net, cfg = checkpoint.load(ckpt)
    a, pre = cfg.architecture, cfg.preprocessing
    light = np.stack([preprocess(im, a.light_resolution, pre) for im in images])
    image = np.stack([preprocess(im, a.resolution, pre) for im in images])
    out, logits = net(tf.constant(light), tf.constant(image))
    lm_hit = np.argmax(out["logits"], -1) == labels
    sp_hit = np.argmax(logits, -1) == labels
    classes = {cfg.labels[c]: {"examples": int((labels == c).sum()),
                               "lightweight_top1": float(lm_hit[labels == c].mean()),
                               "specialist_top1": float(sp_hit[labels == c].mean())}
               for c in np.unique(labels)}
    return {"lightweight_top1": float(lm_hit.mean()), "specialist_top1": float(sp_hit.mean()),
            "examples": len(labels), "classes": classes}


def _same(streamed: dict, stacked: dict) -> None:
    for key in ("lightweight_top1", "specialist_top1", "examples"):
        assert streamed[key] == stacked[key], key
    assert streamed["classes"] == stacked["classes"]


def test_streamed_evaluation_gives_the_stacked_figures_on_the_held_out_digits(ckpt):
    """Several batches of 37 and a short last one, against one stack of all 359 digits."""
    from basisnet_deploy.data import digits
    from basisnet_deploy.model import checkpoint
    from basisnet_deploy.training.trainer import _evaluation_images, evaluate_held_out

    net, cfg = checkpoint.load(ckpt)
    held, split = _evaluation_images(cfg, "digits", "digits")
    a = cfg.architecture
    streamed = evaluate_held_out(net, held, cfg.preprocessing, a.light_resolution, a.resolution,
                                 batch_size=37)
    ds = digits()
    _, test_idx = ds.split_indices(0.2, 0)
    stacked = _stacked_top1(ckpt, [ds.images[i] for i in test_idx], ds.labels[test_idx])
    assert split == "held-out" and stacked["examples"] == 359
    assert 0 < stacked["specialist_top1"] < 1  # not a constant answer: the comparison means something
    _same(streamed.to_json(), stacked)
    assert streamed.skipped == 0 and sum(c.examples for c in streamed.classes.values()) == 359


def _folder(root, per_class=6):
    from basisnet_deploy.data import digits

    ds = digits()
    for c in ("2", "5", "8"):
        (root / c).mkdir(parents=True)
        for n, i in enumerate(np.flatnonzero(ds.labels == int(c))[:per_class]):
            ds.images[i].resize((24, 24)).save(root / c / f"{n:02d}.png")
    return root


def test_evaluate_streams_a_folder_counts_what_it_skips_and_limits_to_a_seeded_sample(
        ckpt, tmp_path, capsys):
    from basisnet_deploy.data import load_image
    from basisnet_deploy.data.heldout import sample_indices

    root = _folder(tmp_path / "held")
    (root / "5" / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    (root / "8" / "notes.txt").write_text("not a photo")
    with pytest.raises(SystemExit) as code:
        main(["evaluate", str(ckpt), "--dataset", str(root), "--json"])
    assert code.value.code in (0, None)
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    files = sorted(p for p in root.rglob("*.png") if p.name != "zz-broken.png")
    labels = np.asarray([int(p.parent.name) for p in files])
    # squash preprocessing: the decode side does not matter for these 24 px images
    _same(result, _stacked_top1(ckpt, [load_image(p) for p in files], labels))
    assert result["split"] == "all" and result["skipped"] == 2
    assert {p.rsplit("/", 1)[1] for p in result["skipped_files"]} == {"zz-broken.png", "notes.txt"}
    assert "image/s" in captured.err and "Traceback" not in captured.err

    with pytest.raises(SystemExit):
        main(["evaluate", str(ckpt), "--dataset", str(root), "--limit", "7", "--json"])
    limited = json.loads(capsys.readouterr().out)
    all_files = sorted(str(p) for p in root.rglob("*") if p.is_file())
    all_labels = np.asarray([int(p.rsplit("/", 2)[1]) for p in all_files])
    picked = [all_files[i] for i in sample_indices(all_labels, 7, 0)]
    readable = [p for p in picked if p.endswith(".png") and "broken" not in p]
    assert limited["examples"] + limited["skipped"] == 7
    _same(limited, _stacked_top1(ckpt, [load_image(p) for p in readable],
                                 np.asarray([int(p.rsplit("/", 2)[1]) for p in readable])))


@pytest.mark.parametrize("make, message", [
    (lambda root: [(root / c).mkdir() or _folder_one(root / c) for c in ("cat", "dog")],
     "class folders ['cat', 'dog'] are not among the model's labels"),
    (lambda root: None, "found 0 class folders"),
])
def test_evaluate_refuses_bad_folders_before_any_image_is_decoded(ckpt, tmp_path, capsys,
                                                                  refuse_decoding, make, message):
    root = tmp_path / "held"
    root.mkdir()
    make(root)
    with pytest.raises(SystemExit) as code:
        main(["evaluate", str(ckpt), "--dataset", str(root)])
    err = capsys.readouterr().err
    assert code.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def _folder_one(folder):
    from PIL import Image

    Image.new("RGB", (20, 20), (10, 20, 30)).save(folder / "x.png")


def test_evaluate_text_names_what_it_skipped():
    import dataclasses

    from basisnet_deploy.cli.render import evaluate_text
    from basisnet_deploy.training.trainer import Evaluation

    result = Evaluation(lightweight_top1=0.5, specialist_top1=0.75, examples=9, skipped=7,
                        skipped_files=["a.txt", "b.png"], classes={}, seconds=1.0,
                        images_per_s=9.0, dataset="d", split="all")
    assert evaluate_text(result)[1] == "skipped 7 unreadable files: a.txt, b.png and 5 more"
    assert len(evaluate_text(dataclasses.replace(result, skipped=0))) == 1
