"""Tests of keras_fer_viz.lime: the lime package, grayscale-aware, fast and seeded."""

import keras
import numpy as np
import pytest

import keras_fer_viz as kfv
from keras_fer_viz.lime import SEGMENTATIONS, Lime, segment

to_numpy = keras.ops.convert_to_numpy


def left_half_model(channels=1, size=24):
    """p(class 1) grows with the mean brightness of the left half; the right half is ignored."""
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Cropping2D(((0, 0), (0, size // 2)))(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Lambda(lambda t: keras.ops.mean(t, axis=-1, keepdims=True))(x)
    dense = keras.layers.Dense(2, activation="softmax", name="dense")
    model = keras.Model(inputs, dense(x), name=f"left_half_{channels}")
    dense.set_weights([np.array([[-0.02, 0.02]], "float32"), np.array([2.0, -2.0], "float32")])
    return model


def noisy_image(channels=1, size=24, seed=0):
    rng = np.random.default_rng(seed)
    gray = rng.uniform(120, 255, (size, size, 1))
    return np.repeat(gray, channels, axis=-1).astype("float32")


@pytest.mark.parametrize("channels", [1, 3])
def test_weights_are_positive_where_the_model_looks(channels):
    model = left_half_model(channels)
    image = noisy_image(channels)
    lime = Lime(model, segmentation="grid", samples=1000, hide_color=0.0, verbose=0)
    (result,) = lime.explanations(image, target=1)
    columns = np.arange(24)[None, :].repeat(24, axis=0)
    left = np.array([(columns[result.segments == s] < 12).all() for s in range(49)])
    right = np.array([(columns[result.segments == s] >= 12).all() for s in range(49)])
    assert result.weights[left].min() > 0
    assert np.abs(result.weights[right]).mean() < 0.15 * result.weights[left].mean()
    assert result.score > 0.9 and result.target == 1
    np.testing.assert_allclose(result.probability, to_numpy(model(image[None]))[0, 1], rtol=1e-5)
    assert result.weights.shape == (49,) and result.segments.shape == (24, 24)
    # Target 0 is the mirror image: the same superpixels speak against it.
    (against,) = lime.explanations(image, target=0)
    assert against.weights[left].max() < 0


def test_explain_paints_the_positive_weights():
    model = left_half_model()
    lime = Lime(model, segmentation="grid", samples=300, hide_color=0.0, verbose=0)
    image = noisy_image()
    maps = lime.explain(image, target=1)
    (result,) = lime.explanations(image, target=1)
    assert maps.shape == (1, 24, 24) and maps.dtype == np.float32
    assert maps.max() == 1.0 and maps.min() == 0.0
    expected = np.maximum(result.weights, 0)[result.segments] / result.weights.max()
    np.testing.assert_allclose(maps[0], expected, rtol=1e-6)
    assert maps[0, :, 14:].max() < 0.1  # nothing on the ignored half


def test_same_seed_same_explanation_whatever_the_batch():
    model = kfv.fer_cnn(width=0.125)
    faces = kfv.synthetic_faces(3, seed=2)
    lime = Lime(model, samples=200, verbose=0)
    together = lime.explanations(faces.images, target=faces.labels)
    alone = lime.explanations(faces.images[1:2], target=faces.labels[1:2])
    np.testing.assert_array_equal(together[1].weights, alone[0].weights)
    np.testing.assert_array_equal(together[1].segments, alone[0].segments)
    again = Lime(model, samples=200, verbose=0).explanations(faces.images, target=faces.labels)
    for a, b in zip(together, again, strict=True):
        np.testing.assert_array_equal(a.weights, b.weights)
        assert a.intercept == b.intercept and a.score == b.score
    other = Lime(model, samples=200, seed=1, verbose=0).explanations(faces.images[:1])
    assert not np.array_equal(other[0].weights, together[0].weights)


@pytest.mark.parametrize("method", SEGMENTATIONS)
def test_superpixel_counts_on_faces(method):
    faces = kfv.synthetic_faces(35, seed=11)
    counts = [segment(image, method).max() + 1 for image in faces.images]
    assert 30 <= min(counts) and max(counts) <= 80, (method, min(counts), max(counts))


def test_segments_are_labelled_from_zero_without_gaps():
    image = kfv.synthetic_faces(1).images[0]
    for method in SEGMENTATIONS:
        labels = segment(image, method)
        assert labels.shape == (48, 48)
        np.testing.assert_array_equal(np.unique(labels), np.arange(labels.max() + 1))


def test_a_callable_segmentation_and_its_check():
    model = left_half_model()
    halves = Lime(
        model,
        segmentation=lambda im: (np.arange(24) >= 12)[None].repeat(24, 0) * 7,
        samples=100,
        hide_color=0.0,
        verbose=0,
    )
    (result,) = halves.explanations(noisy_image(), target=1)
    assert result.weights.shape == (2,) and result.weights[0] > 0
    bad = Lime(model, segmentation=lambda im: np.zeros((3, 3), int), samples=10, verbose=0)
    with pytest.raises(
        ValueError, match=r"int labels of shape \(24, 24\). Received: int64 \(3, 3\)"
    ):
        bad.explain(noisy_image())


def test_mask_marks_the_strongest_superpixels():
    model = left_half_model()
    lime = Lime(model, segmentation="grid", samples=300, hide_color=0.0, verbose=0)
    (result,) = lime.explanations(noisy_image(), target=0)  # left half speaks against class 0
    both = result.mask(num_features=4)
    assert set(np.unique(both)) <= {-1, 0, 1}
    strongest = np.argsort(-np.abs(result.weights))[:4]
    assert np.unique(result.segments[both != 0]).tolist() == sorted(strongest.tolist())
    assert (result.mask(positive=True, negative=False, num_features=49) >= 0).all()
    with pytest.raises(ValueError, match="positive, negative or both"):
        result.mask(positive=False, negative=False)


def test_target_none_and_the_progress_bar(capsys):
    model = left_half_model()
    images = np.stack([noisy_image(seed=s) for s in range(2)])
    lime = Lime(model, segmentation="grid", samples=50, verbose=1)
    results = lime.explanations(images)
    predicted = to_numpy(model(images)).argmax(axis=1)
    assert [r.target for r in results] == predicted.tolist()
    assert "2/2" in capsys.readouterr().out


def test_errors():
    model = left_half_model()
    with pytest.raises(ValueError, match="segmentation in .*'slic'.*Received: 'watershed'"):
        Lime(model, segmentation="watershed")
    with pytest.raises(ValueError, match="samples` >= 2. Received: 1"):
        Lime(model, samples=1)
    with pytest.raises(ValueError, match="kernel_width > 0"):
        Lime(model, kernel_width=0)
    two = keras.Model(
        inputs := keras.Input((8, 8, 2)),
        keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs)),
    )
    with pytest.raises(ValueError, match=r"1 or 3 channels.*\(8, 8, 2\)"):
        Lime(two)
    lime = Lime(model, samples=10, verbose=0)
    with pytest.raises(
        ValueError,
        match=r"\(N, 24, 24, 1\).*Received: shape=\(24, 24, 3\)|"
        r"Received: shape=\(1, 24, 24, 3\)",
    ):
        lime.explain(np.zeros((24, 24, 3)))
    with pytest.raises(ValueError, match=r"classes in \[0, 2\)"):
        lime.explain(noisy_image(), target=2)
    with pytest.raises(ValueError, match="segmentation in"):
        segment(noisy_image(), "watershed")
