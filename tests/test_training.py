"""Tests of keras_fer_viz.training and keras_fer_viz._io."""

import keras
import numpy as np
import pytest

from keras_fer_viz import _io
from keras_fer_viz.data.fer2013 import EMOTIONS
from keras_fer_viz.data.synthetic import synthetic_faces
from keras_fer_viz.models import fer_cnn
from keras_fer_viz.training import (
    BestModelCheckpoint,
    _class_weights,
    accuracy_table,
    check_data,
    per_class_accuracy,
    summarize,
    train,
)


def constant_model(winner: int, num_classes: int = 7, shape=(8, 8, 1)):
    """A classifier that ignores its input and always predicts `winner`."""
    inputs = keras.Input(shape)
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    out = keras.layers.Dense(num_classes, activation="softmax")(x)
    model = keras.Model(inputs, out)
    bias = np.zeros(num_classes, "float32")
    bias[winner] = 5.0
    model.layers[-1].set_weights([np.zeros((shape[-1], num_classes), "float32"), bias])
    return model


def test_train_one_epoch_with_checkpoint(tmp_path):
    keras.utils.set_random_seed(0)
    faces = synthetic_faces(140, seed=0)
    model = fer_cnn(width=0.125)
    path = tmp_path / "best.keras"
    history = train(
        model, faces.images, faces.labels, epochs=2, batch_size=32, checkpoint=path, verbose=0
    )
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 2
    assert model.compiled and isinstance(model.optimizer, keras.optimizers.Adam)
    loaded = keras.saving.load_model(path)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras"]  # no temp files


def test_class_weights_balanced_on_imbalanced_labels():
    y = np.array([0] * 6 + [1] * 3 + [2] * 1)
    w = _class_weights("balanced", y, num_classes=4)
    # n / (classes present * count): 10 / (3 * count); absent classes weigh 1.
    assert w == pytest.approx({0: 10 / 18, 1: 10 / 9, 2: 10 / 3, 3: 1.0})
    assert _class_weights(None, y, 4) is None
    assert _class_weights({0: 2.0}, y, 4) == {0: 2.0}
    with pytest.raises(ValueError, match="class_weight.*Received: 'auto'"):
        _class_weights("auto", y, 4)


def test_per_class_accuracy_and_table():
    model = constant_model(winner=2)
    x = np.zeros((6, 8, 8, 1), "float32")
    y = np.array([2, 2, 0, 1, 1, 2])
    acc = per_class_accuracy(model, x, y)
    assert acc[2] == 1.0 and acc[0] == 0.0 and acc[1] == 0.0
    assert np.isnan(acc[3:]).all()
    table = accuracy_table(acc, np.bincount(y, minlength=7), list("ABCDEFG"), 0.5)
    lines = table.splitlines()
    assert lines[3].split() == ["C", "3", "1.000"]
    assert lines[4].split() == ["D", "0", "-"]
    assert lines[-1].split() == ["overall", "6", "0.500"]


def test_best_model_checkpoint_saves_only_improvements(tmp_path):
    model = constant_model(winner=0)
    path = tmp_path / "m.keras"
    cb = BestModelCheckpoint(path)
    cb.set_model(model)
    cb.on_train_begin()
    cb.on_epoch_end(0, {"val_accuracy": 0.5})
    first = path.stat().st_mtime_ns
    cb.on_epoch_end(1, {"val_accuracy": 0.4})  # worse: not saved
    assert path.stat().st_mtime_ns == first and cb.best_epoch == 0
    cb.on_epoch_end(2, {"val_accuracy": 0.7})
    assert cb.best_epoch == 2 and cb.best == pytest.approx(0.7)
    with pytest.raises(ValueError, match="monitors 'val_accuracy'.*Logged: \\['loss'\\]"):
        cb.on_epoch_end(3, {"loss": 1.0})
    with pytest.raises(ValueError, match="'.keras'.*Received: 'm.h5'"):
        BestModelCheckpoint("m.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.zeros((2, 8, 8)), None, r"shape \(N, 8, 8, 1\).*Received: shape=\(2, 8, 8\)"),
        (np.zeros((2, 9, 8, 1)), None, r"Received: shape=\(2, 9, 8, 1\)"),
        (np.zeros((0, 8, 8, 1)), None, r"non-empty.*Received: shape=\(0, 8, 8, 1\)"),
        (np.array([["a"] * 8] * 8).reshape(1, 8, 8, 1), None, r"numeric.*dtype=<U1"),
        (np.zeros((2, 8, 8, 1)), np.array([0, 7]), r"\[0, 7\).*Received: label 7 at index 1"),
        (np.zeros((2, 8, 8, 1)), np.array([0, -1]), r"Received: label -1 at index 1"),
        (np.zeros((2, 8, 8, 1)), np.array([0]), r"shape \(2,\).*Received: shape=\(1,\)"),
        (np.zeros((2, 8, 8, 1)), np.array([0.0, 1.0]), r"integer labels.*float64"),
    ],
)
def test_check_data_errors(x, y, match):
    with pytest.raises(ValueError, match=match):
        check_data(constant_model(0), x, y)


def test_train_rejects_bad_options():
    model = constant_model(0)
    x, y = np.zeros((14, 8, 8, 1), "float32"), np.arange(14) % 7
    with pytest.raises(ValueError, match="validation_split.*Received: 1.5"):
        train(model, x, y, validation_split=1.5, verbose=0)
    with pytest.raises(ValueError, match="validation_data.*pair.*Received: int"):
        train(model, x, y, validation_data=3, verbose=0)
    with pytest.raises(ValueError, match="x_val"):
        train(model, x, y, validation_data=(np.zeros((2, 4, 4, 1)), y[:2]), verbose=0)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    _io.write_text(target, "first")
    with pytest.raises(RuntimeError), _io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_cosine_schedule_warms_up_and_ends_at_zero():
    keras.utils.set_random_seed(0)
    faces = synthetic_faces(140, seed=0)
    model = fer_cnn(width=0.125)
    train(model, faces.images, faces.labels, epochs=2, batch_size=32, verbose=0)
    steps = 2 * int(np.ceil(126 / 32))  # 90% of 140 faces train, 2 epochs
    serialized = model.optimizer.get_config()["learning_rate"]
    assert serialized["class_name"] == "CosineDecay"
    config = serialized["config"]
    assert config["initial_learning_rate"] == 0.0
    assert config["warmup_target"] == pytest.approx(3e-3)
    assert config["warmup_steps"] + config["decay_steps"] == steps
    schedule = keras.optimizers.schedules.CosineDecay.from_config(config)
    assert float(schedule(config["warmup_steps"])) == pytest.approx(3e-3)
    assert float(schedule(steps)) == pytest.approx(0.0, abs=1e-9)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)  # at the end


@pytest.mark.backend_independent  # the learning-rate schedule: Keras' own, the same everywhere
def test_constant_schedule_and_bad_schedule():
    faces = synthetic_faces(70, seed=0)
    model = fer_cnn(width=0.125)
    train(model, faces.images, faces.labels, epochs=1, schedule="constant", verbose=0)
    assert float(model.optimizer.learning_rate) == pytest.approx(3e-3)
    with pytest.raises(ValueError, match="schedule 'cosine' or 'constant'. Received: 'step'"):
        train(fer_cnn(width=0.125), faces.images, faces.labels, schedule="step")


def test_summarize_counts_and_names_the_classes():
    model = constant_model(winner=1, num_classes=3)
    x = np.zeros((6, 8, 8, 1), "float32")
    y = np.array([0, 1, 1, 1, 2, 2])
    summary = summarize(model, x, y, class_names=["cat", "dog", "owl"])
    assert summary["per_class"] == {"cat": 0.0, "dog": 1.0, "owl": 0.0}
    assert summary["counts"] == {"cat": 1, "dog": 3, "owl": 2}
    assert summary["overall_accuracy"] == pytest.approx(0.5)
    assert summary["table"] == accuracy_table(
        np.array([0.0, 1.0, 0.0]), np.array([1, 3, 2]), ["cat", "dog", "owl"], 0.5
    )
    # Without names: the emotions for a 7-class model, numbers otherwise; None for no images.
    seven = summarize(constant_model(winner=3), np.zeros((2, 8, 8, 1)), np.array([3, 3]))
    assert list(seven["per_class"]) == list(EMOTIONS) and seven["per_class"]["Happy"] == 1.0
    assert seven["per_class"]["Angry"] is None
    assert list(summarize(model, x, y)["per_class"]) == ["0", "1", "2"]
