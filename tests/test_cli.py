"""Tests of the keras-fer-viz command: help, train, demo and bad input."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_fer_viz.cli import load_splits, main
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
        assert "--data PATH|synthetic" in out and "--out MODEL.keras" in out
    if command == ["demo"]:
        assert "--out DIR" in out
    if command == ["report"]:
        assert "--model MODEL.keras" in out and "--allow-unsafe" in out


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


def test_train_on_synthetic(tmp_path, capsys):
    out = tmp_path / "m.keras"
    assert main(["train", "--data", "synthetic", "--out", str(out), *TINY]) == 0
    text = capsys.readouterr().out
    assert "Best model saved to" in text and "overall" in text
    assert all(name in text for name in EMOTIONS)
    model = keras.saving.load_model(out)
    assert model.output_shape == (None, 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


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


@pytest.mark.end_to_end
def test_demo_writes_model_and_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *TINY]) == 0
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
    assert f"Wrote {len(load_spec())} figures" in capsys.readouterr().out
    # The callbacks' per-epoch figures.
    for name in ("saliency", "grad_cam"):
        assert (out / "epochs" / name / "epoch_0001.png").is_file()


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
