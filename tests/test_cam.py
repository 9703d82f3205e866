"""Tests of keras_fer_viz.cam: the CAM identity, the head swap, and its guards."""

import keras
import numpy as np
import pytest
import tiny_models

import keras_fer_viz as kfv
from keras_fer_viz.cam import CAM, find_gap_head, gap_head

to_numpy = keras.ops.convert_to_numpy

X = np.arange(32, dtype="float32").reshape(2, 4, 4, 1) / 4


def logits_of(model, x):
    return to_numpy(kfv.submodel(model)(x, training=False))


@pytest.mark.parametrize("head", ["softmax", "layer", "linear"])
def test_cam_raw_values_and_the_logit_identity(head):
    model = tiny_models.conv_gap_dense(head)
    kernel, bias = model.get_layer("conv").get_weights()
    w, b = model.get_layer("dense").get_weights()
    a = tiny_models.conv_reference(X, kernel, bias)
    logits = logits_of(model, X)
    for c in range(3):
        raw = CAM(model, normalize=False).explain(X, target=c)
        np.testing.assert_allclose(raw, (a * w[:, c]).sum(-1), rtol=1e-6, atol=1e-6)
        # Zhou et al.: the spatial mean of CAM_c plus b_c is the logit of c.
        np.testing.assert_allclose(raw.mean(axis=(1, 2)) + b[c], logits[:, c], rtol=1e-6)


def test_cam_equals_grad_cam_on_a_gap_model():
    model = tiny_models.conv_gap_dense("softmax", filters=3, size=6, seed=4)
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 1)).astype("float32")
    np.testing.assert_allclose(
        CAM(model).explain(x, target=1), kfv.GradCAM(model, "conv").explain(x, target=1), atol=1e-5
    )


def test_dropout_between_pooling_and_classifier_is_allowed():
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.5)(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="dense")(x))
    layer, dense = find_gap_head(model)
    assert layer.name == "conv" and dense.name == "dense"
    maps = CAM(model).explain(np.ones((2, 6, 6, 1), "float32"))
    assert maps.shape == (2, 6, 6) and maps.min() >= 0 and maps.max() <= 1


def test_cam_refuses_a_dense_head_and_points_at_gap_head():
    with pytest.raises(ValueError, match=r"fed by Flatten.*gap_head\(model, data=\(x, y\)\)"):
        CAM(tiny_models.linear())
    with pytest.raises(ValueError, match="GlobalAveragePooling2D.*gap_head"):
        CAM(kfv.fer_cnn(width=0.125))


def brightness_task(n=200, seed=0):
    """Dark faces are class 0, bright ones class 1: pooled features separate them."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.uniform(0, 0.4, (n, 8, 8, 1)) + 0.6 * y[:, None, None, None]
    return x.astype("float32"), y


def classifier_8x8():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(2, activation="softmax", name="out")(x)
    return keras.Model(inputs, out, name="small")


def test_gap_head_trains_a_new_head_and_leaves_the_model_alone():
    model = classifier_8x8()
    model.get_layer("conv1").trainable = False  # a caller's own choice, to be kept
    flags = [layer.trainable for layer in model.layers]
    weights = [w.copy() for w in model.get_weights()]
    x, y = brightness_task()
    cam_model = gap_head(model, data=(x, y), epochs=30, verbose=0, bias=True)
    assert [layer.trainable for layer in model.layers] == flags
    for a, b in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [la.name for la in cam_model.layers[-2:]] == ["gap", "gap_head"]
    trainable = [v.path for v in cam_model.trainable_variables]
    assert trainable == ["gap_head/kernel", "gap_head/bias"]  # the base is frozen
    report = cam_model.head_report
    assert report["layer"] == "conv2" and report["validation_images"] == 20
    assert report["head_accuracy"] >= 0.9
    # The base is a copy with the caller's weights: same features.
    base_features = kfv.feature_maps(cam_model, "conv2", x[:4])
    np.testing.assert_allclose(base_features, kfv.feature_maps(model, "conv2", x[:4]), rtol=1e-6)
    # And its CAM decomposes its logits.
    raw = CAM(cam_model, normalize=False).explain(x[:4], target=1)
    b = cam_model.get_layer("gap_head").get_weights()[1]
    np.testing.assert_allclose(
        raw.mean(axis=(1, 2)) + b[1], logits_of(cam_model, x[:4])[:, 1], rtol=1e-5, atol=1e-6
    )
    # Without a bias (the default, as Zhou et al.), a class's CAM averages to its logit.
    plain = gap_head(model, data=(x, y), epochs=5, verbose=0)
    assert [v.path for v in plain.trainable_variables] == ["gap_head/kernel"]
    raw = CAM(plain, normalize=False).explain(x[:4], target=0)
    np.testing.assert_allclose(
        raw.mean(axis=(1, 2)), logits_of(plain, x[:4])[:, 0], rtol=1e-5, atol=1e-6
    )


def test_gap_head_prints_both_accuracies(capsys):
    x, y = brightness_task(100)
    gap_head(classifier_8x8(), "conv1", data=(x, y), validation_data=(x, y), epochs=2)
    out = capsys.readouterr().out
    assert "GAP head on 'conv1': accuracy" in out and "(original model" in out
    assert "on 100 validation images" in out


def test_gap_head_inside_a_nested_model():
    inner = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(3, 3, activation="relu", name="inner_conv")],
        name="inner",
    )
    outer = keras.Sequential(
        [keras.Input((8, 8, 1)), inner, keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    x, y = brightness_task(60)
    cam_model = gap_head(outer, "inner/inner_conv", data=(x, y), epochs=1, verbose=0)
    assert CAM(cam_model).explain(x[:2]).shape == (2, 8, 8)


def test_gap_head_errors():
    model = classifier_8x8()
    x, y = brightness_task(40)
    with pytest.raises(ValueError, match="data=\\(x, y\\).*Received: data=None"):
        gap_head(model)
    with pytest.raises(ValueError, match=r"spatial layer.*'out'.*\(None, 2\)"):
        gap_head(model, "out", data=(x, y))
    with pytest.raises(ValueError, match=r"shape \(N, 8, 8, 1\).*Received: shape=\(40, 8, 8\)"):
        gap_head(model, data=(x[..., 0], y))
    with pytest.raises(ValueError, match="labels in \\[0, 2\\)"):
        gap_head(model, data=(x, y + 5))
    with pytest.raises(ValueError, match="positive int `epochs`"):
        gap_head(model, data=(x, y), epochs=0)
