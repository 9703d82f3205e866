"""Tests of keras_fer_viz.callbacks: figures during fit, faults, resumption, distribution."""

import glob
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from matplotlib.figure import Figure

import keras_fer_viz as kfv
from keras_fer_viz import callbacks as C

FACES = kfv.synthetic_faces(210, seed=4)
PROBE, PROBE_LABELS = C.probe_faces(FACES.images, FACES.labels)


def every_callback(out_dir, **kwargs):
    return [
        C.SaliencyCallback(PROBE, PROBE_LABELS, out_dir=out_dir, **kwargs),
        C.GradCAMCallback(PROBE, PROBE_LABELS, out_dir=out_dir, **kwargs),
        C.CAMCallback(
            PROBE, (FACES.images, FACES.labels), PROBE_LABELS, epochs=1, out_dir=out_dir, **kwargs
        ),
        C.FilterCallback("block2_conv1", filters=[0, 1, 2, 3], steps=3, out_dir=out_dir, **kwargs),
        C.FeatureMapCallback(PROBE[0], "block2_conv1", label="Angry", out_dir=out_dir, **kwargs),
        C.LimeCallback(PROBE[:2], PROBE_LABELS[:2], samples=50, out_dir=out_dir, **kwargs),
        C.ConfusionMatrixCallback(FACES.images[:70], FACES.labels[:70], out_dir=out_dir, **kwargs),
        C.TrainingCurvesCallback(out_dir=out_dir, **kwargs),
    ]


def small_model():
    keras.utils.set_random_seed(0)
    return kfv.fer_cnn(width=0.125)


def fit(model, callbacks, epochs=2, initial_epoch=0):
    return (
        kfv.train(model, FACES.images, FACES.labels, epochs=epochs, verbose=0, callbacks=callbacks)
        if initial_epoch == 0
        else model.fit(
            FACES.images,
            FACES.labels,
            epochs=epochs,
            initial_epoch=initial_epoch,
            verbose=0,
            callbacks=callbacks,
        )
    )


def pngs(folder):
    return sorted(
        str(Path(p).relative_to(folder)) for p in glob.glob(f"{folder}/**/*.png", recursive=True)
    )


def test_probe_faces_one_per_emotion():
    assert PROBE.shape == (7, 48, 48, 1) and PROBE_LABELS.tolist() == list(range(7))
    two, labels = C.probe_faces(FACES.images, FACES.labels, per_class=2, seed=1)
    assert labels.tolist() == [c for c in range(7) for _ in range(2)]
    with pytest.raises(ValueError, match="one label per image"):
        C.probe_faces(FACES.images, FACES.labels[:5])


@pytest.mark.parametrize("index", range(8))
def test_make_figure_of_every_callback(index, fixture_model, tmp_path):
    callback = every_callback(tmp_path)[index]
    callback.set_model(fixture_model)
    fig = callback.make_figure(2, logs={"loss": 1.0, "accuracy": 0.5})
    assert isinstance(fig, Figure)
    assert "after epoch 3" in fig.get_suptitle() or "after epoch 3" in fig.axes[0].get_title()
    assert not list(tmp_path.iterdir())  # make_figure draws, it does not write


def test_a_short_fit_writes_one_file_per_callback_and_epoch(tmp_path):
    callbacks = every_callback(tmp_path)
    history = fit(small_model(), callbacks)
    names = [
        "saliency",
        "grad_cam",
        "cam",
        "filters",
        "feature_maps",
        "lime",
        "confusion_matrix",
        "training_curves",
    ]
    assert pngs(tmp_path) == sorted(f"{n}/epoch_{e:04d}.png" for n in names for e in (1, 2))
    for callback in callbacks:
        assert [e for e, _ in callback.written] == [1, 2] and callback.failures == []
    curves = callbacks[-1]
    assert curves.logs["loss"] == pytest.approx(history.history["loss"])


def test_maps_are_those_of_the_model_at_that_epoch(tmp_path):
    model = small_model()
    callback = C.GradCAMCallback(PROBE, PROBE_LABELS, out_dir=tmp_path)
    fit(model, [callback], epochs=2)
    kept = callback.epoch_maps()
    assert kept["epochs"] == [1, 2] and kept["maps"].shape == (2, 7, 48, 48)
    now = kfv.GradCAM(model).explain(PROBE, target=PROBE_LABELS)
    np.testing.assert_allclose(kept["maps"][1], now, atol=1e-5)  # the model after epoch 2
    assert np.abs(kept["maps"][0] - kept["maps"][1]).max() > 1e-3  # epoch 1 differed


def test_every_and_resuming_never_overwrite_another_epoch(tmp_path):
    model = small_model()
    callback = C.SaliencyCallback(PROBE, PROBE_LABELS, out_dir=tmp_path, every=2)
    fit(model, [callback], epochs=4)
    assert pngs(tmp_path) == ["saliency/epoch_0002.png", "saliency/epoch_0004.png"]
    before = {p: (tmp_path / p).read_bytes() for p in pngs(tmp_path)}
    fit(model, [callback], epochs=6, initial_epoch=4)
    assert pngs(tmp_path) == [f"saliency/epoch_{e:04d}.png" for e in (2, 4, 6)]
    for path, data in before.items():
        assert (tmp_path / path).read_bytes() == data
    assert callback.written == [(6, tmp_path / "saliency" / "epoch_0006.png")]


def test_a_failing_figure_warns_once_and_training_goes_on(tmp_path):
    callback = C.GradCAMCallback(PROBE, layer="no_such_layer", out_dir=tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(small_model(), [callback], epochs=3)
    ours = [w for w in caught if "GradCAMCallback" in str(w.message)]
    assert len(ours) == 1 and "No layer named 'no_such_layer'" in str(ours[0].message)
    assert len(history.history["loss"]) == 3
    assert [e for e, _ in callback.failures] == [1, 2, 3] and not pngs(tmp_path)


def test_strict_raises(tmp_path):
    callback = C.GradCAMCallback(PROBE, layer="no_such_layer", out_dir=tmp_path, strict=True)
    with pytest.raises(ValueError, match="No layer named 'no_such_layer'"):
        fit(small_model(), [callback], epochs=2)


def test_a_full_disk_leaves_no_half_written_file(tmp_path, monkeypatch):
    def savefig(self, path, **kwargs):
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", savefig)
    callback = C.SaliencyCallback(PROBE, out_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="No space left on device"):
        fit(small_model(), [callback], epochs=1)
    assert list((tmp_path / "saliency").iterdir()) == []  # no temp file, no partial PNG
    strict = C.SaliencyCallback(PROBE, out_dir=tmp_path, strict=True)
    with pytest.raises(RuntimeError, match="epoch 1 failed: OSError.*No space left"):
        fit(small_model(), [strict], epochs=1)  # raised from the drawing thread at train end


def test_an_unwritable_folder_warns(tmp_path):
    (tmp_path / "saliency").write_text("a file where the folder should be")
    callback = C.SaliencyCallback(PROBE, out_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="SaliencyCallback: the figure for epoch 1 failed"):
        fit(small_model(), [callback], epochs=1)
    assert callback.failures and not callback.written


def test_tensorboard_image_summaries(tmp_path):
    import tensorflow as tf

    callback = C.GradCAMCallback(PROBE, out_dir=tmp_path / "png", tensorboard_dir=tmp_path / "tb")
    fit(small_model(), [callback], epochs=2)
    (events,) = glob.glob(str(tmp_path / "tb" / "*"))
    seen = []
    for event in tf.compat.v1.train.summary_iterator(events):
        for value in event.summary.value:
            width, height, png = tf.make_ndarray(value.tensor)
            seen.append((event.step, value.tag, value.metadata.plugin_data.plugin_name))
            assert (
                png == (tmp_path / "png" / "grad_cam" / f"epoch_{event.step:04d}.png").read_bytes()
            )
            assert int(width) > int(height) > 100
    assert seen == [(1, "grad_cam", "images"), (2, "grad_cam", "images")]


def test_tensorboard_without_tensorflow_fails_at_construction(monkeypatch):
    monkeypatch.setattr(C, "_tensorflow_available", lambda: False)
    with pytest.raises(ValueError, match="tensorboard_dir needs TensorFlow"):
        C.SaliencyCallback(PROBE, tensorboard_dir="tb")


def test_only_the_chief_writes(tmp_path, monkeypatch):
    cluster = {"worker": ["localhost:12345", "localhost:23456"]}
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})
    )
    assert not C.is_chief()
    callbacks = every_callback(tmp_path)
    fit(small_model(), callbacks, epochs=1)
    assert not list(tmp_path.iterdir())
    assert all(c.written == [] and c.failures == [] for c in callbacks)


def test_is_chief():
    cases = [
        (None, True),
        ({"cluster": {"worker": ["a", "b"]}, "task": {"type": "worker", "index": 0}}, True),
        (
            {"cluster": {"chief": ["c"], "worker": ["a"]}, "task": {"type": "worker", "index": 0}},
            False,
        ),
        (
            {"cluster": {"chief": ["c"], "worker": ["a"]}, "task": {"type": "chief", "index": 0}},
            True,
        ),
        ({"cluster": {"worker": ["a"], "evaluator": ["e"]}, "task": {"type": "evaluator"}}, False),
    ]
    old = os.environ.pop("TF_CONFIG", None)
    try:
        for config, expected in cases:
            if config is None:
                os.environ.pop("TF_CONFIG", None)
            else:
                os.environ["TF_CONFIG"] = json.dumps(config)
            assert C.is_chief() is expected, config
    finally:
        os.environ.pop("TF_CONFIG", None)
        if old is not None:
            os.environ["TF_CONFIG"] = old


MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, {tests!r})
import keras
import test_callbacks as t
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = t.small_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
callbacks = t.every_callback({out!r})
model.fit(t.FACES.images, t.FACES.labels, epochs=2, batch_size=32, verbose=0,
          callbacks=callbacks)
print(json.dumps({{"replicas": strategy.num_replicas_in_sync,
                   "written": {{c.name: len(c.written) for c in callbacks}},
                   "failures": {{c.name: c.failures for c in callbacks}}}}))
"""


def fit_in_a_process(template, out, **env):
    """Runs a fit script (devices are set up per process) and returns its JSON line."""
    script = template.format(tests=str(Path(__file__).parent), out=str(out))
    env = {**os.environ, **env}
    env.pop("TF_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="MirroredStrategy is TensorFlow's; JAX's data parallelism is tested below",
)
def test_every_callback_under_mirrored_strategy_with_two_devices(tmp_path):
    result = fit_in_a_process(MIRRORED, tmp_path, TF_CPP_MIN_LOG_LEVEL="3")
    assert result["replicas"] == 2
    assert all(v == [] for v in result["failures"].values()), result["failures"]
    assert set(result["written"].values()) == {2}
    assert len(pngs(tmp_path)) == 16


DATA_PARALLEL = """
import json, os, sys
sys.path.insert(0, {tests!r})
import jax
import keras
import test_callbacks as t
devices = jax.devices("cpu")
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
model = t.small_model()
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
callbacks = t.every_callback({out!r})
model.fit(t.FACES.images, t.FACES.labels, epochs=2, batch_size=32, verbose=0,
          callbacks=callbacks)
print(json.dumps({{"devices": len(devices),
                   "written": {{c.name: len(c.written) for c in callbacks}},
                   "failures": {{c.name: c.failures for c in callbacks}}}}))
"""


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's data parallelism")
def test_every_callback_under_jax_data_parallel_with_two_devices(tmp_path):
    result = fit_in_a_process(
        DATA_PARALLEL, tmp_path, XLA_FLAGS="--xla_force_host_platform_device_count=2"
    )
    assert result["devices"] == 2
    assert all(v == [] for v in result["failures"].values()), result["failures"]
    assert set(result["written"].values()) == {2}
    assert len(pngs(tmp_path)) == 16


def test_settings_are_checked_in_the_constructor():
    with pytest.raises(ValueError, match="`every` to be a positive int. Received: 0"):
        C.SaliencyCallback(PROBE, every=0)
    with pytest.raises(ValueError, match=r"probe images of shape \(N, H, W, C\)"):
        C.SaliencyCallback(np.zeros((48, 48)))
    with pytest.raises(ValueError, match=r"one integer label per probe image: shape \(7,\)"):
        C.GradCAMCallback(PROBE, labels=[1, 2])
    with pytest.raises(ValueError, match="method 'saliency', 'smoothgrad'"):
        C.SaliencyCallback(PROBE, method="lrp")
    with pytest.raises(ValueError, match="data=\\(x, y\\)"):
        C.CAMCallback(PROBE, data=None)
    with pytest.raises(ValueError, match="positive int `steps`"):
        C.FilterCallback("conv", steps=0)
    with pytest.raises(ValueError, match="plain folder name"):
        C.SaliencyCallback(PROBE, name="../up")
    with pytest.raises(TypeError, match="abstract"):
        C.FigureCallback()


def test_only_epoch_and_train_hooks_are_used():
    batch_hooks = [n for n in dir(keras.callbacks.Callback) if "batch" in n]
    for cls in (
        C.SaliencyCallback,
        C.GradCAMCallback,
        C.CAMCallback,
        C.FilterCallback,
        C.FeatureMapCallback,
        C.LimeCallback,
        C.ConfusionMatrixCallback,
        C.TrainingCurvesCallback,
    ):
        for hook in batch_hooks:
            assert getattr(cls, hook) is getattr(keras.callbacks.Callback, hook), (cls, hook)
