"""Tests of keras_fer_viz.saliency: exact values on hand-weighted models, and properties."""

import keras
import numpy as np
import pytest
import tiny_models
from hypothesis import given
from hypothesis import strategies as st

from keras_fer_viz.saliency import GradientXInput, IntegratedGradients, Saliency, SmoothGrad

to_numpy = keras.ops.convert_to_numpy

SHAPE = (4, 4, 2)


@pytest.fixture(scope="module")
def linear():
    return tiny_models.linear(SHAPE, classes=3, seed=0)


@pytest.fixture(scope="module")
def smooth():
    return tiny_models.smooth_cnn()


def images(seed, n=3, shape=SHAPE, scale=1.0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32") * scale


def kernel(model):
    w, _ = model.get_layer("dense").get_weights()
    return w.reshape(*SHAPE, -1)


def test_saliency_of_a_linear_model_is_abs_w(linear):
    w = kernel(linear)
    x = images(0)
    raw = Saliency(linear, normalize=False).explain(x, target=[0, 1, 2])
    expected = np.abs(w).max(axis=2).transpose(2, 0, 1)  # (classes, H, W)
    np.testing.assert_allclose(raw, expected, rtol=1e-6)
    maps = Saliency(linear).explain(x, target=[0, 1, 2])
    np.testing.assert_allclose(maps, expected / expected.max(axis=(1, 2), keepdims=True), rtol=1e-6)
    mean = Saliency(linear, reduce="mean", normalize=False).explain(x, target=1)
    np.testing.assert_allclose(mean[0], np.abs(w[..., 1]).mean(axis=2), rtol=1e-6)
    norm = Saliency(linear, reduce="norm", normalize=False).explain(x, target=1)
    np.testing.assert_allclose(norm[0], np.linalg.norm(w[..., 1], axis=2), rtol=1e-6)


def test_probability_score_follows_the_softmax_gradient(linear):
    w, b = linear.get_layer("dense").get_weights()
    x = images(1, n=1)
    z = x.reshape(1, -1) @ w + b
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    c = 2
    grad = (p[0, c] * (w[:, c] - w @ p[0])).reshape(SHAPE)
    raw = Saliency(linear, score="probability", normalize=False).explain(x, target=c)
    np.testing.assert_allclose(raw[0], np.abs(grad).max(axis=2), rtol=1e-5)


def test_target_none_explains_the_predicted_class(linear):
    x = images(2, n=5)
    predicted = np.argmax(to_numpy(linear(x)), axis=1)
    s = Saliency(linear)
    np.testing.assert_array_equal(s.explain(x), s.explain(x, target=predicted))


@given(seed=st.integers(0, 2**16), target=st.integers(0, 2))
def test_smoothgrad_of_a_linear_model_equals_saliency(linear, seed, target):
    x = images(seed, n=2, scale=10.0)
    smooth = SmoothGrad(linear, samples=5, seed=seed).explain(x, target=target)
    plain = Saliency(linear).explain(x, target=target)
    np.testing.assert_allclose(smooth, plain, rtol=1e-5, atol=1e-6)


def test_smoothgrad_is_seeded_and_batch_independent(smooth):
    x = images(3, n=5, shape=(8, 8, 1), scale=50.0)
    a = SmoothGrad(smooth, samples=6, seed=1).explain(x)
    b = SmoothGrad(smooth, samples=6, seed=1, batch_size=6).explain(x)  # one image per call
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    c = SmoothGrad(smooth, samples=6, seed=2).explain(x)
    assert np.abs(a - c).max() > 1e-3
    # Noise of zero gives plain saliency.
    np.testing.assert_allclose(
        SmoothGrad(smooth, samples=3, noise=0.0).explain(x),
        Saliency(smooth).explain(x),
        rtol=1e-5,
        atol=1e-6,
    )


def test_smoothgrad_target_is_the_clean_images_prediction(smooth):
    x = images(4, n=4, shape=(8, 8, 1), scale=50.0)
    predicted = np.argmax(to_numpy(smooth(x)), axis=1)
    sg = SmoothGrad(smooth, samples=4, noise=0.5)
    np.testing.assert_allclose(sg.explain(x), sg.explain(x, target=predicted), rtol=1e-6)


def test_integrated_gradients_of_a_linear_model(linear):
    w = kernel(linear)
    x = images(5, n=2)
    base = np.full(SHAPE, 0.25, "float32")
    raw = IntegratedGradients(linear, steps=4, baseline=base, normalize=False).explain(x, target=0)
    np.testing.assert_allclose(raw, ((x - base) * w[..., 0]).sum(axis=-1), rtol=1e-5, atol=1e-6)


@given(seed=st.integers(0, 2**16), target=st.integers(0, 2))
def test_gradient_x_input_of_a_linear_model_is_w_times_x(linear, seed, target):
    """The logit is sum W x + b: gradient x input is each pixel's term W x, summed over channels."""
    w = kernel(linear)
    x = images(seed, n=3)
    raw = GradientXInput(linear, normalize=False).explain(x, target=target)
    expected = (x * w[..., target]).sum(axis=-1)
    np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6)
    maps = GradientXInput(linear).explain(x, target=target)
    peak = np.abs(expected).max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(maps, np.abs(expected) / peak, rtol=1e-5, atol=1e-6)


@given(seed=st.integers(0, 2**16), target=st.integers(0, 3), base=st.floats(-1.0, 1.0))
def test_integrated_gradients_are_complete(smooth, seed, target, base):
    """Attributions add up to f(x) - f(baseline) within 1% (on the logits)."""
    x = images(seed, n=2, shape=(8, 8, 1), scale=2.0)
    ig = IntegratedGradients(smooth, steps=32, baseline=base, normalize=False)
    attributions = ig.explain(x, target=target)
    w, b = smooth.get_layer("head").get_weights()
    features = keras.Model(smooth.inputs[0], smooth.layers[-2].output)
    f = to_numpy(features(x)) @ w[:, target]
    f0 = to_numpy(features(np.full_like(x, base))) @ w[:, target]
    np.testing.assert_allclose(attributions.sum(axis=(1, 2)), f - f0, rtol=0.01, atol=1e-4)


# One set of explainers for every example, as a user keeps one explainer for
# many calls: each example is then a new batch through compiled functions, not
# a new trace.
@pytest.fixture(scope="module")
def smooth_explainers(smooth):
    return (
        Saliency(smooth),
        SmoothGrad(smooth, samples=4),
        IntegratedGradients(smooth, steps=8),
        GradientXInput(smooth),
    )


@given(seed=st.integers(0, 2**16), n=st.integers(1, 6), per_call=st.integers(1, 4))
def test_maps_are_bounded_finite_and_batch_independent(smooth_explainers, seed, n, per_call):
    x = images(seed, n=n, shape=(8, 8, 1), scale=30.0)
    for explainer in smooth_explainers:
        maps = explainer.explain(x)
        assert maps.shape == (n, 8, 8) and maps.dtype == np.float32
        assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
        assert np.allclose(maps.max(axis=(1, 2)), 1.0)  # each map reaches its maximum
        small = explainer.explain(x, batch_size=per_call * getattr(explainer, "samples", 1))
        np.testing.assert_allclose(small, maps, rtol=1e-4, atol=1e-5)


def test_explaining_another_class_changes_the_map(smooth):
    x = images(6, n=2, shape=(8, 8, 1), scale=30.0)
    for cls in (Saliency, SmoothGrad, IntegratedGradients, GradientXInput):
        a, b = cls(smooth).explain(x, target=0), cls(smooth).explain(x, target=1)
        assert np.abs(a - b).max() > 0.05, cls.__name__


def test_single_image_and_uint8_input(smooth):
    x = np.random.default_rng(7).integers(0, 256, (8, 8, 1)).astype("uint8")
    s = Saliency(smooth)
    np.testing.assert_array_equal(s.explain(x), s.explain(x[None].astype("float32")))
    assert s.explain(x).shape == (1, 8, 8)


def test_option_errors(smooth):
    with pytest.raises(ValueError, match="reduce in .*'max'.*Received: 'sum'"):
        Saliency(smooth, reduce="sum")
    with pytest.raises(ValueError, match="positive int `samples`. Received: 0"):
        SmoothGrad(smooth, samples=0)
    with pytest.raises(ValueError, match="noise level >= 0. Received: noise=-0.1"):
        SmoothGrad(smooth, noise=-0.1)
    with pytest.raises(ValueError, match="positive int `steps`"):
        IntegratedGradients(smooth, steps=2.5)
    with pytest.raises(ValueError, match=r"baseline broadcastable to the input shape \(8, 8, 1\)"):
        IntegratedGradients(smooth, baseline=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="score 'logit' or 'probability'"):
        Saliency(smooth, score="loss")
    with pytest.raises(ValueError, match="positive int `batch_size`"):
        Saliency(smooth, batch_size=0)
