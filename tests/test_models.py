"""Tests of keras_fer_viz.models.fer_cnn: the exact stack, preprocessing inside."""

import keras
import numpy as np
import pytest

from keras_fer_viz.models import compile_augmentation_on_jax, fer_cnn

EXPECTED = (
    [
        "image",
        "rescale",
        "standardize",
        "augment_flip",
        "augment_rotate",
        "augment_zoom",
        "augment_shift",
    ]
    + [f"block{b}_{k}" for b in (1, 2, 3) for k in ("conv1", "conv2", "pool", "bn")]
    + ["dropout", "flatten"]
    + [f"dense{i}{k}" for i in (1, 2, 3) for k in ("", "_bn", "_dropout")]
    + ["predictions"]
)


@pytest.fixture(scope="module")
def model():
    return fer_cnn()


def test_layer_names_and_order(model):
    assert [layer.name for layer in model.layers] == EXPECTED


def test_the_study_stack(model):
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) and c.activation.__name__ == "relu" for c in convs)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [256, 128, 64, 7]
    assert [d.activation.__name__ for d in dense] == ["relu"] * 3 + ["softmax"]
    drops = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert drops == [0.2, 0.5, 0.5, 0.5]
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert [p.pool_size for p in pools] == [(2, 2)] * 3
    assert model.get_layer("block3_conv2").output.shape == (None, 12, 12, 128)
    assert model.output_shape == (None, 7)


def test_width_and_shapes():
    small = fer_cnn(num_classes=3, input_shape=(32, 32, 3), width=0.25)
    convs = [lay.filters for lay in small.layers if isinstance(lay, keras.layers.Conv2D)]
    assert convs == [8, 8, 16, 16, 32, 32]
    assert small.input_shape == (None, 32, 32, 3) and small.output_shape == (None, 3)


def test_preprocessing_is_inside_and_augmentation_only_in_training(model):
    x = np.random.default_rng(0).integers(0, 256, (4, 48, 48, 1)).astype(np.uint8)
    p1 = keras.ops.convert_to_numpy(model(x.astype("float32"), training=False))
    p2 = keras.ops.convert_to_numpy(model(x.astype("float32"), training=False))
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_allclose(p1.sum(axis=1), 1.0, rtol=1e-5)
    # The same pixels scaled by a constant give the same prediction: the model
    # standardises each image itself.
    brighter = np.clip(x.astype("float32") * 0.5 + 60, 0, 255)
    p3 = keras.ops.convert_to_numpy(model(brighter, training=False))
    np.testing.assert_allclose(
        p3, keras.ops.convert_to_numpy(model(x.astype("float32") * 0.5, training=False)), atol=2e-3
    )
    aug = model.get_layer("augment_shift")
    y = np.arange(48 * 48, dtype="float32").reshape(1, 48, 48, 1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(aug(y, training=False)), y)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_classes=1), r"num_classes.*>= 2.*Received: 1"),
        (dict(input_shape=(48, 48)), r"input_shape.*Received: input_shape=\(48, 48\)"),
        (dict(input_shape=(4, 4, 1)), r"input_shape.*>= 8"),
        (dict(width=0), r"width.*Received: width=0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fer_cnn(**kwargs)


def test_standardize_is_per_image_standardisation(model):
    """Each image to zero mean and unit variance over all its pixels (numpy oracle)."""
    layer = model.get_layer("standardize")
    x = np.random.default_rng(1).normal(3.0, 2.0, (3, 48, 48, 1)).astype("float32")
    x[1] *= 0.01  # a low-contrast image: epsilon matters
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    expected = (x - mean) / np.sqrt(x.var(axis=(1, 2, 3), keepdims=True) + 1e-3)
    got = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(got, expected, atol=2e-5)
    rgb = np.random.default_rng(2).normal(size=(2, 16, 16, 3)).astype("float32")
    small = fer_cnn(input_shape=(16, 16, 3), width=0.125).get_layer("standardize")
    mean = rgb.mean(axis=(1, 2, 3), keepdims=True)
    expected = (rgb - mean) / np.sqrt(rgb.var(axis=(1, 2, 3), keepdims=True) + 1e-3)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(small(rgb)), expected, atol=2e-5)


@pytest.fixture(scope="module")
def trained_tiny():
    """fer_cnn(width=0.125) after a few training steps: batch-norm statistics moved."""
    from keras_fer_viz.data import synthetic_faces

    keras.utils.set_random_seed(0)
    faces = synthetic_faces(64, seed=4)
    tiny = fer_cnn(width=0.125)
    tiny.compile("adam", "sparse_categorical_crossentropy")
    tiny.fit(faces.images, faces.labels, epochs=1, batch_size=16, verbose=0)
    return tiny, faces.images[:16].astype("float32")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_round_trip_keeps_the_predictions(trained_tiny, suffix, tmp_path):
    # The legacy .h5 loader drops a list-valued `axis` (LayerNormalization over
    # (1, 2, 3) came back over the channel alone: every image zeros, every
    # prediction the same). The model must load as it was, in both formats.
    tiny, x = trained_tiny
    path = tmp_path / f"m{suffix}"
    tiny.save(path)
    loaded = keras.saving.load_model(path)
    expected = keras.ops.convert_to_numpy(tiny(x, training=False))
    got = keras.ops.convert_to_numpy(loaded(x, training=False))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert np.ptp(got, axis=0).max() > 1e-3  # predictions still depend on the image
    assert [la.name for la in loaded.layers] == [la.name for la in tiny.layers]
    for original, back in zip(tiny.layers, loaded.layers, strict=True):
        assert back.get_config() == original.get_config(), original.name


def augmented_tiny(**compile_args):
    """Keras' three affine augmentation layers before a small head, compiled, seeded."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.RandomRotation(0.1, fill_mode="nearest")(inputs)
    x = keras.layers.RandomZoom(0.1, fill_mode="nearest")(x)
    x = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest")(x)
    x = keras.layers.Conv2D(2, 3, activation="relu")(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    compile_augmentation_on_jax(model)
    model.compile("adam", "sparse_categorical_crossentropy", **compile_args)
    return model


def test_augmentation_compiles_on_jax_and_trains_as_eagerly(model):
    # Keras marks these layers not XLA-compatible on every backend, which made a
    # fer_cnn train op by op on JAX. Oracle: the same steps run eagerly, as Keras
    # runs them without XLA.
    on_jax = keras.backend.backend() == "jax"
    jitted = augmented_tiny()
    assert jitted.jit_compile is on_jax
    augment = [model.get_layer(f"augment_{n}") for n in ("rotate", "zoom", "shift")]
    assert [layer.supports_jit for layer in augment] == [on_jax] * 3
    eager = augmented_tiny(jit_compile=False, run_eagerly=True)
    x = np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 1)).astype("float32")
    y = np.arange(8) % 3
    np.testing.assert_allclose(jitted.train_on_batch(x, y), eager.train_on_batch(x, y), rtol=1e-5)
    for a, b in zip(jitted.get_weights(), eager.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # The augmentation works inside the compiled model: training calls differ.
    first, second = (keras.ops.convert_to_numpy(jitted(x, training=True)) for _ in range(2))
    assert np.abs(first - second).max() > 1e-4


def test_another_layer_without_xla_keeps_the_model_uncompiled():
    class NoXLA(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.supports_jit = False

        def call(self, x):
            return x

    inputs = keras.Input((16, 16, 1))
    x = keras.layers.RandomZoom(0.1)(NoXLA()(inputs))
    model = keras.Model(inputs, keras.layers.Flatten()(x))
    assert compile_augmentation_on_jax(model) is False
    assert [layer.supports_jit for layer in model.layers[1:3]] == [False, False]
