"""Tests of keras_fer_viz.callbacks: figures during fit, faults, resumption, distribution."""

import functools
import glob
import io
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
from keras_fer_viz import figures
from keras_fer_viz.registry import spec_options

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


def gray(image):
    """A probe face as the panels show it: (H, W), scaled to [0, 1]."""
    image = np.asarray(image, dtype=float)[..., 0]
    return (image - image.min()) / (image.max() - image.min())


def captions(model, images, labels):
    """Panel titles from the model's own predict: true class, prediction, confidence."""
    probs = model.predict(images, verbose=0)
    return [
        f"true: {kfv.EMOTIONS[label]}\npred: {kfv.EMOTIONS[p.argmax()]} ({p.max():.2f})"
        for label, p in zip(labels, probs, strict=True)
    ]


# Classes to explain that the fixture model does not predict (it gets every
# probe right): a figure that explained the prediction instead would differ.
OTHER = (PROBE_LABELS + 3) % 7


def shown(ax, layer=0):
    return np.asarray(ax.images[layer].get_array(), dtype=float)


@pytest.mark.parametrize(
    "method, explainer",
    [
        ("saliency", "Saliency"),
        ("smoothgrad", "SmoothGrad"),
        ("integrated_gradients", "IntegratedGradients"),
    ],
)
def test_saliency_figure_shows_the_explainers_maps(method, explainer, fixture_model, tmp_path):
    callback = C.SaliencyCallback(PROBE, OTHER, method=method, out_dir=tmp_path)
    callback.set_model(fixture_model)
    fig = callback.make_figure(4)
    expected = getattr(kfv, explainer)(fixture_model).explain(PROBE, target=OTHER)
    assert (expected.reshape(7, -1).std(axis=1) > 0.01).all()  # maps with content
    n = len(PROBE)
    for i in range(n):
        np.testing.assert_allclose(shown(fig.axes[n + i]), expected[i], atol=1e-5)
        np.testing.assert_allclose(shown(fig.axes[i]), gray(PROBE[i]), atol=1e-12)
    assert [ax.get_title() for ax in fig.axes[:n]] == captions(fixture_model, PROBE, OTHER)
    assert fig.get_suptitle() == "Saliency after epoch 5"
    assert fig.axes[n].images[0].get_clim() == (0, 1)  # one colour scale for every map


@pytest.mark.parametrize("plus_plus", [False, True])
def test_grad_cam_figure_overlays_the_explainers_maps(plus_plus, fixture_model, tmp_path):
    callback = C.GradCAMCallback(PROBE, OTHER, plus_plus=plus_plus, out_dir=tmp_path)
    callback.set_model(fixture_model)
    fig = callback.make_figure(0)
    explainer = kfv.GradCAMPlusPlus if plus_plus else kfv.GradCAM
    expected = explainer(fixture_model).explain(PROBE, target=OTHER)
    assert (expected.reshape(7, -1).std(axis=1) > 0.01).all()
    for i in range(len(PROBE)):
        ax = fig.axes[i]
        np.testing.assert_allclose(shown(ax, 0), gray(PROBE[i]), atol=1e-12)  # the face
        np.testing.assert_allclose(shown(ax, 1), expected[i], atol=1e-5)  # the map over it
        assert 0 < ax.images[1].get_alpha() < 1
    titles = [ax.get_title() for ax in fig.axes[: len(PROBE)]]
    assert titles == captions(fixture_model, PROBE, OTHER)
    name = "Grad-CAM++" if plus_plus else "Grad-CAM"
    assert fig.get_suptitle() == f"{name} after epoch 1"


# The map methods of the registry, found here without asking the callbacks:
# every registered method but CAM (it needs a GAP head) and LIME (superpixels),
# which have callbacks of their own; coarse ones of a layer go to GradCAMCallback.
def _map_methods(overlay):
    return [
        name
        for name, explainer in kfv.EXPLAINERS.items()
        if name not in ("cam", "lime")
        and bool(explainer.overlay) == overlay
        and (not overlay or "layer" in spec_options(explainer))
    ]


SALIENCY_METHODS = _map_methods(overlay=False)
CAM_METHODS = _map_methods(overlay=True)
MAP_CASES = [("SaliencyCallback", m) for m in SALIENCY_METHODS] + [
    ("GradCAMCallback", m) for m in CAM_METHODS
]


def test_the_map_callbacks_draw_the_registered_methods():
    assert {"saliency", "smoothgrad", "integrated_gradients"} <= set(SALIENCY_METHODS)
    assert {"grad_cam", "grad_cam_plus_plus"} <= set(CAM_METHODS)
    assert C.SaliencyCallback.methods() == tuple(SALIENCY_METHODS)
    assert C.GradCAMCallback.methods() == tuple(CAM_METHODS)
    assert set(C.MapCallback.methods()) == set(SALIENCY_METHODS) | set(CAM_METHODS)


def tiny_model():
    """Two ReLU convs, GAP, Dense: every map method's needs, at a fraction of fer_cnn's cost."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x), name="tiny")
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def one_epoch_of_every_map_method(tmp_path_factory):
    """One tiny epoch with a callback per registered map method (one fit for all)."""
    out = tmp_path_factory.mktemp("maps")
    callbacks = {
        method: getattr(C, callback)(PROBE, PROBE_LABELS, method=method, name=method, out_dir=out)
        for callback, method in MAP_CASES
    }
    model = tiny_model()
    model.fit(
        FACES.images[:32], FACES.labels[:32], epochs=1, verbose=0, callbacks=[*callbacks.values()]
    )
    return callbacks, out, model


@pytest.mark.parametrize("callback, method", MAP_CASES)
def test_every_map_method_writes_its_figure_after_an_epoch(
    callback, method, one_epoch_of_every_map_method
):
    callbacks, out, _ = one_epoch_of_every_map_method
    done = callbacks[method]
    assert done.failures == []
    assert done.written == [(1, out / method / "epoch_0001.png")]
    on_disk = decoded(done.written[0][1].read_bytes())
    assert on_disk.std() > 10  # drawn, not blank
    maps = done.epoch_maps()["maps"]
    assert maps.shape == (1, 7, 48, 48) and 0 <= maps.min() and maps.max() <= 1
    # Drawn over the faces (one row) for the CAM family, under them otherwise.
    width, height = grid_size(bool(kfv.EXPLAINERS[method].overlay))
    assert on_disk.shape == (height, width, 3)


@functools.cache
def grid_size(overlay):
    """(width, height) in pixels of the probe faces' overlay_grid or saliency_grid."""
    grid = figures.overlay_grid if overlay else figures.saliency_grid
    return grid(PROBE, np.zeros(PROBE.shape[:3])).canvas.get_width_height()


def test_method_options_reach_the_explainer(one_epoch_of_every_map_method):
    *_, model = one_epoch_of_every_map_method
    options = {"samples": 4, "seed": 3}
    callback = C.SaliencyCallback(PROBE, OTHER, method="smoothgrad", method_options=options)
    callback.set_model(model)
    fig = callback.make_figure(0)
    expected = kfv.SmoothGrad(model, **options).explain(PROBE, target=OTHER)
    assert (expected.reshape(7, -1).std(axis=1) > 0.01).all()  # maps with content
    np.testing.assert_allclose(callback.maps_by_epoch[1], expected, atol=1e-5)
    assert fig.get_suptitle() == "Saliency after epoch 1"
    layered = C.GradCAMCallback(PROBE, OTHER, layer="conv1", method="layer_cam")
    layered.set_model(model)
    fig = layered.make_figure(1)
    expected = kfv.LayerCAM(model, "conv1").explain(PROBE, target=OTHER)
    assert (expected.reshape(7, -1).std(axis=1) > 0.01).all()
    np.testing.assert_allclose(layered.maps_by_epoch[2], expected, atol=1e-5)
    np.testing.assert_allclose(shown(fig.axes[0], 1), expected[0], atol=1e-5)
    assert fig.get_suptitle() == "LayerCAM after epoch 2" and layered.name == "grad_cam"


def test_map_callback_names_and_draws_by_the_method(tmp_path):
    maps = np.linspace(0, 1, 7 * 48 * 48).reshape(7, 48, 48)
    data = (maps, OTHER, np.full(7, 0.5))
    over = C.MapCallback(PROBE, OTHER, method="xgrad_cam", out_dir=tmp_path)
    fig = over.draw(data, 0)
    assert (over.name, fig.get_suptitle()) == ("xgrad_cam", "XGradCAM after epoch 1")
    np.testing.assert_allclose(shown(fig.axes[0], 1), maps[0])  # over the face
    under = C.MapCallback(PROBE, OTHER, method="smooth_grad", out_dir=tmp_path)  # an alias
    fig = under.draw(data, 1)
    assert (under.name, fig.get_suptitle()) == ("smoothgrad", "SmoothGrad after epoch 2")
    np.testing.assert_allclose(shown(fig.axes[7]), maps[0])  # under the face


def test_a_wrong_method_or_option_is_refused_with_the_accepted_names():
    for callback, accepted in (
        (C.SaliencyCallback, SALIENCY_METHODS),
        (C.GradCAMCallback, CAM_METHODS),
        (C.MapCallback, SALIENCY_METHODS + CAM_METHODS),
    ):
        with pytest.raises(ValueError, match="Received: method='lrp'") as info:
            callback(PROBE, method="lrp")
        assert all(repr(name) in str(info.value) for name in accepted), str(info.value)
        assert "'cam'" not in str(info.value) and "'lime'" not in str(info.value)
    with pytest.raises(ValueError, match="Draw 'grad_cam' with GradCAMCallback"):
        C.SaliencyCallback(PROBE, method="grad_cam")
    with pytest.raises(ValueError, match="Draw 'saliency' with SaliencyCallback"):
        C.GradCAMCallback(PROBE, method="saliency")
    with pytest.raises(ValueError, match="Draw 'cam' with CAMCallback"):
        C.GradCAMCallback(PROBE, method="cam")
    with pytest.raises(ValueError, match="Draw 'lime' with LimeCallback"):
        C.MapCallback(PROBE, method="lime")
    with pytest.raises(ValueError, match="options of 'smoothgrad'") as info:
        C.SaliencyCallback(PROBE, method="smoothgrad", method_options={"sample": 4})
    for option in spec_options(kfv.SmoothGrad):
        assert repr(option) in str(info.value)
    with pytest.raises(ValueError, match="Pass layer= to GradCAMCallback"):
        C.GradCAMCallback(PROBE, method_options={"layer": "conv2"})


def test_plus_plus_is_grad_cam_plus_plus():
    assert C.GradCAMCallback(PROBE, plus_plus=True).method == "grad_cam_plus_plus"
    assert C.GradCAMCallback(PROBE, method="grad_cam_plus_plus", plus_plus=True).plus_plus
    assert not C.GradCAMCallback(PROBE, method="xgrad_cam", plus_plus=False).plus_plus
    with pytest.raises(ValueError, match="plus_plus=True, method='xgrad_cam'"):
        C.GradCAMCallback(PROBE, method="xgrad_cam", plus_plus=True)
    with pytest.raises(ValueError, match="plus_plus=False, method='grad_cam_plus_plus'"):
        C.GradCAMCallback(PROBE, method="grad_cam_plus_plus", plus_plus=False)


def test_cam_figure_overlays_cam_of_a_gap_head_fitted_on_the_data(fixture_model, tmp_path):
    data = (FACES.images, FACES.labels)
    callback = C.CAMCallback(PROBE, data, OTHER, epochs=1, out_dir=tmp_path)
    callback.set_model(fixture_model)
    fig = callback.make_figure(6)
    head = kfv.gap_head(fixture_model, data=data, epochs=1, verbose=0)  # seeded: the same head
    expected = kfv.CAM(head).explain(PROBE, target=OTHER)
    for i in range(len(PROBE)):
        np.testing.assert_allclose(shown(fig.axes[i], 0), gray(PROBE[i]), atol=1e-12)
        np.testing.assert_allclose(shown(fig.axes[i], 1), expected[i], atol=1e-4)
    accuracy = head.head_report["head_accuracy"]
    assert fig.get_suptitle() == f"CAM after epoch 7 (GAP head accuracy {accuracy:.2f})"
    titles = [ax.get_title() for ax in fig.axes[: len(PROBE)]]
    assert titles == captions(fixture_model, PROBE, OTHER)  # the model's own predictions


def test_filter_figure_shows_gradient_ascent_images(fixture_model, tmp_path):
    callback = C.FilterCallback("block2_conv1", filters=[0, 3, 5], steps=3, out_dir=tmp_path)
    callback.set_model(fixture_model)
    fig = callback.make_figure(1)
    expected = kfv.maximize_activation(
        fixture_model, "block2_conv1", filters=[0, 3, 5], steps=3, seed=0, verbose=0
    )
    assert len(fig.axes) == 3
    for ax, image in zip(fig.axes, expected, strict=True):
        np.testing.assert_allclose(shown(ax), gray(image), atol=1e-6)
    assert [ax.get_title() for ax in fig.axes] == ["#0", "#3", "#5"]
    assert fig.get_suptitle() == "Filters of block2_conv1 after epoch 2"


def test_feature_map_figure_shows_the_layers_outputs(fixture_model, tmp_path):
    callback = C.FeatureMapCallback(PROBE[3], "block2_conv1", top=4, label="Happy")
    callback.set_model(fixture_model)
    fig = callback.make_figure(2)
    maps = kfv.feature_maps(fixture_model, "block2_conv1", PROBE[3:4])[0]
    assert maps.shape == (24, 24, 16) and maps.max() > 0
    np.testing.assert_allclose(shown(fig.axes[0]), gray(PROBE[3]), atol=1e-12)
    assert fig.axes[0].get_title() == "Happy"
    top = list(np.argsort(-maps.mean(axis=(0, 1)), kind="stable")[:4])
    for f in range(16):
        ax = fig.axes[1 + f]
        np.testing.assert_allclose(shown(ax), maps[..., f], rtol=1e-5, atol=1e-6)
        assert ax.images[0].get_clim() == pytest.approx((0, maps.max()), rel=1e-6)
        rank = f" (top {top.index(f) + 1})" if f in top else ""
        assert ax.get_title() == f"#{f}{rank}"
    assert all(not ax.axison for ax in fig.axes[17:])  # 17 panels on a 3 x 8 grid
    assert fig.get_suptitle() == "Outputs of block2_conv1 after epoch 3"


def test_lime_figure_colours_lime_s_own_top_superpixels(fixture_model, tmp_path):
    callback = C.LimeCallback(PROBE[:2], OTHER[:2], samples=50, out_dir=tmp_path)
    callback.set_model(fixture_model)
    fig = callback.make_figure(0)
    results = kfv.Lime(fixture_model, samples=50, verbose=0).explanations(
        PROBE[:2], target=OTHER[:2]
    )
    for i, result in enumerate(results):
        # lime's own choice of the 5 superpixels for and against the class.
        lime_result = result.explanation
        _, pro = lime_result.get_image_and_mask(result.target, positive_only=True, num_features=5)
        _, con = lime_result.get_image_and_mask(
            result.target, positive_only=False, negative_only=True, num_features=5
        )
        pro, con = pro.astype(bool), con.astype(bool)
        assert pro.any() and con.any() and not (pro & con).any()
        rgb = shown(fig.axes[i])
        face = gray(PROBE[i])
        rest = ~(pro | con)
        np.testing.assert_allclose(rgb[rest], np.stack([face[rest]] * 3, -1), atol=1e-12)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        assert (g[pro] > r[pro] + 0.2).all() and (g[pro] > b[pro] + 0.2).all()  # green: for
        assert (r[con] > g[con] + 0.2).all() and (r[con] > b[con] + 0.2).all()  # red: against
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == captions(fixture_model, PROBE[:2], OTHER[:2])
    assert fig.get_suptitle().startswith("LIME after epoch 1 (green: for the class")


def test_confusion_matrix_figure_matches_scikit_learn(fixture_model, tmp_path):
    from sklearn.metrics import confusion_matrix

    x, y = FACES.images[:70], FACES.labels[:70]
    callback = C.ConfusionMatrixCallback(x, y, out_dir=tmp_path)
    callback.set_model(fixture_model)
    fig = callback.make_figure(2)
    predicted = fixture_model.predict(x, verbose=0).argmax(axis=1)
    counts = confusion_matrix(y, predicted, labels=range(7))
    assert counts.sum() == 70 and 0 < np.trace(counts) < 70  # right and wrong answers
    ax = fig.axes[0]
    cells = [t.get_text().split("\n") for t in ax.texts]
    assert len(cells) == 49
    shares = counts / counts.sum(axis=1, keepdims=True)
    assert [int(count.strip("()")) for _, count in cells] == counts.ravel().tolist()
    assert [float(share) for share, _ in cells] == pytest.approx(shares.ravel(), abs=0.005)
    np.testing.assert_allclose(shown(ax), shares, atol=1e-12)
    accuracy = np.trace(counts) / 70
    assert ax.get_title() == f"Confusion matrix after epoch 3 (accuracy {accuracy:.2f}, n = 70)"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(kfv.EMOTIONS)


def test_training_curves_figure_plots_every_epochs_logs(tmp_path):
    logs = [
        {"loss": 1.9, "accuracy": 0.2, "val_loss": 2.0, "val_accuracy": 0.15},
        {"loss": 1.2, "accuracy": 0.5, "val_loss": 1.4, "val_accuracy": 0.45},
        {"loss": 0.7, "accuracy": 0.8, "val_loss": 1.1, "val_accuracy": 0.6},
    ]
    callback = C.TrainingCurvesCallback(out_dir=tmp_path, every=3)
    callback.on_train_begin()
    for epoch in (0, 1):
        callback.on_epoch_end(epoch, logs[epoch])  # not drawn (every=3), still recorded
    fig = callback.make_figure(2, logs[2])
    callback.on_train_end()
    loss, accuracy = fig.axes
    for ax, key in ((loss, "loss"), (accuracy, "accuracy")):
        training, validation = ax.lines
        np.testing.assert_array_equal(training.get_xdata(), [1, 2, 3])
        np.testing.assert_allclose(training.get_ydata(), [e[key] for e in logs])
        np.testing.assert_allclose(validation.get_ydata(), [e[f"val_{key}"] for e in logs])
        assert ax.get_ylabel() == key
    assert fig.get_suptitle() == "Training curves after epoch 3"
    assert not list(tmp_path.iterdir())


def test_training_curves_of_a_resumed_fit_start_at_its_epoch_and_skip_unlogged_values(tmp_path):
    # fit(initial_epoch=4, validation_freq=2): Keras passes epochs 4, 5, 6 (0-based),
    # validation logged at 1-based epochs 6 only (6 % 2 == 0), not 5 or 7.
    logs = [
        {"loss": 1.0, "accuracy": 0.5},
        {"loss": 0.8, "accuracy": 0.6, "val_loss": 0.9, "val_accuracy": 0.55},
        {"loss": 0.6, "accuracy": 0.7},
    ]
    callback = C.TrainingCurvesCallback(out_dir=tmp_path, every=99)
    callback.on_train_begin()
    callback.on_epoch_end(4, logs[0])
    callback.on_epoch_end(5, logs[1])
    fig = callback.make_figure(6, logs[2])
    callback.on_train_end()
    for ax, key in zip(fig.axes, ("loss", "accuracy"), strict=True):
        training, validation = ax.lines
        np.testing.assert_array_equal(training.get_xdata(), [5, 6, 7])
        np.testing.assert_allclose(training.get_ydata(), [e[key] for e in logs])
        np.testing.assert_array_equal(validation.get_xdata(), [6])
        np.testing.assert_allclose(validation.get_ydata(), [logs[1][f"val_{key}"]])
    assert fig.get_suptitle() == "Training curves after epoch 7"


def decoded(png):
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"), dtype=float)


def rendered(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    return decoded(buffer.getvalue())


# On JAX and PyTorch every callback runs in a fit in test_make_figure_of_every_callback,
# test_every_map_method_writes_its_figure_after_an_epoch and (JAX) the DataParallel
# test; what this one adds (one file per callback and epoch, each its epoch's figure)
# is file logic.
@pytest.mark.backend_independent
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
    # Each file is the figure of its epoch: the canvas's pixel size, and for
    # the last epoch (the model as it is now) the same pixels as a new drawing.
    for callback in callbacks:
        for epoch, path in callback.written:
            on_disk = decoded(path.read_bytes())
            if isinstance(callback, C.TrainingCurvesCallback):
                logs = {k: v[:epoch] for k, v in callback.logs.items()}
                fig = callback.draw((callback.epochs[:epoch], logs), epoch - 1)
            else:
                fig = callback.make_figure(epoch - 1)
            width, height = fig.canvas.get_width_height()
            assert on_disk.shape == (height, width, 3), (callback.name, epoch)
            assert on_disk.std() > 10  # drawn, not blank
            if epoch == 2:
                difference = np.sqrt(np.mean((rendered(fig) - on_disk) ** 2))
                assert difference < 1.0, (callback.name, difference)


def test_maps_are_those_of_the_model_at_that_epoch(tmp_path):
    model = small_model()
    callback = C.GradCAMCallback(PROBE, PROBE_LABELS, out_dir=tmp_path)
    fit(model, [callback], epochs=2)
    kept = callback.epoch_maps()
    assert kept["epochs"] == [1, 2] and kept["maps"].shape == (2, 7, 48, 48)
    now = kfv.GradCAM(model).explain(PROBE, target=PROBE_LABELS)
    np.testing.assert_allclose(kept["maps"][1], now, atol=1e-5)  # the model after epoch 2
    assert np.abs(kept["maps"][0] - kept["maps"][1]).max() > 1e-3  # epoch 1 differed


@pytest.mark.backend_independent
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


@pytest.mark.backend_independent
def test_a_failing_figure_warns_once_and_training_goes_on(tmp_path):
    callback = C.GradCAMCallback(PROBE, layer="no_such_layer", out_dir=tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(small_model(), [callback], epochs=3)
    ours = [w for w in caught if "GradCAMCallback" in str(w.message)]
    assert len(ours) == 1 and "No layer named 'no_such_layer'" in str(ours[0].message)
    assert len(history.history["loss"]) == 3
    assert [e for e, _ in callback.failures] == [1, 2, 3] and not pngs(tmp_path)


@pytest.mark.backend_independent
def test_strict_raises(tmp_path):
    callback = C.GradCAMCallback(PROBE, layer="no_such_layer", out_dir=tmp_path, strict=True)
    with pytest.raises(ValueError, match="No layer named 'no_such_layer'"):
        fit(small_model(), [callback], epochs=2)


@pytest.mark.backend_independent
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


@pytest.mark.backend_independent
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


# Which process writes (TF_CONFIG): files only.
@pytest.mark.backend_independent
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
model.fit(t.FACES.images, t.FACES.labels, epochs=1, batch_size=32, verbose=0,
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
    assert set(result["written"].values()) == {1}  # one epoch: each callback once
    assert len(pngs(tmp_path)) == 8


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
model.fit(t.FACES.images, t.FACES.labels, epochs=1, batch_size=32, verbose=0,
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
    assert set(result["written"].values()) == {1}  # one epoch: each callback once
    assert len(pngs(tmp_path)) == 8


def test_settings_are_checked_in_the_constructor():
    with pytest.raises(ValueError, match="Expected a positive int `every`. Received: 0"):
        C.SaliencyCallback(PROBE, every=0)
    with pytest.raises(ValueError, match=r"probe images of shape \(N, H, W, C\)"):
        C.SaliencyCallback(np.zeros((48, 48)))
    with pytest.raises(ValueError, match=r"one integer label per probe image: shape \(7,\)"):
        C.GradCAMCallback(PROBE, labels=[1, 2])
    with pytest.raises(ValueError, match="SaliencyCallback draws: \\['saliency', 'smoothgrad'"):
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
        C.MapCallback,
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
