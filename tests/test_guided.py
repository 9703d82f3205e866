"""Tests of keras_fer_viz.guided: guided gradients by hand, and the model left as it was."""

import keras
import numpy as np
import pytest
import tiny_models
from hypothesis import given
from hypothesis import strategies as st

from keras_fer_viz.grad_cam import GradCAM
from keras_fer_viz.guided import GuidedBackprop, GuidedGradCAM
from keras_fer_viz.saliency import Saliency


def hidden_relu(kind="activation", shape=(3, 3, 1), hidden=5, classes=3, seed=0):
    """Flatten -> Dense(hidden) with a ReLU -> Dense(classes, softmax), weights drawn from `seed`.

    kind: where the ReLU is: "activation" (Dense(activation="relu")), "layer"
    (a `keras.layers.ReLU`) or "activation_layer" (``Activation("relu")``).
    """
    inputs = keras.Input(shape)
    x = keras.layers.Flatten()(inputs)
    first = keras.layers.Dense(hidden, activation="relu" if kind == "activation" else None)
    x = first(x)
    if kind == "layer":
        x = keras.layers.ReLU()(x)
    elif kind == "activation_layer":
        x = keras.layers.Activation("relu")(x)
    second = keras.layers.Dense(classes, activation="softmax")
    model = keras.Model(inputs, second(x))
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(int(np.prod(shape)), hidden)).astype("float32")
    b1 = rng.normal(size=hidden).astype("float32")
    w2 = rng.normal(size=(hidden, classes)).astype("float32")
    first.set_weights([w1, b1])
    second.set_weights([w2, np.zeros(classes, "float32")])
    return model, w1, b1, w2


def guided_by_hand(x, w1, b1, w2, target):
    """d logit / d x with the guided rule at the one ReLU: ReLU(upstream) * [z > 0]."""
    z = x.reshape(len(x), -1) @ w1 + b1  # (N, hidden)
    upstream = np.broadcast_to(w2[:, target], z.shape)  # d logit / d ReLU output
    passed = np.maximum(upstream, 0) * (z > 0)
    return (passed @ w1.T).reshape(x.shape)


@pytest.mark.parametrize("kind", ["activation", "layer", "activation_layer"])
def test_guided_backprop_by_hand(kind):
    model, w1, b1, w2 = hidden_relu(kind)
    x = np.random.default_rng(1).normal(size=(4, 3, 3, 1)).astype("float32")
    for target in range(3):
        expected = np.abs(guided_by_hand(x, w1, b1, w2, target))[..., 0]
        raw = GuidedBackprop(model, normalize=False).explain(x, target=target)
        np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6)
        # ... and it is not the plain gradient, which lets negative upstream through.
        plain = Saliency(model, normalize=False).explain(x, target=target)
        assert np.abs(plain - raw).max() > 1e-3


@given(seed=st.integers(0, 2**16), target=st.integers(0, 2), image_seed=st.integers(0, 2**16))
def test_guided_backprop_property(seed, target, image_seed):
    model, w1, b1, w2 = hidden_relu("activation", hidden=6, seed=seed)
    x = np.random.default_rng(image_seed).normal(size=(3, 3, 3, 1)).astype("float32")
    expected = np.abs(guided_by_hand(x, w1, b1, w2, target))[..., 0]
    raw = GuidedBackprop(model, normalize=False).explain(x, target=target)
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-5)


def test_relu6_and_leaky_relu():
    """ReLU(max_value=6) guides where 0 < z < 6; a leaky ReLU is left alone."""
    inputs = keras.Input((2, 2, 1))
    x = keras.layers.Flatten()(inputs)
    first = keras.layers.Dense(4)
    h = keras.layers.ReLU(max_value=6.0)(first(x))
    out = keras.layers.Dense(2)(h)
    model = keras.Model(inputs, out)
    w1 = np.array([[1, -1, 4, 0.5]] * 4, "float32")
    first.set_weights([w1, np.zeros(4, "float32")])
    model.layers[-1].set_weights(
        [np.array([[1, 0], [1, 0], [-1, 0], [1, 0]], "float32"), np.zeros(2, "float32")]
    )
    image = np.full((1, 2, 2, 1), 1.0, "float32")  # z = (4, -4, 16, 2): unit 2 clipped at 6
    raw = GuidedBackprop(model, normalize=False).explain(image, target=0)
    # Units 0 and 3 pass (0 < z < 6, upstream +1); 1 is off; 2 is clipped and negative.
    np.testing.assert_allclose(raw[0], np.full((2, 2), 1.5), rtol=1e-6)

    leaky = keras.Sequential(
        [
            keras.Input((2, 2, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
            keras.layers.ReLU(negative_slope=0.1),
            keras.layers.Dense(2),
        ]
    )
    with pytest.warns(RuntimeWarning, match="found no ReLU"):
        GuidedBackprop(leaky)


def test_the_model_is_left_as_it_was():
    model = tiny_models.conv_gap_dense("softmax", filters=3, size=6, seed=0)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 1)).astype("float32")
    before = Saliency(model, normalize=False).explain(x, target=1)
    predictions = model.predict(x, verbose=0)
    attributes = {id(la): dict(la.__dict__) for la in model._flatten_layers()}
    GuidedBackprop(model).explain(x, target=1)
    GuidedGradCAM(model, "conv").explain(x, target=1)
    for layer in model._flatten_layers():
        assert "call" not in layer.__dict__
        assert layer.__dict__.get("activation") is attributes[id(layer)].get("activation")
    np.testing.assert_array_equal(model.predict(x, verbose=0), predictions)
    # A plain gradient afterwards is the plain gradient (the guided rule did not leak).
    np.testing.assert_allclose(Saliency(model, normalize=False).explain(x, target=1), before)


def test_guided_grad_cam_is_guided_backprop_times_grad_cam():
    """With a 'same' conv layer the Grad-CAM map is at the input's size: an exact identity."""
    model = tiny_models.conv_gap_dense("softmax", filters=3, size=6, seed=4)
    x = np.random.default_rng(5).normal(size=(3, 6, 6, 1)).astype("float32") + 0.5
    for target in range(3):
        guided = GuidedBackprop(model, normalize=False).explain(x, target=target)
        cam = np.maximum(GradCAM(model, "conv", normalize=False).explain(x, target=target), 0)
        raw = GuidedGradCAM(model, "conv", normalize=False).explain(x, target=target)
        np.testing.assert_allclose(raw, guided * cam, rtol=1e-5, atol=1e-7)
        maps = GuidedGradCAM(model, "conv").explain(x, target=target)
        assert maps.min() >= 0 and maps.max() <= 1


def test_guided_grad_cam_upsamples_a_coarse_layer():
    relu = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1"),
            keras.layers.MaxPooling2D(4),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype("float32")
    maps = GuidedGradCAM(relu, "c2").explain(x, target=0)
    assert maps.shape == (2, 16, 16) and np.isfinite(maps).all()


def test_no_relu_warns_and_gives_the_plain_gradient():
    model = tiny_models.smooth_cnn((8, 8, 1))  # tanh only
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32")
    with pytest.warns(RuntimeWarning, match="found no ReLU"):
        guided = GuidedBackprop(model, normalize=False)
    np.testing.assert_allclose(
        guided.explain(x, target=0),
        Saliency(model, normalize=False).explain(x, target=0),
        rtol=1e-5,
        atol=1e-7,
    )


def test_errors():
    model, *_ = hidden_relu()
    with pytest.raises(ValueError, match="Expected reduce in"):
        GuidedBackprop(model, reduce="sum")
    with pytest.raises(ValueError, match=r"Expected images of shape \(N, 3, 3, 1\)"):
        GuidedBackprop(model).explain(np.zeros((2, 4, 4, 1)))
