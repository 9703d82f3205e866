"""Tests of keras_fer_viz.grad_cam: exact values on conv -> GAP -> Dense models."""

import functools

import numpy as np
import pytest
import tiny_models
from hypothesis import given
from hypothesis import strategies as st

from keras_fer_viz.grad_cam import (
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    XGradCAM,
)

X = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)


def weights(model):
    kernel, bias = model.get_layer("conv").get_weights()
    w, b = model.get_layer("dense").get_weights()
    return kernel, bias, w, b


def class_activation_map(model, x, target):
    """Zhou et al.'s CAM of a conv -> GAP -> Dense model, by hand: sum_k W[k, c] A_k."""
    kernel, bias, w, _ = weights(model)
    a = tiny_models.conv_reference(x, kernel, bias)
    return (a * w[:, target]).sum(axis=-1)


def normalized(m):
    m = np.maximum(m, 0)
    peak = m.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, m / np.where(peak > 0, peak, 1), 0)


@pytest.mark.parametrize("head", ["softmax", "layer", "linear"])
def test_grad_cam_exact_values(head):
    model = tiny_models.conv_gap_dense(head)
    for target in range(3):
        raw = GradCAM(model, "conv", normalize=False).explain(X, target=target)
        # The gradient of the logit with respect to A_k is W[k, c] / (h * w).
        expected = class_activation_map(model, X, target) / 16
        np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6)
        maps = GradCAM(model, "conv").explain(X, target=target)
        np.testing.assert_allclose(maps, normalized(expected), rtol=1e-5, atol=1e-6)


def test_grad_cam_values_on_arange():
    """The hand computation itself, for the all-ones filter and class 2."""
    model = tiny_models.conv_gap_dense("softmax", filters=1)
    raw = GradCAM(model, "conv", normalize=False).explain(X, target=2)
    # 3x3 box sums of arange(16) with zero padding, times W[0, 2] = 1, / 16.
    box = np.array([[10, 18, 24, 18], [27, 45, 54, 39], [51, 81, 90, 63], [42, 66, 72, 50]])
    np.testing.assert_allclose(raw[0], box / 16, rtol=1e-6)


@pytest.mark.parametrize("head", ["softmax", "linear"])
def test_grad_cam_plus_plus_exact_values(head):
    model = tiny_models.conv_gap_dense(head)
    kernel, bias, w, _ = weights(model)
    a = tiny_models.conv_reference(X, kernel, bias)[0]  # (4, 4, K)
    for target in range(3):
        g = w[:, target] / 16  # constant over space for each map
        alpha = g**2 / np.where(
            2 * g**2 + a.sum((0, 1)) * g**3 != 0, 2 * g**2 + a.sum((0, 1)) * g**3, 1
        )
        alpha = np.where(2 * g**2 + a.sum((0, 1)) * g**3 != 0, alpha, 0)
        weight = 16 * alpha * np.maximum(g, 0)
        expected = (a * weight).sum(-1)
        raw = GradCAMPlusPlus(model, "conv", normalize=False).explain(X, target=target)
        np.testing.assert_allclose(raw[0], expected, rtol=1e-5, atol=1e-6)


@given(seed=st.integers(0, 2**16), target=st.integers(0, 2), image_seed=st.integers(0, 2**16))
def test_grad_cam_equals_the_class_activation_map(seed, target, image_seed):
    """On logits of conv -> GAP -> Dense, Grad-CAM, XGradCAM, HiResCAM are CAM, normalised."""
    model = tiny_models.conv_gap_dense("softmax", filters=3, size=6, seed=seed)
    x = np.random.default_rng(image_seed).normal(size=(2, 6, 6, 1)).astype("float32")
    expected = normalized(class_activation_map(model, x, target))
    kernel, bias, _, _ = weights(model)
    # XGradCAM gives a dead filter (activations summing to 0) weight 0 by definition.
    dead = (tiny_models.conv_reference(x, kernel, bias).sum(axis=(1, 2)) == 0).any()
    for cls in (GradCAM, HiResCAM) if dead else (GradCAM, HiResCAM, XGradCAM):
        maps = cls(model, "conv").explain(x, target=target)
        np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-5, err_msg=cls.__name__)


@functools.cache
def smooth_explainers():
    """One explainer per CAM method on one model, built once for every example."""
    model = tiny_models.smooth_cnn((10, 10, 1))
    return [
        cls(model, "conv1")
        for cls in (GradCAM, GradCAMPlusPlus, XGradCAM, HiResCAM, LayerCAM, EigenCAM)
    ]


@given(n=st.integers(1, 5), per_call=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_maps_have_input_shape_range_and_batch_independence(n, per_call, seed):
    x = np.random.default_rng(seed).normal(size=(n, 10, 10, 1)).astype("float32") * 20
    for explainer in smooth_explainers():
        maps = explainer.explain(x)
        assert maps.shape == (n, 10, 10) and maps.dtype == np.float32
        assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
        np.testing.assert_allclose(explainer.explain(x, batch_size=per_call), maps, atol=1e-5)


def test_upsampling_to_the_input_size():
    model = tiny_models.smooth_cnn((16, 16, 1))
    import keras

    pooled = keras.Sequential(
        [keras.Input((16, 16, 1)), keras.layers.MaxPooling2D(4, name="pool"), *model.layers[1:]]
    )
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype("float32")
    cam = GradCAM(pooled, "conv2")
    assert cam.explain(x).shape == (2, 16, 16)
    raw = GradCAM(pooled, "conv2", normalize=False).explain(x)
    assert raw.shape == (2, 4, 4)
    big = cam.explain(x)
    # Bilinear upsampling: each 4x4 block's centre region follows the coarse map.
    coarse = normalized(raw)
    assert np.corrcoef(big[:, 1::4, 1::4].ravel(), coarse.ravel())[0, 1] > 0.9


def test_another_class_changes_the_map():
    model = tiny_models.conv_gap_dense("softmax")
    x = np.random.default_rng(3).normal(size=(2, 4, 4, 1)).astype("float32")
    for cls in (GradCAM, GradCAMPlusPlus, XGradCAM, HiResCAM, LayerCAM):
        a = cls(model, "conv", normalize=False).explain(x, target=0)
        b = cls(model, "conv", normalize=False).explain(x, target=2)
        assert np.abs(a - b).max() > 0.01


def test_layer_errors():
    model = tiny_models.conv_gap_dense("softmax")
    with pytest.raises(ValueError, match=r"spatial output \(N, h, w, C\).*'dense'.*\['conv'\]"):
        GradCAM(model, "dense")
    with pytest.raises(ValueError, match="No layer named 'convv'.*Did you mean"):
        GradCAMPlusPlus(model, "convv")
    with pytest.raises(ValueError, match="no convolution layer"):
        GradCAM(tiny_models.linear())


@pytest.mark.parametrize("head", ["softmax", "layer", "linear"])
def test_xgrad_cam_hires_cam_and_layer_cam_exact_values(head):
    """On conv -> GAP -> Dense the logit's gradient at A_k is W[k, c] / (h w) everywhere.

    So XGradCAM's weight (sum A g / sum A) and HiResCAM's sum_k g A are both
    CAM / (h w), and LayerCAM's sum_k ReLU(g) A is CAM with the positive
    weights only, / (h w).
    """
    model = tiny_models.conv_gap_dense(head, filters=3, size=5, seed=7)
    x = np.random.default_rng(1).normal(size=(3, 5, 5, 1)).astype("float32")
    kernel, bias, w, _ = weights(model)
    a = tiny_models.conv_reference(x, kernel, bias)
    for target in range(3):
        cam = class_activation_map(model, x, target) / 25
        positive = (a * np.maximum(w[:, target], 0)).sum(-1) / 25
        # XGradCAM gives weight 0 to a map whose activations sum to 0 (a dead filter).
        alive = a.sum(axis=(1, 2)) != 0  # (N, K)
        xgrad = (a * (w[:, target] * alive)[:, None, None, :]).sum(-1) / 25
        for cls, expected in ((XGradCAM, xgrad), (HiResCAM, cam), (LayerCAM, positive)):
            raw = cls(model, "conv", normalize=False).explain(x, target=target)
            np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6, err_msg=cls.__name__)
            maps = cls(model, "conv").explain(x, target=target)
            np.testing.assert_allclose(maps, normalized(expected), rtol=1e-5, atol=1e-5)


def eigen_reference(a):
    """Eigen-CAM by hand with numpy's SVD: (N, h, w, K) activations -> (N, h, w)."""
    out = []
    for act in a:
        flat = act.reshape(-1, act.shape[-1]).astype("float64")
        centred = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        projection = centred @ vt[0]
        mean = flat.mean(axis=1)
        if (projection * (mean - mean.mean())).sum() < 0:
            projection = -projection
        out.append(projection.reshape(act.shape[:2]))
    return np.array(out)


@pytest.mark.parametrize(("filters", "size"), [(3, 5), (40, 4)])  # both Gram matrices
def test_eigen_cam_is_the_first_principal_component(filters, size):
    model = tiny_models.conv_gap_dense("softmax", filters=filters, size=size, seed=3)
    x = np.random.default_rng(2).normal(size=(3, size, size, 1)).astype("float32") + 1.0
    kernel, bias, _, _ = weights(model)
    expected = eigen_reference(tiny_models.conv_reference(x, kernel, bias))
    raw = EigenCAM(model, "conv", normalize=False).explain(x)
    np.testing.assert_allclose(raw, expected, rtol=1e-3, atol=1e-4)
    assert np.ptp(raw.reshape(3, -1), axis=1).min() > 0  # not constant
    # Class-agnostic: every target gives the same map.
    for target in range(3):
        np.testing.assert_array_equal(
            EigenCAM(model, "conv").explain(x, target=target), EigenCAM(model, "conv").explain(x)
        )


def test_eigen_cam_needs_no_gradient_and_checks_targets():
    model = tiny_models.conv_gap_dense("softmax")
    with pytest.raises(ValueError, match=r"target classes in \[0, 3\)"):
        EigenCAM(model, "conv").explain(X, target=3)
