"""Tests of the keras-fer-viz command: help, train, demo and bad input."""

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from browser import loaded, open_page
from PIL import Image

from keras_fer_viz import EXPLAINERS
from keras_fer_viz.cli import load_model, main
from keras_fer_viz.data import load_splits
from keras_fer_viz.data.fer2013 import EMOTIONS
from keras_fer_viz.data.synthetic import synthetic_faces
from keras_fer_viz.spec import load_spec

TINY = ["--epochs", "1", "--samples", "70", "--width", "0.125", "--quiet"]


def write_fer_csv(path, images, labels, usages=None):
    header = "emotion,pixels" + (",Usage" if usages is not None else "")
    rows = [header]
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        pixels = " ".join(map(str, img.reshape(-1)))
        rows.append(f"{lab},{pixels}" + (f",{usages[i]}" if usages is not None else ""))
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("command", [[], ["train"], ["demo"], ["report"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: keras-fer-viz" in out
    if command == ["train"]:
        assert "--data PATH|DIR|synthetic" in out and "--out MODEL.keras" in out
        assert "--image-size HEIGHT WIDTH" in out
    if command == ["demo"]:
        assert "--out DIR" in out
    if command == ["report"]:
        assert "--model MODEL" in out and "--allow-unsafe" in out
        assert "--input-range LOW HIGH" in out and "--image-size HEIGHT WIDTH" in out


def test_console_script_help_is_fast_and_works():
    proc = subprocess.run(
        [sys.executable, "-m", "keras_fer_viz.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "train" in proc.stdout and "demo" in proc.stdout
    # --help must not import Keras or TensorFlow.
    check = "import sys, keras_fer_viz.cli as c; print('keras' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert proc.stdout.strip() == "False"


def test_the_command_reads_data_and_accuracy_from_the_library():
    """load_splits (keras_fer_viz.data) and summarize (keras_fer_viz.training) moved down
    out of the CLI; their old names there still answer, imported on first use."""
    import keras_fer_viz.cli as cli
    from keras_fer_viz import data, training

    assert cli.load_splits is data.load_splits is data.splits.load_splits
    assert cli.summarize is training.summarize
    assert cli.SYNTHETIC == data.splits.SYNTHETIC == "synthetic"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        cli.nothing  # noqa: B018


def test_load_splits_of_synthetic_faces_keeps_their_evidence():
    splits = load_splits("synthetic", samples=70, seed=3)
    assert [len(splits[k][1]) for k in ("train", "val", "test")] == [63, 7, 700]
    assert splits["evidence"].shape == (700, 48, 48) and splits["class_names"] == EMOTIONS
    np.testing.assert_array_equal(splits["test"][0], synthetic_faces(700, seed=4).images)
    assert splits["source"] == "synthetic faces (seed 3)"


@pytest.mark.end_to_end  # the whole train command: plumbing, once (TensorFlow)
def test_train_on_synthetic(tmp_path, capsys):
    out = tmp_path / "m.keras"
    assert main(["train", "--data", "synthetic", "--out", str(out), *TINY]) == 0
    text = capsys.readouterr().out
    assert "Best model saved to" in text and "overall" in text
    assert all(name in text for name in EMOTIONS)
    model = keras.saving.load_model(out)
    assert model.output_shape == (None, 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


@pytest.mark.end_to_end  # the whole train command: plumbing, once (TensorFlow)
def test_train_on_fer2013_file_uses_its_usage_column(tmp_path, capsys):
    faces = synthetic_faces(84, seed=5)
    usages = np.array(["Training"] * 56 + ["PublicTest"] * 14 + ["PrivateTest"] * 14)
    csv = tmp_path / "fer2013.csv"
    write_fer_csv(csv, faces.images, faces.labels, usages)
    splits = load_splits(str(csv))
    assert [len(splits[k][1]) for k in ("train", "val", "test")] == [56, 14, 14]
    np.testing.assert_array_equal(splits["test"][0], faces.images[70:])
    np.testing.assert_array_equal(splits["val"][1], faces.labels[56:70])
    out = tmp_path / "model.keras"
    assert main(["train", "--data", str(csv), "--out", str(out), *TINY]) == 0
    assert "56 train, 14 validation, 14 held-out" in capsys.readouterr().out
    assert out.is_file()


def test_fer2013_file_without_usage_is_split(tmp_path):
    faces = synthetic_faces(140, seed=6)
    csv = tmp_path / "train.csv"
    write_fer_csv(csv, faces.images, faces.labels)
    splits = load_splits(str(csv))
    sizes = [len(splits[k][1]) for k in ("train", "val", "test")]
    assert sizes == [112, 14, 14]
    # Stratified: every class in every split.
    assert all(len(np.unique(splits[k][1])) == 7 for k in ("train", "val", "test"))


REPOSITORY = Path(__file__).resolve().parent.parent


def build_wheel(into: Path) -> Path:
    """The package's wheel, built by pip from a copy of what it is made of.

    A copy, so that the build's files (build/, *.egg-info) stay out of the
    repository; the same files setuptools would read there (pyproject.toml
    lists the packages and their data).
    """
    source = into / "source"
    for name in ("keras_fer_viz", "spec"):
        shutil.copytree(
            REPOSITORY / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPOSITORY / name, source / name)
    wheels = into / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = wheels.glob("keras_fer_viz-*.whl")
    return wheel


def venv_with_the_wheel(at: Path, wheel: Path) -> Path:
    """A new virtual environment holding the wheel, and seeing this one's dependencies.

    The wheel is installed first (--no-deps), into an environment that sees
    nothing else, so pip cannot take this environment's keras_fer_viz for it.
    Then this environment's site-packages are added after the new one's (a
    .pth file), so that Keras, TensorFlow and the rest need no download, while
    keras_fer_viz is found in the new environment first.
    """
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", str(at)], check=True)
    python = at / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True
    )
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    lines = [f"import site; site.addsitedir({p!r})" for p in sorted(ours)]
    Path(purelib, "zz_test_dependencies.pth").write_text("\n".join(lines) + "\n")
    return python


@pytest.mark.slow
@pytest.mark.end_to_end
def test_demo_from_the_wheel_alone_outside_the_repository(tmp_path):
    # The wheel holds the package, its figure spec, py.typed and the command.
    wheel = build_wheel(tmp_path)
    import zipfile

    import keras_fer_viz

    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = z.read(f"keras_fer_viz-{keras_fer_viz.__version__}.dist-info/METADATA").decode()
        entry_points = z.read(
            f"keras_fer_viz-{keras_fer_viz.__version__}.dist-info/entry_points.txt"
        ).decode()
    assert {"keras_fer_viz/py.typed", "keras_fer_viz/figure_spec/figures.toml"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert f"Version: {keras_fer_viz.__version__}\n" in metadata
    assert "keras-fer-viz = keras_fer_viz.cli:main" in entry_points
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/")) for n in names)

    python = venv_with_the_wheel(tmp_path / "venv", wheel)
    # Run from a folder outside the repository, with nothing of it on the path.
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1")
    where = subprocess.run(
        [python, "-c", "import keras_fer_viz; print(keras_fer_viz.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), where
    # One face per cell in the explorer (the default is 4: benchmarks/bench_explorer.py
    # opens the default demo's): every cell opens all the same.
    proc = subprocess.run(
        [tmp_path / "venv" / "bin" / "keras-fer-viz", "demo", "--out", "demo"]
        + [*TINY, "--explorer-faces", "1"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = work / "demo"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["per_class"]) == set(EMOTIONS)
    assert sum(summary["counts"].values()) == 700
    assert 0.0 <= summary["overall_accuracy"] <= 1.0
    assert summary["epochs_run"] == 1
    assert "Held-out accuracy per class" in (out / "summary.txt").read_text()
    assert keras.saving.load_model(out / "model.keras").output_shape == (None, 7)
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 1 and len(history["val_accuracy"]) == 1
    # The full report: every spec figure, named in the index.
    page = (out / "index.html").read_text()
    for entry in load_spec():
        assert (out / entry.file).is_file() and f'src="{entry.file}"' in page
    assert f"Wrote {len(load_spec())} figures" in proc.stdout
    # The callbacks' per-epoch figures.
    for name in ("saliency", "grad_cam"):
        assert (out / "epochs" / name / "epoch_0001.png").is_file()
    # The explorer opens in Chromium: every cell of the confusion matrix opens its panel,
    # every image loads, and no request leaves the folder.
    with open_page(out / "index.html") as (browser, requests):
        cells = browser.locator("td[data-count]")
        assert cells.count() == 49
        for k in range(49):
            cell = cells.nth(k)
            cell.click()
            key = f"{cell.get_attribute('data-true')}|{cell.get_attribute('data-pred')}"
            assert browser.locator("[data-cell]:visible").get_attribute("data-cell") == key
        assert all(loaded(browser, "img"))
        assert all(url.startswith("file://") for url in requests), requests


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "synthetic", "--out", "m.h5"], "--out must end in '.keras'"),
        (["train", "--data", "missing.csv", "--out", "m.keras"], "no such file"),
    ],
)
def test_bad_input_exits_2_with_a_message(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bad_csv_exits_2_naming_the_line(tmp_path, capsys):
    csv = tmp_path / "bad.csv"
    csv.write_text("emotion,pixels\n3," + " ".join(["1"] * 10) + "\n")
    assert main(["train", "--data", str(csv), "--out", str(tmp_path / "m.keras")]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "2304" in err


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_bad_numbers_are_argparse_errors(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--epochs", value])
    assert exit_.value.code == 2
    assert f"expected a positive integer, received '{value}'" in capsys.readouterr().err


# --- Any model, any data, any image size --------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures"
KERAS2_H5 = FIXTURES / "keras2_cnn.h5"  # made by tests/fixtures/make_keras2_h5.py
NOISE = re.compile(r"cuda|cuinit|cudnn|cufft|cublas|tensorrt", re.IGNORECASE)

# A few quick entries: saliency, a conv layer's outputs for the spec's "Angry"
# face (a stand-in class on other data), the confusion matrix, Grad-CAM, CAM
# (a GAP head trained on the adapted training split), LIME, class images, and
# randomisation with the spec's "Happy" face.
SMALL_SPEC = """
[[figure]]
id = "saliency"
title = "Saliency"
question = "Q1"
method = "saliency"
file = "saliency.png"

[[figure]]
id = "feature_maps"
title = "Outputs of a conv layer for an angry face"
question = "Q2"
method = "feature_maps"
file = "feature_maps.png"
[figure.parameters]
conv_layer = 2
face_class = "Angry"
top = 4

[[figure]]
id = "class_images"
title = "Class images"
question = "Q2"
method = "class_images"
file = "class_images.png"
[figure.parameters]
steps = 3

[[figure]]
id = "confusion"
title = "Confusion matrix"
question = "Q3"
method = "confusion_matrix"
file = "confusion.png"

[[figure]]
id = "lime"
title = "LIME"
question = "Q3"
method = "lime"
file = "lime.png"
[figure.parameters]
samples = 60
num_features = 3

[[figure]]
id = "grad_cam"
title = "Grad-CAM"
question = "Q4"
method = "grad_cam"
file = "grad_cam.png"

[[figure]]
id = "cam"
title = "CAM"
question = "Q4"
method = "cam"
file = "cam.png"
[figure.parameters]
epochs = 1

[[figure]]
id = "randomization"
title = "Randomisation"
question = "trust"
method = "randomization"
file = "randomization.png"
[figure.parameters]
methods = ["saliency"]
face_class = "Happy"
"""


def write_spec(tmp_path, text=SMALL_SPEC):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def write_image_folder(root, images, labels, class_names):
    """root/<class name>/<i>.png for each image (PNG: lossless)."""
    for name in class_names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        pixels = image[..., 0] if image.shape[-1] == 1 else image
        Image.fromarray(pixels).save(root / class_names[label] / f"{i:04d}.png")


def coloured_images(n, size, seed, classes=3):
    """RGB images whose dominant colour is their class: a learnable toy task."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 90, (n, *size, 3))
    images[np.arange(n), :, :, labels % 3] += 160
    return images.astype(np.uint8), labels


def pil_adapt(images, size, scale=None):
    """An independent adaptation: Pillow's bilinear resize, then an affine scaling."""
    out = []
    for image in images:
        channels = [
            np.asarray(
                Image.fromarray(image[..., c].astype(np.float32), "F").resize(
                    (size[1], size[0]), Image.Resampling.BILINEAR
                )
            )
            for c in range(image.shape[-1])
        ]
        out.append(np.stack(channels, axis=-1))
    out = np.stack(out)
    return out if scale is None else out * scale[0] + scale[1]


def index_accuracy(page):
    return float(re.search(r"<tr><th>overall</th><th>\d+</th><th>([\d.]+)</th>", page).group(1))


def test_input_range_and_image_size_parse(tmp_path):
    from keras_fer_viz.cli import build_parser

    args = build_parser().parse_args(
        ["report", "--model", "m.h5", "--data", "d", "--out", "o", "--input-range", "-1", "1"]
    )
    assert args.input_range == [-1.0, 1.0] and args.image_size is None
    args = build_parser().parse_args(
        ["report", "--model", "m", "--data", "d", "--out", "o", "--image-size", "40", "30"]
    )
    assert args.input_range == (0.0, 255.0) and args.image_size == [40, 30]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--input-range", "0", "x"], "expected a number, received 'x'"),
        (["--input-range", "0", "inf"], "expected a finite number, received 'inf'"),
        (["--image-size", "0", "4"], "expected a positive integer, received '0'"),
    ],
)
def test_bad_input_range_or_image_size_are_argparse_errors(extra, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--model", "m", "--data", "d", "--out", "o", *extra])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_load_model_reads_a_keras2_h5_file_without_its_optimizer():
    # Compiled loading fails on this file in Keras 3 ("Argument(s) not
    # recognized: {'lr': ...}"); explaining needs no optimizer.
    model = load_model(KERAS2_H5)
    assert model.name == "keras2_cnn" and getattr(model, "optimizer", None) is None
    with np.load(FIXTURES / "keras2_cnn_expected.npz") as expected:
        # tf_keras's own probabilities for these faces, stored when the file was made.
        got = model.predict(expected["images"], verbose=0)
        np.testing.assert_allclose(got, expected["probabilities"], atol=1e-5)


def test_report_on_a_keras2_h5_model_with_an_input_range(tmp_path, capsys):
    out = tmp_path / "out"
    spec = write_spec(tmp_path, SMALL_SPEC.split('[[figure]]\nid = "class_images"')[0])
    argv = ["report", "--model", str(KERAS2_H5), "--data", "synthetic", "--samples", "70"]
    argv += ["--explorer-faces", "0"]
    code = main([*argv, "--out", str(out), "--spec", str(spec), "--quiet"])
    assert code == 0, capsys.readouterr().err
    page = html.unescape((out / "index.html").read_text())
    assert "Images fed to the model as given" in page and "values [0, 255]" in page
    assert sorted(re.findall(r'<img src="([^"]+)"', page)) == ["feature_maps.png", "saliency.png"]
    # The same model told it takes [-1, 1]: the index says so.
    code = main([*argv, "--out", str(tmp_path / "o2"), "--spec", str(spec), "--quiet",
                 "--input-range", "-1", "1"])  # fmt: skip
    assert code == 0
    page = html.unescape((tmp_path / "o2" / "index.html").read_text())
    expected = (
        "Images adapted to the model's input (None, 48, 48, 1): scaled 0-255 pixels to [-1, 1]."
    )
    assert expected in page
    assert "scaled 0-255 pixels to [-1, 1]" in capsys.readouterr().out


def test_report_refuses_a_model_whose_outputs_are_not_the_classes(tmp_path, capsys):
    images, labels = coloured_images(30, (16, 16), seed=0)
    write_image_folder(tmp_path / "data", images, labels, ["cat", "dog", "owl"])
    out = tmp_path / "out"
    code = main(
        ["report", "--model", str(KERAS2_H5), "--data", str(tmp_path / "data"),
         "--out", str(out), "--quiet"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "has 7 outputs, but 3 class names were given: ['cat', 'dog', 'owl']" in err
    assert "one sub-folder per class" in err and not out.exists()


def test_report_refuses_a_bad_input_range_before_writing(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        ["report", "--model", str(KERAS2_H5), "--data", "synthetic", "--samples", "70",
         "--out", str(out), "--input-range", "1", "0", "--quiet"]
    )  # fmt: skip
    assert code == 2 and "finite low < high" in capsys.readouterr().err
    assert not out.exists()


def test_load_splits_reads_an_image_folder(tmp_path):
    images, labels = coloured_images(40, (12, 12), seed=1, classes=4)
    names = ["b_dog", "a_cat", "d_owl", "c_eel"]
    write_image_folder(tmp_path / "data", images, labels, names)
    splits = load_splits(str(tmp_path / "data"))
    assert splits["class_names"] == ("a_cat", "b_dog", "c_eel", "d_owl")
    assert [len(splits[k][1]) for k in ("train", "val", "test")] == [32, 4, 4]
    assert "image folder, 4 classes" in splits["source"] and splits["evidence"] is None
    # Labels follow the sorted folder names: each image's label names the folder it was in.
    written = {img.tobytes(): names[lab] for img, lab in zip(images, labels, strict=True)}
    for k in ("train", "val", "test"):
        x, y = splits[k]
        assert x.shape[1:] == (12, 12, 3)
        assert [written[img.tobytes()] for img in x] == [splits["class_names"][i] for i in y]


def test_load_splits_of_many_classes_with_few_images(tmp_path):
    # 10 classes of 3 images: too few to stratify a 10% split; a plain random one.
    images, labels = coloured_images(30, (8, 8), seed=6, classes=10)
    write_image_folder(tmp_path / "data", images, labels, [f"c{i}" for i in range(10)])
    splits = load_splits(str(tmp_path / "data"))
    assert len(splits["class_names"]) == 10
    assert [len(splits[k][1]) for k in ("train", "val", "test")] == [24, 3, 3]


def test_load_splits_takes_train_and_test_folders(tmp_path, capsys):
    data = tmp_path / "data"
    images, labels = coloured_images(60, (10, 10), seed=2)
    write_image_folder(data / "train", images[:50], labels[:50], ["x", "y", "z"])
    write_image_folder(data / "test", images[50:], labels[50:], ["x", "y", "z"])
    splits = load_splits(str(data))
    assert [len(splits[k][1]) for k in ("train", "val", "test")] == [45, 5, 10]
    np.testing.assert_array_equal(np.sort(splits["test"][1]), np.sort(labels[50:]))
    assert "train/, test/ folders; missing splits carved" in splits["source"]
    (data / "test" / "w").mkdir()
    Image.fromarray(images[0]).save(data / "test" / "w" / "0.png")
    with pytest.raises(ValueError, match=r"class folders \['w'\] that .*train lacks"):
        load_splits(str(data))


@pytest.mark.end_to_end  # the whole train command: plumbing, once (TensorFlow)
def test_train_on_an_image_folder(tmp_path, capsys):
    images, labels = coloured_images(45, (16, 16), seed=3)
    write_image_folder(tmp_path / "data", images, labels, ["red", "green", "blue"])
    out = tmp_path / "m.keras"
    code = main(["train", "--data", str(tmp_path / "data"), "--out", str(out), *TINY])
    assert code == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "36 train, 4 validation, 5 held-out" in text
    assert all(name in text for name in ("red", "green", "blue"))
    assert keras.saving.load_model(out).output_shape == (None, 3)


def test_the_command_prints_no_cuda_lines(tmp_path):
    # The environment of a user: no TF_CPP_MIN_LOG_LEVEL of their own.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    spec = write_spec(tmp_path, SMALL_SPEC.split('[[figure]]\nid = "feature_maps"')[0])
    proc = subprocess.run(
        [sys.executable, "-m", "keras_fer_viz.cli", "report", "--model", str(KERAS2_H5),
         "--data", "synthetic", "--samples", "70", "--spec", str(spec),
         "--out", str(tmp_path / "out"), "--explorer-faces", "0", "--quiet"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Wrote 1 figures" in proc.stdout
    assert not [line for line in proc.stderr.splitlines() if NOISE.search(line)], proc.stderr


@pytest.mark.slow
@pytest.mark.end_to_end
def test_report_for_a_64x64_gray_h5_model_from_a_fer2013_csv(tmp_path, capsys):
    from keras_fer_viz.models import fer_cnn

    faces = synthetic_faces(56, seed=7)
    usages = np.array(["Training"] * 35 + ["PublicTest"] * 7 + ["PrivateTest"] * 14)
    csv = tmp_path / "fer2013.csv"
    write_fer_csv(csv, faces.images, faces.labels, usages)
    keras.utils.set_random_seed(0)
    model = fer_cnn(input_shape=(64, 64, 1), width=0.125)
    path = tmp_path / "fer64.h5"
    model.save(path)
    out = tmp_path / "out"
    code = main(
        ["report", "--model", str(path), "--data", str(csv), "--out", str(out),
         "--spec", str(write_spec(tmp_path)), "--explorer-faces", "0", "--quiet"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    page = html.unescape((out / "index.html").read_text())
    assert "14 held-out images from fer2013.csv (Training / PublicTest / PrivateTest)" in page
    expected = "Images adapted to the model's input (None, 64, 64, 1): resized 48x48 -> 64x64."
    assert expected in page
    named = re.findall(r'<img src="([^"]+)"', page)
    assert len(named) == 8 and "This figure failed" not in page
    for name in named:
        assert (out / name).is_file()
    # The accuracy in the index is the model's on the PrivateTest rows resized by Pillow.
    probs = model.predict(pil_adapt(faces.images[42:], (64, 64)), verbose=0)
    assert index_accuracy(page) == pytest.approx(
        (probs.argmax(1) == faces.labels[42:]).mean(), abs=1e-3
    )


@pytest.mark.slow
@pytest.mark.end_to_end
def test_report_for_an_rgb_model_from_an_image_folder(tmp_path, capsys):
    names = ["daisy", "rose", "tulip"]
    train_x, train_y = coloured_images(48, (32, 32), seed=4)
    test_x, test_y = coloured_images(12, (32, 32), seed=5)
    write_image_folder(tmp_path / "flowers" / "train", train_x, train_y, names)
    write_image_folder(tmp_path / "flowers" / "test", test_x, test_y, names)
    # A small Functional CNN of another size that takes values in [-1, 1].
    keras.utils.set_random_seed(0)
    inputs = keras.Input((40, 40, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="flowers")
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(pil_adapt(train_x, (40, 40), (1 / 127.5, -1.0)), train_y, epochs=30, verbose=0)
    path = tmp_path / "flowers.keras"
    model.save(path)
    out = tmp_path / "out"
    code = main(
        ["report", "--model", str(path), "--data", str(tmp_path / "flowers"), "--out", str(out),
         "--spec", str(write_spec(tmp_path)), "--input-range", "-1", "1", "--quiet",
         "--explorer-faces", "1"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    page = html.unescape((out / "index.html").read_text())
    assert "12 held-out images from flowers/ (image folder, 3 classes" in page
    assert "3 classes: daisy, rose, tulip." in page
    assert (
        "Images adapted to the model's input (None, 40, 40, 3): resized 32x32 -> 40x40, "
        "scaled 0-255 pixels to [-1, 1]." in page
    )
    for name in names:
        assert f"<tr><td>{name}</td><td>4</td>" in page
    named = re.findall(r'<img src="([^"]+)"', page)
    figures = [name for name in named if not name.startswith("explorer/")]
    assert len(figures) == 8 and "This figure failed" not in page
    assert "Outputs of a conv layer for an angry face" in page
    # The explorer: a 3 x 3 confusion matrix of the folder's classes, every method's maps
    # of RGB faces, one per cell.
    assert len(re.findall(r"<td data-true=", page)) == 9 and "No maps from" not in page
    assert {f"explorer/map_{m}.png" for m in EXPLAINERS} <= set(named)
    # The accuracy in the index is the model's on the test folder's images resized by
    # Pillow and scaled to [-1, 1]: high, as on the images it was trained with.
    probs = model.predict(pil_adapt(test_x, (40, 40), (1 / 127.5, -1.0)), verbose=0)
    assert index_accuracy(page) == pytest.approx((probs.argmax(1) == test_y).mean(), abs=1e-3)
    assert index_accuracy(page) >= 0.9
