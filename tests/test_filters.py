"""Tests of keras_fer_viz.filters: feature maps and gradient ascent."""

import keras
import numpy as np
import pytest
import tiny_models

import keras_fer_viz as kfv
from keras_fer_viz.filters import feature_maps, maximize_activation

to_numpy = keras.ops.convert_to_numpy


def test_feature_maps_exact_values():
    model = tiny_models.conv_gap_dense("softmax")
    x = np.arange(32, dtype="float32").reshape(2, 4, 4, 1)
    kernel, bias = model.get_layer("conv").get_weights()
    maps = feature_maps(model, "conv", x, batch_size=1)
    np.testing.assert_allclose(maps, tiny_models.conv_reference(x, kernel, bias), rtol=1e-6)
    assert maps.dtype == np.float32


def test_feature_maps_inside_a_nested_model():
    inner = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(3, 3, activation="relu", name="c")],
        name="inner",
    )
    outer = keras.Sequential(
        [keras.Input((8, 8, 1)), inner, keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(feature_maps(outer, "inner/c", x), to_numpy(inner(x)), rtol=1e-6)
    assert feature_maps(outer, "c", x[0]).shape == (1, 6, 6, 3)  # one image


def test_feature_maps_errors():
    model = tiny_models.conv_gap_dense("softmax")
    with pytest.raises(
        ValueError, match=r"spatial layer.*'dense'.*\(None, 3\).*\['pixels'|\['conv'"
    ):
        feature_maps(model, "dense", np.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match=r"Received: shape=\(1, 5, 4, 1\)"):
        feature_maps(model, "conv", np.zeros((1, 5, 4, 1)))
    with pytest.raises(ValueError, match="No layer named 'conv9'"):
        feature_maps(model, "conv9", np.zeros((1, 4, 4, 1)))


@pytest.fixture(scope="module")
def small_cnn():
    return tiny_models.smooth_cnn((12, 12, 1), classes=3, seed=2)


def mean_activation(model, layer, images, filters):
    maps = feature_maps(model, layer, images)
    return maps.mean(axis=(1, 2))[np.arange(len(filters)), filters]


def test_optimised_images_activate_their_filters(small_cnn):
    filters = np.arange(4)
    images = maximize_activation(
        small_cnn,
        "conv2",
        steps=60,
        value_range=(0, 1),
        output="input",
        verbose=0,
        l2=0.0,
        total_variation=0.0,
        jitter=0,
    )
    assert images.shape == (4, 12, 12, 1) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    reached = mean_activation(small_cnn, "conv2", images, filters)
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 1, (4, 12, 12, 1)).astype("float32")
    grey = np.full((4, 12, 12, 1), 0.5, "float32")
    assert (reached > mean_activation(small_cnn, "conv2", noise, filters)).all()
    assert (reached > mean_activation(small_cnn, "conv2", grey, filters)).all()


def total_variation(images):
    return np.abs(np.diff(images, axis=1)).sum() + np.abs(np.diff(images, axis=2)).sum()


def test_regularisers_smooth_and_shrink_the_images(small_cnn):
    kwargs = dict(steps=40, value_range=(0, 1), output="input", verbose=0, jitter=0)
    plain = maximize_activation(small_cnn, "conv2", l2=0.0, total_variation=0.0, **kwargs)
    smooth = maximize_activation(small_cnn, "conv2", l2=0.0, total_variation=1.0, **kwargs)
    decayed = maximize_activation(small_cnn, "conv2", l2=0.2, total_variation=0.0, **kwargs)
    assert total_variation(smooth) < 0.7 * total_variation(plain)
    assert np.abs(decayed - 0.5).mean() < 0.7 * np.abs(plain - 0.5).mean()


def test_same_seed_same_images_and_a_filter_does_not_depend_on_the_others(small_cnn):
    kwargs = dict(steps=10, value_range=(0, 1), verbose=0)
    all_four = maximize_activation(small_cnn, "conv1", seed=3, **kwargs)
    np.testing.assert_array_equal(
        all_four, maximize_activation(small_cnn, "conv1", seed=3, **kwargs)
    )
    pair = maximize_activation(small_cnn, "conv1", [2, 0], seed=3, **kwargs)
    np.testing.assert_allclose(pair, all_four[[2, 0]], atol=1e-5)
    other = maximize_activation(small_cnn, "conv1", seed=4, **kwargs)
    assert np.abs(other - all_four).max() > 0.01


def test_display_output_is_stretched_to_unit_range(small_cnn):
    images = maximize_activation(small_cnn, "conv1", 1, steps=5, verbose=0)
    assert images.shape == (1, 12, 12, 1)
    assert images.min() == 0.0 and images.max() == 1.0


def test_class_images_are_classified_as_their_class():
    """Class c reads quadrant c of a 6x6 image: its image lights up that quadrant."""
    inputs = keras.Input((6, 6, 1))
    dense = keras.layers.Dense(4, activation="softmax", name="dense")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    w = np.zeros((6, 6, 4), "float32")
    for c, (r, q) in enumerate([(0, 0), (0, 3), (3, 0), (3, 3)]):
        w[r : r + 3, q : q + 3, c] = 1.0
    dense.set_weights([w.reshape(36, 4), np.zeros(4, "float32")])
    images = maximize_activation(
        model, "dense", steps=40, value_range=(-1, 1), output="input", verbose=0, jitter=0
    )
    probs = to_numpy(model(images))
    np.testing.assert_array_equal(probs.argmax(axis=1), np.arange(4))
    assert probs.max(axis=1).min() > 0.9


def test_progress_bar(small_cnn, capsys):
    maximize_activation(small_cnn, "conv1", [0], steps=20, value_range=(0, 1), verbose=1)
    assert "20/20" in capsys.readouterr().out


def test_a_dense_layer_maximises_units():
    model = tiny_models.linear((4, 4, 1), classes=3, seed=0, softmax=False)
    inputs = keras.Input((4, 4, 1))
    hidden = keras.layers.Dense(5, name="hidden")(keras.layers.Flatten()(inputs))
    deep = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    images = maximize_activation(deep, "hidden", [1], steps=5, verbose=0)
    assert images.shape == (1, 4, 4, 1)
    del model


def test_errors(small_cnn):
    with pytest.raises(
        ValueError, match=r"Filter index 4 is out of range: layer 'conv1' has 4 filters \(0 to 3\)"
    ):
        maximize_activation(small_cnn, "conv1", [0, 4], verbose=0)
    with pytest.raises(ValueError, match="has 3 classes"):
        maximize_activation(small_cnn, "head", 3, verbose=0)
    with pytest.raises(ValueError, match="None, an int or a list of ints. Received: 'all'"):
        maximize_activation(small_cnn, "conv1", "all", verbose=0)
    with pytest.raises(ValueError, match="positive int `steps`"):
        maximize_activation(small_cnn, "conv1", steps=0, verbose=0)
    with pytest.raises(ValueError, match="high > low"):
        maximize_activation(small_cnn, "conv1", value_range=(1, 0), verbose=0)
    with pytest.raises(ValueError, match="output 'display' or 'input'"):
        maximize_activation(small_cnn, "conv1", output="png", verbose=0)
    with pytest.raises(ValueError, match="int `jitter` >= 0"):
        maximize_activation(small_cnn, "conv1", jitter=-1, verbose=0)


def test_reference_cnn_third_conv_layer_shape():
    model = kfv.fer_cnn(width=0.25)
    layer = kfv.conv_layers(model)[2]
    images = maximize_activation(model, layer, [0, 5], steps=3, verbose=0)
    assert layer.name == "block2_conv1" and images.shape == (2, 48, 48, 1)


def test_a_second_call_reuses_the_compiled_loop(small_cnn):
    from keras_fer_viz.filters import _CACHE

    maximize_activation(small_cnn, "conv2", [0], steps=3, value_range=(0, 1), verbose=0)
    maximize_activation(small_cnn, "conv2", [1, 2], steps=5, l2=0.1, jitter=0, verbose=0)
    loops = {key: fn for key, fn in _CACHE[small_cnn].items() if key[0] == "loop"}
    before = {key: fn.trace_count() for key, fn in loops.items()}
    maximize_activation(small_cnn, "conv2", [1, 2], steps=5, l2=0.2, verbose=0)  # same shapes
    assert {key: fn.trace_count() for key, fn in _CACHE[small_cnn].items() if key[0] == "loop"} == (
        before
    )
    # TensorFlow traces once for any shape, JAX once per shape, PyTorch runs eagerly.
    if keras.backend.backend() == "tensorflow":
        assert all(count == 1 for count in before.values())
