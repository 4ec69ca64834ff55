"""The real-photo fixture: packaged photographs, mixed formats, held-out really held out."""

import numpy as np
import pytest

pytest.importorskip("skimage")
pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from tests import photo_fixture  # noqa: E402


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    return root, photo_fixture.build(root, train_per_class=12, heldout_per_class=6, size=48)


def test_every_photo_ships_in_an_installed_package():
    for name in photo_fixture.PHOTOS:
        assert photo_fixture.photo_path(name).is_file()


def test_layout_counts_and_formats(photos):
    root, summary = photos
    assert summary["counts"] == {"train": 12 * 12, "heldout": 12 * 6}
    assert set(summary["formats"]) == set(photo_fixture.FORMATS)
    modes = {Image.open(p).mode for p in root.rglob("*.png")}
    assert {"RGB", "L", "P", "RGBA", "I;16"} <= modes
    from basisnet_deploy.data import image_folder

    for split in ("train", "heldout"):
        ds = image_folder(root / split)
        assert ds.class_names == tuple(sorted(photo_fixture.PHOTOS)) and not ds.skipped


def test_exif_jpegs_load_upright_and_16_bit_pngs_keep_their_range(tmp_path):
    from basisnet_deploy.data import load_image

    rng = np.random.default_rng(0)
    crop = photo_fixture.load_photo("coffee").crop((0, 0, 40, 30))
    for _ in range(6):  # every orientation in the cycle
        path = photo_fixture.save_as(crop, "jpeg_exif", tmp_path / "x", rng)
        got = np.asarray(load_image(path), np.float32)
        assert got.shape == (30, 40, 3)
        assert np.abs(got - np.asarray(crop, np.float32)).mean() < 6  # JPEG loss only
    path = photo_fixture.save_as(crop, "png_i16", tmp_path / "g", rng)
    grey = np.asarray(crop.convert("L"), np.float32)
    assert np.abs(np.asarray(load_image(path), np.float32)[..., 0] - grey).max() <= 1


def test_held_out_cells_are_disjoint_from_training():
    for size in ((640, 427), (427, 640), (512, 512)):
        r = photo_fixture.regions(size)
        assert len(r["train"]) == 12 and len(r["heldout"]) == 4
        for l1, t1, r1, b1 in r["train"]:
            for l2, t2, r2, b2 in r["heldout"]:  # boxes are half-open: touching is disjoint
                assert r1 <= l2 or r2 <= l1 or b1 <= t2 or b2 <= t1


def test_deterministic(tmp_path):
    a = photo_fixture.build(tmp_path / "a", 2, 1, size=32, seed=3, classes=("china", "rocket"))
    b = photo_fixture.build(tmp_path / "b", 2, 1, size=32, seed=3, classes=("china", "rocket"))
    assert a["formats"] == b["formats"]
    for pa in sorted((tmp_path / "a").rglob("*.*")):
        assert pa.read_bytes() == (tmp_path / "b" / pa.relative_to(tmp_path / "a")).read_bytes()
