"""Tests of keras_fer_viz.metrics: curves, randomisation and ground-truth scores by hand."""

import keras
import numpy as np
import pytest
import tiny_models

import keras_fer_viz as kfv
from keras_fer_viz.metrics import (
    deletion_curve,
    evidence_scores,
    insertion_curve,
    random_maps,
    randomization_check,
    spearman,
)
from keras_fer_viz.report import trust_ranking


def two_by_two():
    """p(class 1) = softmax([0, w . x])[1] on a 2x2 image."""
    inputs = keras.Input((2, 2, 1))
    dense = keras.layers.Dense(2, activation="softmax")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    dense.set_weights(
        [np.array([[0, 1.0], [0, 2.0], [0, -1.0], [0, 0.5]], "float32"), np.zeros(2, "float32")]
    )
    return model


def p1(x):
    z = x.reshape(len(x), -1) @ np.array([1.0, 2.0, -1.0, 0.5])
    return 1 / (1 + np.exp(-z))


def test_deletion_and_insertion_by_hand():
    model = two_by_two()
    x = np.array([[1.0, 1.0], [1.0, 1.0]], "float32").reshape(1, 2, 2, 1)
    maps = np.array([[[0.2, 0.9], [0.1, 0.5]]], "float32")  # order: pixel 1, 3, 0, 2
    curve = deletion_curve(model, x, maps, target=1, steps=4, fill=0.0)
    expected = []
    kept = np.ones(4)
    expected.append(p1(kept.reshape(1, 2, 2))[0])
    for pixel in (1, 3, 0, 2):
        kept[pixel] = 0
        expected.append(p1(kept.reshape(1, 2, 2))[0])
    np.testing.assert_allclose(curve.scores[0], expected, rtol=1e-5)
    np.testing.assert_allclose(curve.fractions, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(curve.auc, np.trapezoid(expected, curve.fractions), rtol=1e-6)
    assert curve.kind == "deletion" and curve.targets.tolist() == [1]

    insertion = insertion_curve(model, x, maps, target=1, steps=4, fill=0.0)
    shown = np.zeros(4)
    expected = [p1(shown.reshape(1, 2, 2))[0]]
    for pixel in (1, 3, 0, 2):
        shown[pixel] = 1
        expected.append(p1(shown.reshape(1, 2, 2))[0])
    np.testing.assert_allclose(insertion.scores[0], expected, rtol=1e-5)


def test_the_models_own_weights_beat_random_order_on_deletion():
    model = tiny_models.linear((4, 4, 1), classes=2, seed=3)
    w = (
        model.get_layer("dense").get_weights()[0][:, 1]
        - model.get_layer("dense").get_weights()[0][:, 0]
    )
    x = np.random.default_rng(0).uniform(0.5, 1.5, (6, 4, 4, 1)).astype("float32")
    contribution = np.maximum(w.reshape(4, 4) * x[..., 0], 0)  # what each pixel adds to class 1
    weights_map = deletion_curve(model, x, contribution, target=1, steps=16, fill=0.0)
    randoms = [
        deletion_curve(model, x, random_maps(x, seed), target=1, steps=16, fill=0.0)
        for seed in range(5)
    ]
    assert weights_map.mean_auc < min(r.mean_auc for r in randoms)
    assert (weights_map.auc <= np.mean([r.auc for r in randoms], axis=0)).all()


def test_curves_are_batch_independent_and_check_their_input():
    model = two_by_two()
    x = np.random.default_rng(1).normal(size=(5, 2, 2, 1)).astype("float32")
    maps = random_maps(x, 2)
    a = deletion_curve(model, x, maps, steps=4, batch_size=5)  # one image per call
    b = deletion_curve(model, x, maps, steps=4)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    with pytest.raises(ValueError, match=r"one \(H, W\) map per image: shape \(5, 2, 2\)"):
        deletion_curve(model, x, maps[:3])
    with pytest.raises(ValueError, match="fill 'mean', 'blur' or a number"):
        deletion_curve(model, x, maps, fill="black")
    with pytest.raises(ValueError, match="positive int `steps`"):
        insertion_curve(model, x, maps, steps=0)


def pixel_model(shape, seed=0):
    """p = softmax(W . x) with small random W: every pixel's value moves it.

    Unlike `fer_cnn`, which standardises each image (so every constant fill,
    the mean or a number, reads the same), this model tells a wrong constant
    or a blur of the wrong width from the right one.
    """
    model = tiny_models.linear(shape, classes=2, seed=seed)
    dense = model.get_layer("dense")
    w, b = dense.get_weights()
    dense.set_weights([0.1 * w, np.zeros_like(b)])
    return model


def filled_by_hand(x, fill):
    """The fully filled images, computed without keras_fer_viz.metrics."""
    from skimage.filters import gaussian

    if fill == "mean":  # each image's own mean, over all its pixels and channels
        return np.stack([np.full(image.shape, image.mean()) for image in x])
    if fill == "blur":  # the documented width: max(1, H / 12), 4 pixels on 48x48
        sigma = max(1.0, x.shape[1] / 12)
        return np.stack(
            [gaussian(image, sigma=sigma, channel_axis=-1, preserve_range=True) for image in x]
        )
    return np.full(x.shape, float(fill))


def first_pixels_from(base, source, maps, share):
    """`base` with its most relevant `share` of pixels (in the maps' order) from `source`."""
    out = base.copy()
    count = round(share * maps[0].size)
    for i in range(len(base)):
        rows, cols = np.unravel_index(np.argsort(-maps[i].ravel())[:count], maps.shape[1:])
        out[i, rows, cols, :] = source[i, rows, cols, :]
    return out


@pytest.mark.parametrize(
    "fill, shape",
    [
        ("mean", (24, 24, 1)),
        ("mean", (8, 10, 3)),
        ("blur", (36, 36, 1)),  # sigma 3
        ("blur", (24, 24, 1)),  # sigma 2
        ("blur", (8, 10, 3)),  # H / 12 < 1: sigma 1; channels blurred apart
        (0.25, (24, 24, 1)),
        (1, (8, 10, 3)),  # an int
    ],
)
def test_fills_against_a_hand_built_curve(fill, shape):
    model = pixel_model(shape)
    rng = np.random.default_rng(3)
    # Images with different means: the mean fill must be each image's own.
    x = (rng.uniform(0, 1, (3, *shape)) + np.array([0.0, 0.3, 0.6]).reshape(3, 1, 1, 1)).astype(
        "float32"
    )
    # Well-separated map values: the order of the pixels is beyond doubt.
    maps = np.stack([rng.permutation(shape[0] * shape[1]).reshape(shape[:2]) for _ in x])
    maps = maps.astype("float32") / maps.size
    targets = np.array([1, 0, 1])
    filled = filled_by_hand(x, fill).astype("float32")

    def p(images):
        return model.predict(images.astype("float32"), verbose=0)[np.arange(len(x)), targets]

    fractions = np.linspace(0, 1, 5)
    deletion = deletion_curve(model, x, maps, target=targets, steps=4, fill=fill)
    insertion = insertion_curve(model, x, maps, target=targets, steps=4, fill=fill)
    expected_deletion = np.stack([p(first_pixels_from(x, filled, maps, f)) for f in fractions], 1)
    expected_insertion = np.stack([p(first_pixels_from(filled, x, maps, f)) for f in fractions], 1)
    np.testing.assert_allclose(deletion.scores, expected_deletion, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(insertion.scores, expected_insertion, rtol=1e-4, atol=1e-6)
    # All removed, or none revealed: the model sees the fill alone.
    np.testing.assert_allclose(deletion.scores[:, -1], p(filled), rtol=1e-4)
    np.testing.assert_allclose(insertion.scores[:, 0], p(filled), rtol=1e-4)
    assert deletion.targets.tolist() == insertion.targets.tolist() == targets.tolist()

    # The oracle is sharp enough to catch a near miss: a fill off by a little
    # (the batch's mean, a blur one pixel wider, a number 0.1 away) moves the
    # fully filled probabilities ten times beyond the tolerance above.
    if fill == "mean":
        near = np.full(x.shape, x.mean())
    elif fill == "blur":
        from skimage.filters import gaussian

        sigma = max(1.0, shape[0] / 12) + 1
        near = np.stack(
            [gaussian(image, sigma=sigma, channel_axis=-1, preserve_range=True) for image in x]
        )
    else:
        near = filled + 0.1
    assert (np.abs(p(near) - p(filled)) > 10 * (1e-6 + 1e-4 * p(filled))).any()


def test_the_default_fills_are_the_mean_for_deletion_and_a_blur_for_insertion():
    shape = (24, 24, 1)
    model = pixel_model(shape, seed=1)
    x = np.random.default_rng(4).uniform(0, 1, (2, *shape)).astype("float32")
    x[1] += 0.5
    maps = random_maps(x, 5)
    deletion = deletion_curve(model, x, maps, target=1, steps=2)
    insertion = insertion_curve(model, x, maps, target=1, steps=2)

    def p(images):
        return model.predict(images.astype("float32"), verbose=0)[:, 1]

    np.testing.assert_allclose(deletion.scores[:, -1], p(filled_by_hand(x, "mean")), rtol=1e-4)
    np.testing.assert_allclose(insertion.scores[:, 0], p(filled_by_hand(x, "blur")), rtol=1e-4)
    # The untouched image at the other end of each curve.
    np.testing.assert_allclose(deletion.scores[:, 0], p(x), rtol=1e-4)
    np.testing.assert_allclose(insertion.scores[:, -1], p(x), rtol=1e-4)


def test_evidence_scores_by_hand():
    evidence = np.zeros((3, 2, 2), bool)
    evidence[:, 0, 0] = True
    maps = np.array([[[4, 0], [0, 0]], [[0, 1], [1, 2]], [[0, 0], [0, 0]]], float)
    scores = evidence_scores(maps, evidence)
    np.testing.assert_allclose(scores.pointing, [1, 0, 0.25])  # blank map: a tie of 4
    np.testing.assert_allclose(scores.mass, [1, 0, 0.25])  # blank map: chance
    np.testing.assert_allclose(scores.chance, 0.25)


def test_a_constant_map_scores_at_chance():
    faces = kfv.synthetic_faces(14)
    scores = evidence_scores(np.ones((14, 48, 48)), faces.evidence)
    np.testing.assert_allclose(scores.pointing, scores.chance)
    np.testing.assert_allclose(scores.mass, scores.chance)
    with pytest.raises(ValueError, match="maps >= 0"):
        evidence_scores(-np.ones((14, 48, 48)), faces.evidence)
    with pytest.raises(ValueError, match="same shape"):
        evidence_scores(np.ones((2, 48, 48)), faces.evidence)


def test_spearman():
    a = np.arange(16.0).reshape(1, 4, 4)
    np.testing.assert_allclose(spearman(a, a), [1.0])
    np.testing.assert_allclose(spearman(a, -a), [-1.0])
    b = np.array([[1, 2, 2, 3]], float)
    c = np.array([[1, 3, 2, 4]], float)
    from scipy.stats import spearmanr

    np.testing.assert_allclose(spearman(b, c), [spearmanr(b[0], c[0]).statistic])
    np.testing.assert_allclose(spearman(np.zeros((1, 4)), c), [0.0])


def test_spearman_ignores_rounding_noise_under_1e_4_of_the_maximum():
    # A near-flat map, as a randomised model gives: one peak, the rest 0.5
    # +- 1e-6, whose order is rounding noise. Noise of 3e-5 of the maximum
    # (seen between backends) must not change its correlation with anything
    # (0.5 is a rounding point, not a boundary: +-3e-5 rounds back to it).
    rng = np.random.default_rng(0)
    flat = 0.5 + rng.normal(scale=1e-6, size=(1, 64))
    flat[0, 0] = 1.0
    other = rng.uniform(size=(1, 64))
    noisy = flat + rng.uniform(-3e-5, 3e-5, size=flat.shape)
    noisy[0, 0] = 1.0
    from scipy.stats import spearmanr

    peak_only = (np.arange(64) == 0).astype(float)  # what the map ranks, at 1e-4
    expected = spearmanr(peak_only, other[0]).statistic
    np.testing.assert_allclose(spearman(flat, other), [expected], rtol=1e-12)
    np.testing.assert_allclose(spearman(noisy, other), [expected], rtol=1e-12)
    # Differences above the resolution still rank: a ramp of step 1e-3.
    ramp = 1.0 + 1e-3 * np.arange(64.0)[None]
    np.testing.assert_allclose(spearman(ramp, ramp[:, ::-1]), [-1.0])


def test_randomization_works_on_a_copy():
    model = kfv.fer_cnn(width=0.125)
    weights = [w.copy() for w in model.get_weights()]
    seen = []

    def factory(m):
        seen.append(m)
        return kfv.Saliency(m)

    faces = kfv.synthetic_faces(3)
    result = randomization_check(factory, model, faces.images, seed=1)
    assert seen[0] is not model
    for a, b in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    convs = [f"block{b}_conv{i}" for b in (3, 2, 1) for i in (2, 1)]
    assert result.layers == ["predictions", "dense3", "dense2", "dense1", *convs]
    assert result.maps.shape == (11, 3, 48, 48)
    assert result.spearman.shape == result.ssim.shape == (10, 3)
    np.testing.assert_allclose(result.maps[0], kfv.Saliency(model).explain(faces.images), atol=1e-5)


def test_randomizing_a_linear_model_gives_a_new_map():
    model = tiny_models.linear((6, 6, 1), classes=2, seed=0, softmax=False)
    x = np.ones((2, 6, 6, 1), "float32")
    result = randomization_check(kfv.Saliency, model, x, target=0, seed=4)
    assert result.layers == ["dense"]
    new = np.abs(result.maps[1])
    assert abs(result.final_spearman) < 0.5  # |W| and |new W| are unrelated
    assert np.isclose(new.max(), 1.0)
    with pytest.raises(ValueError, match=r"Layers \['nope'\] are not in model"):
        randomization_check(kfv.Saliency, model, x, layers=["nope"])


@pytest.mark.parametrize(
    "initializer, std",
    [
        ("glorot_uniform", np.sqrt(2 / (3 * 3 * 4 + 3 * 3 * 8))),
        ("he_normal", np.sqrt(2 / (3 * 3 * 4))),
        (keras.initializers.RandomNormal(stddev=0.3), 0.3),
        ("zeros", np.sqrt(2 / (3 * 3 * 4 + 3 * 3 * 8))),  # zeros: drawn like Glorot
    ],
)
def test_new_weights_follow_the_layers_initializer_with_numpy(initializer, std):
    from keras_fer_viz.metrics import _reinitialize

    layer = keras.layers.Conv2D(8, 3, kernel_initializer=initializer)
    layer.build((None, 16, 16, 4))
    _reinitialize(layer, seed=3)
    kernel, bias = (keras.ops.convert_to_numpy(v) for v in layer.weights)
    assert abs(kernel.std() / std - 1) < 0.15
    assert 0.03 < bias.std() < 0.07  # zero bias replaced by N(0, 0.05)
    again = keras.layers.Conv2D(8, 3, kernel_initializer=initializer)
    again.build((None, 16, 16, 4))
    _reinitialize(again, seed=3)  # numpy draws: the same weights on every backend
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again.kernel), kernel)


def test_trust_ranking():
    trust = {
        "a": {"deletion": 0.1, "insertion": 0.9, "randomization": 0.1},
        "b": {"deletion": 0.3, "insertion": 0.8, "randomization": 0.9},
        "c": {"deletion": 0.2, "insertion": 0.95},
        "random": {"deletion": 0.5, "insertion": 0.5},
    }
    ranking = trust_ranking(trust)
    assert [name for name, _, _ in ranking] == ["a", "c", "b"]
    assert ranking[0][1] == pytest.approx((1 + 2 + 1) / 3)
    assert ranking[1][1] == pytest.approx((2 + 1) / 2)
