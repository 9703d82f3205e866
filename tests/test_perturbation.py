"""Tests of keras_fer_viz.perturbation: Occlusion and Score-CAM against numpy oracles."""

import keras
import numpy as np
import pytest
import tiny_models
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_fer_viz as kfv
from keras_fer_viz.perturbation import Occlusion, ScoreCAM

SHAPE = (7, 6, 1)  # not square: a swapped row and column would show


@pytest.fixture(scope="module")
def linear():
    """Flatten -> Dense(3), no softmax: the logit is sum(W[:, c] * x) + b."""
    return tiny_models.linear(SHAPE, classes=3, seed=0, softmax=False)


def images(seed, n=2, shape=SHAPE):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


def kernel(model):
    w, b = model.get_layer("dense").get_weights()
    return w.reshape(*SHAPE, -1), b


def occlusion_oracle(contribution, patch, stride):
    """Per-pixel mean, over the windows covering it, of the window's summed contribution.

    `contribution` (N, H, W): each pixel's share of the score drop when hidden.
    """
    n, h, w = contribution.shape

    def starts(size):
        out = list(range(0, size - patch + 1, stride))
        return out if out[-1] == size - patch else [*out, size - patch]

    total, count = np.zeros((n, h, w)), np.zeros((h, w))
    for r in starts(h):
        for c in starts(w):
            window = (slice(None), slice(r, r + patch), slice(c, c + patch))
            total[window] += contribution[window].sum(axis=(1, 2), keepdims=True)
            count[window[1:]] += 1
    assert (count > 0).all()
    return total / count


def test_occlusion_with_stride_equal_to_patch_is_the_patch_sum(linear):
    # 6x6 images tile exactly into 3x3 patches: each pixel's value is the sum
    # of W[:, c] * x over its own patch, written here with a block reshape.
    model = tiny_models.linear((6, 6, 1), classes=3, seed=1, softmax=False)
    w = model.get_layer("dense").get_weights()[0].reshape(6, 6, 3)
    x = images(1, n=2, shape=(6, 6, 1))
    raw = Occlusion(model, patch=3, stride=3, normalize=False).explain(x, target=[0, 2])
    for i, c in enumerate([0, 2]):
        terms = w[..., c] * x[i, ..., 0]
        blocks = terms.reshape(2, 3, 2, 3).sum(axis=(1, 3))
        np.testing.assert_allclose(raw[i], np.kron(blocks, np.ones((3, 3))), rtol=1e-5, atol=1e-5)


def test_occlusion_with_overlapping_windows_averages_them(linear):
    w, _ = kernel(linear)
    x = images(2, n=3)
    raw = Occlusion(linear, patch=3, stride=2, normalize=False).explain(x, target=1)
    expected = occlusion_oracle(w[..., 0, 1] * x[..., 0], patch=3, stride=2)
    np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-5)
    # The default map: the magnitude, scaled by each map's maximum.
    maps = Occlusion(linear, patch=3, stride=2).explain(x, target=1)
    positive = np.abs(expected)
    np.testing.assert_allclose(
        maps, positive / positive.max(axis=(1, 2), keepdims=True), rtol=1e-5, atol=1e-5
    )


def test_occlusion_map_of_an_image_no_patch_lowers_is_not_blank(linear):
    # Pixels whose contribution to the class is negative: hiding any window
    # raises the score, every raw value is < 0. A ReLU'd map would be all
    # zeros; the [0, 1] map is the magnitude, the raw map keeps the sign.
    w, _ = kernel(linear)
    x = (-np.sign(w[..., 1]) * np.abs(images(3, n=1)[0]))[None]  # w * x <= 0 everywhere
    raw = Occlusion(linear, patch=2, stride=1, normalize=False).explain(x, target=1)
    expected = occlusion_oracle(w[..., 0, 1] * x[..., 0], patch=2, stride=1)
    np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-5)
    assert (expected < 0).all()
    maps = Occlusion(linear, patch=2, stride=1).explain(x, target=1)
    np.testing.assert_allclose(
        maps, -expected / -expected.min(axis=(1, 2), keepdims=True), rtol=1e-5, atol=1e-5
    )
    assert maps.max() == pytest.approx(1.0) and maps.min() < 0.9


def test_occlusion_baseline(linear):
    w, _ = kernel(linear)
    x = images(3, n=2)
    scalar = Occlusion(linear, patch=2, stride=1, baseline=0.5, normalize=False)
    expected = occlusion_oracle(w[..., 0, 2] * (x[..., 0] - 0.5), patch=2, stride=1)
    np.testing.assert_allclose(scalar.explain(x, target=2), expected, rtol=1e-5, atol=1e-5)
    base = np.linspace(-1.0, 1.0, np.prod(SHAPE), dtype="float32").reshape(SHAPE)
    array = Occlusion(linear, patch=4, stride=3, baseline=base, normalize=False)
    expected = occlusion_oracle(w[..., 0, 0] * (x - base)[..., 0], patch=4, stride=3)
    np.testing.assert_allclose(array.explain(x, target=0), expected, rtol=1e-5, atol=1e-5)
    # Occluding with the image itself changes nothing.
    same = Occlusion(linear, patch=3, stride=2, baseline=x[0], normalize=False)
    np.testing.assert_allclose(same.explain(x[:1]), 0.0, atol=1e-5)


def test_occlusion_of_the_probability():
    # The linear model with a softmax head: "probability" is its output.
    model = tiny_models.linear(SHAPE, classes=3, seed=0, softmax=True)
    w, b = kernel(model)
    x = images(4, n=1)

    def probability(z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    flat_w = w.reshape(-1, 3)
    clean = probability(x.reshape(1, -1) @ flat_w + b)[0, 1]
    expected, count = np.zeros(SHAPE[:2]), np.zeros(SHAPE[:2])
    for r in (0, 2, 4, 5):  # patch 2, stride 2 on 7 rows: the last window flush
        for c in (0, 2, 4):
            hidden = x[0].copy()
            hidden[r : r + 2, c : c + 2] = 0.0
            drop = clean - probability(hidden.reshape(1, -1) @ flat_w + b)[0, 1]
            expected[r : r + 2, c : c + 2] += drop
            count[r : r + 2, c : c + 2] += 1
    raw = Occlusion(model, patch=2, stride=2, score="probability", normalize=False)
    np.testing.assert_allclose(raw.explain(x, target=1)[0], expected / count, atol=1e-6)


def test_occlusion_is_independent_of_the_batch_size(linear):
    x = images(5, n=3)
    maps = {
        size: Occlusion(linear, patch=3, stride=1, batch_size=size).explain(x)
        for size in (1, 7, None)
    }
    np.testing.assert_allclose(maps[1], maps[None], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(maps[7], maps[None], rtol=1e-6, atol=1e-6)
    # 20 windows in chunks of 7 (the last padded): one compiled shape.
    occlusion = Occlusion(linear, patch=3, stride=1)
    occlusion.explain(x, batch_size=7)
    assert occlusion._drops.trace_count() <= 1


def test_occlusion_targets(linear):
    x = images(6, n=4)
    occlusion = Occlusion(linear, patch=3, stride=2)
    maps = [occlusion.explain(x, target=c) for c in range(3)]
    assert np.abs(maps[0] - maps[1]).max() > 0.1 and np.abs(maps[1] - maps[2]).max() > 0.1
    predicted = np.argmax(keras.ops.convert_to_numpy(linear(x)), axis=1)
    np.testing.assert_array_equal(occlusion.explain(x), occlusion.explain(x, target=predicted))


# Each example compiles a new explainer (about 0.5 s): 10 examples at most.
@settings(max_examples=min(10, settings.default.max_examples))
@given(
    seed=st.integers(0, 2**16),
    patch=st.integers(1, 6),
    share=st.floats(0.0, 1.0),
    target=st.integers(0, 2),
    base=st.floats(-2.0, 2.0),
)
def test_occlusion_of_a_linear_model_matches_the_oracle(linear, seed, patch, share, target, base):
    stride = max(1, round(share * patch))
    w, _ = kernel(linear)
    x = images(seed, n=2)
    raw = Occlusion(linear, patch, stride, base, normalize=False).explain(x, target=target)
    expected = occlusion_oracle(w[..., 0, target] * (x[..., 0] - base), patch, stride)
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-4)


def test_occlusion_errors(linear):
    with pytest.raises(ValueError, match=r"patch <= 6. Received: patch=7"):
        Occlusion(linear, patch=7, stride=2)
    with pytest.raises(ValueError, match="positive int `stride`. Received: 0"):
        Occlusion(linear, patch=3, stride=0)
    with pytest.raises(ValueError, match="positive int `patch`. Received: 2.5"):
        Occlusion(linear, patch=2.5)
    with pytest.raises(ValueError, match="stride <= patch.*Received: patch=2, stride=3"):
        Occlusion(linear, patch=2, stride=3)
    with pytest.raises(ValueError, match=r"baseline broadcastable to the input shape \(7, 6, 1\)"):
        Occlusion(linear, patch=4, baseline=np.zeros((3, 3)))


# Score-CAM ---------------------------------------------------------------------------------

KERNEL = np.array([[[[1.0, -1.0, 0.0]]]], "float32")  # 1x1 conv: x, -x, and a constant
BIAS = np.array([0.0, 0.5, 1.0], "float32")
DENSE = np.array([[2.0, -1.0, 0.0], [-1.0, 3.0, 0.5], [0.5, 0.5, -2.0]], "float32")
DENSE_BIAS = np.array([0.1, -0.2, 0.0], "float32")


@pytest.fixture(scope="module")
def pooled():
    """(4, 4, 1) -> 1x1 conv (3 channels, ReLU) -> 2x2 average pool -> GAP -> Dense softmax."""
    inputs = keras.Input((4, 4, 1))
    conv = keras.layers.Conv2D(3, 1, activation="relu", name="conv")
    pool = keras.layers.AveragePooling2D(2, name="pool")
    dense = keras.layers.Dense(3, activation="softmax", name="dense")
    out = dense(keras.layers.GlobalAveragePooling2D()(pool(conv(inputs))))
    conv.set_weights([KERNEL, BIAS])
    dense.set_weights([DENSE, DENSE_BIAS])
    return keras.Model(inputs, out, name="pooled")


def conv_np(x):
    return np.maximum(x * KERNEL[0, 0, 0] + BIAS, 0.0)  # (n, 4, 4, 3)


def probabilities_np(x):
    z = conv_np(x).mean(axis=(1, 2)) @ DENSE + DENSE_BIAS
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def upsample_2x_np(a):
    """Bilinear 2x upsampling with half-pixel centres, edges clamped: (n, h, w) -> (n, 2h, 2w)."""

    def axis(size):
        src = np.clip((np.arange(2 * size) + 0.5) / 2 - 0.5, 0, size - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, size - 1)
        m = np.zeros((2 * size, size))
        m[np.arange(2 * size), lo] += 1 - (src - lo)
        m[np.arange(2 * size), hi] += src - lo
        return m

    return np.einsum("Hh,nhw,Ww->nHW", axis(a.shape[1]), a, axis(a.shape[2]))


def score_cam_oracle(x, activations, target, upsample):
    """Score-CAM raw maps, step by step in numpy: masks, masked probabilities as weights."""
    maps = []
    for i in range(len(x)):
        raw = np.zeros(activations.shape[1:3])
        for k in range(activations.shape[-1]):
            a = activations[i, ..., k]
            up = upsample(a[None])[0]
            mask = np.zeros_like(up) if a.max() == a.min() else (up - up.min()) / np.ptp(up)
            masked = x[i : i + 1] * mask[None, ..., None]
            weight = probabilities_np(masked)[0, target[i]]
            raw += weight * a
        maps.append(raw)
    return np.stack(maps)


def test_score_cam_by_hand(pooled):
    x = np.abs(images(7, n=3, shape=(4, 4, 1))) + 0.1  # x >= 0: channel 1 has zeros
    x[2, :, :2] = 0.0  # image 2: channel 0 half zero, channel 1 mostly at its bias
    target = np.array([0, 1, 2])
    conv = conv_np(x)
    raw = ScoreCAM(pooled, layer="conv", normalize=False).explain(x, target=target)
    expected = score_cam_oracle(x, conv, target, upsample=lambda a: a)
    np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6)
    # Through the 2x2 pool: masks are the pooled maps upsampled to 4x4.
    pooled_maps = conv.reshape(3, 2, 2, 2, 2, 3).mean(axis=(2, 4))
    raw = ScoreCAM(pooled, layer="pool", normalize=False).explain(x, target=target)
    expected = score_cam_oracle(x, pooled_maps, target, upsample=upsample_2x_np)
    assert raw.shape == (3, 2, 2)
    np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6)
    # The default map: ReLU, bilinear upsampling to 4x4, scaled to [0, 1].
    maps = ScoreCAM(pooled, layer="pool").explain(x, target=target)
    up = upsample_2x_np(np.maximum(expected, 0))
    peak = up.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(
        maps, np.where(peak > 0, up / np.where(peak > 0, peak, 1), 0), atol=1e-5
    )


def test_score_cam_on_logits_takes_their_softmax(pooled):
    # The same network with a linear head: "logit" softmaxes its outputs, so
    # the weights are those of the softmax model; "probability" takes the raw
    # outputs as they are and gives other weights.
    inputs = keras.Input((4, 4, 1))
    conv = keras.layers.Conv2D(3, 1, activation="relu", name="conv")
    dense = keras.layers.Dense(3, name="dense")
    out = dense(keras.layers.GlobalAveragePooling2D()(conv(inputs)))
    conv.set_weights([KERNEL, BIAS])
    dense.set_weights([DENSE, DENSE_BIAS])
    logits_model = keras.Model(inputs, out)
    x = np.abs(images(8, n=2, shape=(4, 4, 1)))
    a = ScoreCAM(pooled, layer="conv", normalize=False).explain(x, target=1)
    b = ScoreCAM(logits_model, layer="conv", normalize=False).explain(x, target=1)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    c = ScoreCAM(logits_model, layer="conv", score="probability", normalize=False)
    assert np.abs(c.explain(x, target=1) - a).max() > 1e-3


def test_score_cam_is_independent_of_the_batch_size(pooled):
    x = np.abs(images(9, n=3, shape=(4, 4, 1)))
    score_cam = ScoreCAM(pooled, layer="conv", normalize=False)
    # 3 channels in chunks of 2, the last padded with a dummy: one compiled shape.
    two = score_cam.explain(x[:1], batch_size=2)
    assert score_cam._weighted.trace_count() <= 1
    raw = score_cam.explain(x)
    np.testing.assert_allclose(two, raw[:1], rtol=1e-6, atol=1e-7)
    for size in (1, 6):  # one channel per call; two images per call
        np.testing.assert_allclose(score_cam.explain(x, batch_size=size), raw, rtol=1e-6, atol=1e-7)


def test_score_cam_on_the_trained_fer_cnn(fixture_model):
    """The small trained fer_cnn(width=0.25) of tests/fixtures on synthetic faces."""
    faces = kfv.synthetic_faces(6, seed=3)
    score_cam = ScoreCAM(fixture_model)
    assert score_cam.layer.name == "block3_conv2" and score_cam.overlay and score_cam.signed
    maps = score_cam.explain(faces.images)
    assert maps.shape == (6, 48, 48) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    assert np.allclose(maps.max(axis=(1, 2)), 1.0) and (maps.std(axis=(1, 2)) > 0.05).all()
    # The faces' drawn evidence (the parts that make the expression) gets more.
    assert maps[faces.evidence].mean() > maps[~faces.evidence].mean() + 0.05
    predicted = fixture_model.predict(faces.images, verbose=0).argmax(axis=1)
    np.testing.assert_allclose(score_cam.explain(faces.images, target=predicted), maps, atol=1e-6)
    other = score_cam.explain(faces.images, target=(predicted + 1) % 7)
    assert (np.abs(other - maps).max(axis=(1, 2)) > 0.3).all()


def test_score_cam_errors(fixture_model):
    with pytest.raises(ValueError, match="spatial output.*'dense1'"):
        ScoreCAM(fixture_model, layer="dense1")
    with pytest.raises(ValueError, match="score 'logit' or 'probability'"):
        ScoreCAM(fixture_model, score="loss")


def test_registered():
    assert kfv.EXPLAINERS["occlusion"] is kfv.Occlusion is Occlusion
    assert kfv.EXPLAINERS["score_cam"] is kfv.ScoreCAM is ScoreCAM
