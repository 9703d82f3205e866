"""Tests of keras_fer_viz.data.folders: image folders read as Keras reads them.

Folders are built in tmp_path from numpy images saved as PNG with Pillow;
Keras' own `image_dataset_from_directory` is the oracle for class names,
label order and pixels.
"""

import numpy as np
import pytest
from PIL import Image

from keras_fer_viz.data import load_image_folder, split_folders
from keras_fer_viz.data.folders import class_folders


def write_folder(root, classes, size=(12, 10), channels=1, per_class=3, seed=0):
    """root/<class>/<i>.png, distinct random images; returns {(class, i): image}."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (*size, channels) if channels == 3 else size
            image = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(image).save(root / name / f"{i}.png")
            written[name, i] = image
    return written


def test_classes_are_the_sorted_folders_and_images_come_back_exactly(tmp_path):
    written = write_folder(tmp_path, ["zebra", "Ant", "cat"], per_class=2)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    x, y, names = load_image_folder(tmp_path)
    assert names == ("Ant", "cat", "zebra")  # sorted as Keras sorts: by code point
    assert x.dtype == np.uint8 and x.shape == (6, 12, 10, 1)
    assert y.dtype == np.int64 and y.tolist() == [0, 0, 1, 1, 2, 2]
    for k, (label, i) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]):
        np.testing.assert_array_equal(x[k, ..., 0], written[names[label], i])


def test_matches_keras_image_dataset_from_directory(tmp_path):
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")  # Keras' loader runs on tf.data
    write_folder(tmp_path, ["b", "a", "c", "d"], size=(8, 9), channels=3, per_class=2, seed=1)
    nested = tmp_path / "a" / "more"
    nested.mkdir()
    Image.fromarray(np.full((8, 9, 3), 7, np.uint8)).save(nested / "x.jpg", quality=100)
    x, y, names = load_image_folder(tmp_path, color_mode="rgb")
    ds = keras.utils.image_dataset_from_directory(
        tmp_path, image_size=(8, 9), shuffle=False, batch_size=None, color_mode="rgb"
    )
    kx = np.stack([np.asarray(a) for a, _ in ds])
    ky = np.array([int(b) for _, b in ds])
    assert names == tuple(ds.class_names)
    np.testing.assert_array_equal(y, ky)
    np.testing.assert_array_equal(x, kx.astype(np.uint8))  # same size: no resampling
    # Keras' grayscale mode against ours on colour images.
    gx, _, _ = load_image_folder(tmp_path, color_mode="grayscale")
    gds = keras.utils.image_dataset_from_directory(
        tmp_path, image_size=(8, 9), shuffle=False, batch_size=None, color_mode="grayscale"
    )
    kg = np.stack([np.asarray(a) for a, _ in gds])
    assert gx.shape == kg.shape == (9, 8, 9, 1)
    np.testing.assert_allclose(gx, kg, atol=1.0)  # both ITU-R 601 luma, rounded


def test_colour_mode_is_gray_only_when_every_image_is_gray(tmp_path):
    gray = write_folder(tmp_path / "g", ["a", "b"], channels=1)
    # Gray content stored as RGB files is still gray.
    for (name, i), image in gray.items():
        Image.fromarray(np.dstack([image] * 3)).save(tmp_path / "g" / name / f"{i}.png")
    x, _, _ = load_image_folder(tmp_path / "g")
    assert x.shape[-1] == 1
    np.testing.assert_array_equal(x[0, ..., 0], gray["a", 0])
    write_folder(tmp_path / "c", ["a", "b"], channels=3)
    assert load_image_folder(tmp_path / "c")[0].shape[-1] == 3
    rgb, _, _ = load_image_folder(tmp_path / "g", color_mode="rgb")
    assert rgb.shape[-1] == 3 and (rgb == rgb[..., :1]).all()


def test_image_size_resizes_and_mixed_sizes_need_it(tmp_path):
    write_folder(tmp_path, ["a"], size=(12, 10))
    write_folder(tmp_path, ["b"], size=(20, 16))
    with pytest.raises(ValueError, match=r"2 different sizes.*12x10.*20x16.*image_size="):
        load_image_folder(tmp_path)
    x, y, names = load_image_folder(tmp_path, image_size=(16, 14))
    assert x.shape == (6, 16, 14, 1) and names == ("a", "b")


def test_class_names_pick_folders_and_keep_their_labels(tmp_path):
    write_folder(tmp_path, ["a", "c"])
    (tmp_path / "b").mkdir()  # a class with no image yet
    x, y, names = load_image_folder(tmp_path, class_names=["c", "b", "a"])
    assert names == ("c", "b", "a") and y.tolist() == [0] * 3 + [2] * 3
    with pytest.raises(ValueError, match=r"distinct sub-folders.*\['a', 'z'\].*\['a', 'b', 'c'\]"):
        load_image_folder(tmp_path, class_names=["a", "z"])
    assert class_folders(tmp_path) == ["a", "b", "c"]


def test_split_folders(tmp_path):
    for split in ("Train", "test"):
        write_folder(tmp_path / split, ["x", "y"])
    assert split_folders(tmp_path) == {
        "train": tmp_path / "Train",
        "val": None,
        "test": tmp_path / "test",
    }
    (tmp_path / "validation").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(ValueError, match="two folders for the val split"):
        split_folders(tmp_path)
    write_folder(tmp_path / "plain", ["train", "cats"])  # a class named "train"
    assert split_folders(tmp_path / "plain") is None
    write_folder(tmp_path / "nosplit", ["test"])  # no training split: classes
    assert split_folders(tmp_path / "nosplit") is None


def test_errors_name_the_problem_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"no class folder.*DIR/<class name>/<images>"):
        load_image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("text")
    with pytest.raises(ValueError, match=r"class folders \['a'\] but no image"):
        load_image_folder(tmp_path)
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"Cannot read .*broken.png as an image"):
        load_image_folder(tmp_path)
    with pytest.raises(ValueError, match="color_mode"):
        load_image_folder(tmp_path, color_mode="rgba")
    with pytest.raises(ValueError, match=r"image_size.*Received: image_size=\(0, 4\)"):
        load_image_folder(tmp_path, image_size=(0, 4))
