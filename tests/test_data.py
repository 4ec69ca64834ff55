import numpy as np
import pytest
from PIL import Image

from basisnet_deploy import data
from basisnet_deploy.data import Preprocessing


@pytest.fixture
def folder(tmp_path):
    """Two classes with every awkward file kind the reader must survive."""
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        d = tmp_path / cls
        d.mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 30, 3), np.uint8)).save(d / f"{i}.png")
    Image.new("L", (10, 10), 128).save(tmp_path / "cat" / "grey.jpg")
    Image.new("CMYK", (10, 10), (0, 255, 0, 0)).save(tmp_path / "cat" / "cmyk.jpg")
    Image.new("RGBA", (10, 10), (255, 0, 0, 0)).save(tmp_path / "dog" / "alpha.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    good = (tmp_path / "dog" / "0.png").read_bytes()
    (tmp_path / "dog" / "cut.png").write_bytes(good[: len(good) // 2])
    return tmp_path


def test_image_folder_converts_and_counts_skips(folder):
    ds = data.image_folder(folder)
    assert ds.class_names == ("cat", "dog")
    assert len(ds.images) == 9  # 6 plain + grey + cmyk + alpha
    assert all(im.mode == "RGB" for im in ds.images)
    assert ds.skipped == {"not an image": 1, "truncated": 1}


def test_alpha_is_composited_on_white(folder):
    im = data.load_image(folder / "dog" / "alpha.png")
    assert im.getpixel((0, 0)) == (255, 255, 255)


def test_decompression_bomb_is_refused(folder, monkeypatch):
    from basisnet_deploy.data import preprocessing

    monkeypatch.setattr(preprocessing, "MAX_PIXELS", 100)
    with pytest.raises(data.DataError, match="decompression bomb"):
        data.load_image(folder / "cat" / "0.png")


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(data.DataError, match="no such directory"):
        data.image_folder(tmp_path / "missing")
    (tmp_path / "only").mkdir()
    with pytest.raises(data.DataError, match="at least two sub-folders"):
        data.image_folder(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(data.DataError, match="no readable images"):
        data.image_folder(tmp_path)


def test_preprocess_rules_and_range():
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    x = data.preprocess(im, 16, Preprocessing(resize="center_crop", input_range=(-1.0, 1.0)))
    assert x.shape == (16, 16, 3) and x.dtype == np.float32
    assert np.allclose(x[..., 0], 1) and np.allclose(x[..., 1], -1)
    y = data.preprocess(im, 8, Preprocessing(resize="squash", input_range=(0.0, 1.0)))
    assert y.shape == (8, 8, 3) and y.max() == 1.0


def test_digits_split_is_deterministic_and_stratified():
    ds = data.digits()
    assert len(ds.images) == 1797 and ds.class_names == tuple("0123456789")
    a_train, a_test = ds.split(0.2, seed=3)
    b_train, b_test = ds.split(0.2, seed=3)
    assert np.array_equal(a_test.labels, b_test.labels)
    assert len(a_test.labels) + len(a_train.labels) == 1797
    assert set(np.bincount(a_test.labels)) <= {35, 36, 37}
