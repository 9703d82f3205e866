"""Every gradient explainer on the models people have, and their input checks."""

import keras
import numpy as np
import pytest
import tiny_models
import zoo

import keras_fer_viz as kfv
from keras_fer_viz import _gradients
from keras_fer_viz._explainer import as_images, as_targets

# Every registered method but CAM (it needs a GAP head: tests/test_cam.py) and
# LIME (sampled superpixels: tests/test_lime.py), with options for short runs.
NAMES = [n for n in kfv.EXPLAINERS if n not in ("cam", "lime")]
METHODS = [lambda m, name=name: zoo.explainer(name, m, kfv.layers.input_shape(m)) for name in NAMES]


@pytest.fixture(scope="module")
def reference():
    keras.utils.set_random_seed(0)
    return kfv.fer_cnn(width=0.25)


@pytest.fixture(scope="module")
def faces():
    return kfv.synthetic_faces(7, seed=3)


@pytest.mark.parametrize("method", METHODS, ids=NAMES)
def test_reference_cnn_its_sequential_copy_and_a_loaded_copy(method, reference, faces, tmp_path):
    sequential = keras.Sequential([keras.Input((48, 48, 1)), *reference.layers[1:]])
    path = tmp_path / "model.keras"
    reference.save(path)
    loaded = keras.saving.load_model(path)
    maps = method(reference).explain(faces.images, target=faces.labels)
    assert maps.shape == (7, 48, 48) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0
    # Each map peaks at 1, or is blank: Grad-CAM's weighted sum can be negative
    # everywhere before its ReLU (how often depends on the random weights,
    # which each backend draws differently).
    peaks = maps.max((1, 2))
    assert np.all(np.isclose(peaks, 1) | (peaks == 0)) and np.isclose(peaks, 1).sum() >= 5
    for other in (sequential, loaded):
        again = method(other).explain(faces.images, target=faces.labels)
        np.testing.assert_allclose(again, maps, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHODS, ids=NAMES)
def test_separate_softmax_layer_explains_the_same_logits(method):
    dense, layer = tiny_models.conv_gap_dense("softmax"), tiny_models.conv_gap_dense("layer")
    x = np.random.default_rng(0).normal(size=(3, 4, 4, 1)).astype("float32")
    np.testing.assert_allclose(
        method(layer).explain(x, target=1), method(dense).explain(x, target=1), rtol=1e-5
    )


@pytest.fixture(scope="module")
def transfer():
    """MobileNetV2 (no top) inside a Sequential, with a new head.

    Small (alpha 0.35, 64x64: its last conv layer still has 1,280 channels)
    and not calibrated like the zoo's nested_sequential: a forward pass in
    training mode runs op by op, which costs JAX tens of seconds.
    """
    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV2(
        input_shape=(64, 64, 3), alpha=0.35, weights=None, include_top=False
    )
    return keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            backbone,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(7, activation="softmax"),
        ]
    )


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="on TensorFlow the zoo's nested_sequential (the same backbone) runs every method",
)
@pytest.mark.parametrize("method", METHODS, ids=NAMES)
def test_nested_mobilenet_backbone(method, transfer):
    x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    maps = method(transfer).explain(x, target=[0, 3])
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all() and maps.min() >= 0
    # Each map peaks at 1, or is blank (the Grad-CAM family's ReLU'd sum can be
    # negative everywhere on random weights); not both.
    peaks = maps.max((1, 2))
    assert np.all(np.isclose(peaks, 1) | (peaks == 0)) and np.isclose(peaks, 1).any(), peaks


def test_nested_grad_cam_uses_the_backbone_output(transfer):
    cam = kfv.GradCAM(transfer)
    assert cam.layer.name == "out_relu" and cam.layer_shape == (None, 2, 2, 1280)


def test_the_callers_model_is_not_modified(reference, faces):
    weights = [w.copy() for w in reference.get_weights()]
    activation = reference.get_layer("predictions").activation
    for method in METHODS:
        method(reference).explain(faces.images[:2])
    assert reference.get_layer("predictions").activation is activation
    for a, b in zip(weights, reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_compiled_function_is_traced_once_per_explainer(reference, faces):
    """TensorFlow: once for every batch size; JAX: once per power of two; PyTorch: eager."""
    s = kfv.Saliency(reference)
    for n in (1, 3, 7, 3, 1, 4):
        s.explain(faces.images[:n])
    expected = {"tensorflow": 1, "jax": 3, "torch": 0}[keras.backend.backend()]  # 1, 4, 8
    assert s._fn.trace_count() == expected


def test_padded_and_call_sizes():
    jax = keras.backend.backend() == "jax"
    sizes = [1, 2, 3, 5, 8, 9, 100, 129]
    padded = [1, 2, 4, 8, 8, 16, 128, 256] if jax else sizes
    assert [_gradients.padded_size(n) for n in sizes] == padded
    assert _gradients.padded_size(0) == 0
    # A memory bound of `step` inputs: on JAX the largest power of two in it,
    # so that a ragged call padded to `padded_size` never exceeds it.
    assert [_gradients.call_size(n) for n in (1, 3, 8, 100, 0)] == (
        [1, 2, 8, 64, 1] if jax else [1, 3, 8, 100, 1]
    )
    for step in range(1, 70):
        size = _gradients.call_size(step)
        assert size <= step and all(_gradients.padded_size(n) <= size for n in range(1, size))


def test_a_compiled_batch_is_padded_and_cut_back():
    """Rows of a batch argument are padded with the last row; outputs are cut to the batch."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    seen = []

    def fn(x, scale):
        seen.append(tuple(x.shape))
        return keras.ops.sum(x, axis=1) * scale, x * 2.0

    call = _gradients.compile(fn, model, [((None, 2), "float32"), ((), "float32")], batch=(0,))
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    total, doubled = call(x, np.float32(3.0))
    np.testing.assert_array_equal(total, [3.0, 15.0, 27.0, 39.0, 51.0])
    np.testing.assert_array_equal(doubled, 2 * x)
    if keras.backend.backend() == "jax":
        assert seen == [(8, 2)]  # traced once, at the padded size
    with pytest.raises(ValueError, match=r"batch arguments \(0, 1\) to have one length"):
        _gradients.compile(lambda a, b: a + b, model, [((None,), "float32")] * 2, batch=(0, 1))(
            np.zeros(3, np.float32), np.zeros(2, np.float32)
        )


def test_the_compiled_forward_of_callbacks_and_metrics_compiles_few_times(reference):
    x = kfv.synthetic_faces(20, seed=4).images
    probs = [_gradients.predict(reference, x[:n]) for n in range(1, 21)]
    fn = _gradients._PREDICT[reference][None]
    limit = {"tensorflow": 1, "jax": 6, "torch": 0}[keras.backend.backend()]
    assert fn.trace_count() <= limit
    expected = reference.predict(x, verbose=0)
    for n in (1, 7, 20):
        np.testing.assert_allclose(probs[n - 1], expected[:n], rtol=0, atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="only JAX compiles per batch size")
@pytest.mark.parametrize("name", ["grad_cam", "smoothgrad", "occlusion", "score_cam"])
def test_any_sequence_of_batch_sizes_costs_few_compiles_and_the_same_maps(
    name, reference, monkeypatch
):
    """Batch sizes up to 20: at most log2(20) + 1 compiles per function on JAX.

    Grad-CAM takes every size from 1 to 20; the methods that expand each
    image into many model inputs (slow per call) sizes that pad to 1, 4, 8,
    16 and 32, and 7, which must reuse the program of 5 (both padded to 8).
    """
    x = kfv.synthetic_faces(20, seed=4).images
    explainer = zoo.explainer(name, reference, (48, 48, 1))
    sizes = range(1, 21) if name == "grad_cam" else (1, 3, 5, 13, 20, 7)
    maps = {n: explainer.explain(x[:n], target=3) for n in sizes}
    compiled = [f for f in vars(explainer).values() if hasattr(f, "trace_count")]
    assert compiled
    padded = 6 if name == "grad_cam" else 5  # 1, 2, 4, ..., 32; or without 2
    assert max(f.trace_count() for f in compiled) <= padded
    # The same maps as without padding (one compile per size on JAX).
    monkeypatch.setattr(_gradients, "PAD_JAX_BATCHES", False)
    plain = zoo.explainer(name, reference, (48, 48, 1))
    for n in (5, 20):
        np.testing.assert_allclose(maps[n], plain.explain(x[:n], target=3), rtol=0, atol=1e-5)


BAD_IMAGES = [
    (np.zeros((48, 48)), r"Expected images of shape \(N, 48, 48, 1\).*Received: shape=\(48, 48\)"),
    (np.zeros((1, 1, 48, 48, 1)), r"Received: shape=\(1, 1, 48, 48, 1\)"),
    (np.zeros((0, 48, 48, 1)), "at least one image"),
    (np.zeros((2, 48, 48, 3)), r"shape \(N, 48, 48, 1\).*\(2, 48, 48, 3\).*grayscale"),
    (np.zeros((2, 40, 48, 1)), r"Received: shape=\(2, 40, 48, 1\)"),
    (np.array([[["a"]]]), "real-valued images"),
]


@pytest.mark.parametrize("images, match", BAD_IMAGES)
def test_bad_images(images, match):
    with pytest.raises(ValueError, match=match):
        as_images(images, (48, 48, 1), "fer_cnn")


def test_nan_images_are_named():
    x = np.zeros((3, 48, 48, 1), "float32")
    x[1, 4, 4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity in image 1"):
        as_images(x, (48, 48, 1))


def test_targets():
    np.testing.assert_array_equal(as_targets(None, 3, 7), [-1, -1, -1])
    np.testing.assert_array_equal(as_targets(2, 3, 7), [2, 2, 2])
    np.testing.assert_array_equal(as_targets(np.array([0, 6, 1]), 3, 7), [0, 6, 1])
    with pytest.raises(ValueError, match=r"classes in \[0, 7\).*Received: 7"):
        as_targets(7, 3, 7)
    with pytest.raises(ValueError, match=r"Received: -1"):
        as_targets([0, -1, 2], 3, 7)
    with pytest.raises(ValueError, match=r"shape \(3,\). Received: shape=\(2,\)"):
        as_targets([0, 1], 3, 7)
    with pytest.raises(ValueError, match="None .*an int, or one int per image"):
        as_targets(1.5, 3, 7)


def test_errors_reach_explain(reference, faces):
    s = kfv.Saliency(reference)
    with pytest.raises(ValueError, match="Received: 9"):
        s.explain(faces.images, target=9)
    with pytest.raises(ValueError, match=r"\(N, 48, 48, 1\)"):
        s.explain(np.zeros((2, 48, 48, 3)))
    with pytest.raises(ValueError, match="positive int `batch_size`"):
        s.explain(faces.images, batch_size=0)
    with pytest.raises(TypeError, match="Expected a `keras.Model`"):
        kfv.Saliency("model.keras")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a TensorFlow warning")
def test_explainers_made_one_after_another_raise_no_retracing_warning():
    # Each explainer traces its function once; TensorFlow counts traces by
    # code object and, without care, warns of "excessive retracing" from the
    # sixth explainer of a class on (seen in every demo run).
    import io
    import logging

    import tensorflow as tf

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    tf.get_logger().addHandler(handler)
    try:
        model = kfv.fer_cnn(width=0.25)
        faces = kfv.synthetic_faces(2)
        for _ in range(8):
            kfv.GradCAM(model).explain(faces.images, faces.labels)
    finally:
        tf.get_logger().removeHandler(handler)
    assert "retracing" not in stream.getvalue()
