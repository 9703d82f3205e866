"""Models the project did not design: op names, the default layer, subclassed and
multi-output models, mixed precision, and the memory bound.

Oracles: a subclassed model and the Functional model built from the same layer
objects (shared weights) must give the same maps; a two-output model explained
at one output must give the maps of the one-output model made of the same
layers; chunked runs must equal unchunked ones; `inputs_per_call` by hand.
"""

import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
from keras import layers

import keras_fer_viz as kfv
from keras_fer_viz import metrics
from keras_fer_viz._explainer import PIXELS_PER_CALL, inputs_per_call

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 255, (5, 20, 20, 1)).astype("float32")


class Net(keras.Model):
    """A subclassed CNN: layers made in __init__, wired in call."""

    def __init__(self, classes=4, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.rescale = layers.Rescaling(1 / 255.0)
        self.conv1 = layers.Conv2D(6, 3, activation="relu", padding="same")
        self.conv2 = layers.Conv2D(8, 3, activation="relu", padding="same")
        self.pool = layers.MaxPooling2D(2)
        self.flat = layers.Flatten()
        self.head = layers.Dense(classes, activation="softmax")

    def call(self, x):
        h = self.conv2(self.conv1(self.rescale(x)))
        return self.head(self.flat(self.pool(h)))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}


def subclassed_and_functional():
    keras.utils.set_random_seed(1)
    net = Net()
    net(IMAGES[:1])
    inputs = keras.Input((20, 20, 1))
    h = net.conv2(net.conv1(net.rescale(inputs)))
    functional = keras.Model(inputs, net.head(net.flat(net.pool(h))))
    return net, functional


def test_subclassed_model_gives_the_functional_models_maps():
    net, functional = subclassed_and_functional()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(net(IMAGES)),
        keras.ops.convert_to_numpy(functional(IMAGES)),
        atol=1e-6,
    )
    target = np.arange(5) % 4
    for make in (
        lambda m, layer: kfv.GradCAM(m, layer),
        lambda m, layer: kfv.GradCAMPlusPlus(m, layer),
        lambda m, layer: kfv.Saliency(m),
        lambda m, layer: kfv.IntegratedGradients(m, steps=8, normalize=False),
    ):
        ours = make(net, net.conv2).explain(IMAGES, target)
        theirs = make(functional, net.conv2).explain(IMAGES, target)
        assert np.ptp(ours) > 0
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(
        kfv.feature_maps(net, net.conv1, IMAGES), kfv.feature_maps(functional, net.conv1, IMAGES)
    )
    np.testing.assert_allclose(
        kfv.maximize_activation(net, net.conv2, [0, 3], steps=4, verbose=0),
        kfv.maximize_activation(functional, net.conv2, [0, 3], steps=4, verbose=0),
        atol=1e-5,
    )
    # The softmax head was found: the logit, not the probability, is explained.
    assert kfv.layers.score_kind(net) == "softmax-dense"
    # The default layer and the layer listing work without a graph.
    assert kfv.last_conv_layer(net) is net.conv2
    assert [la.name for la in kfv.conv_layers(net)] == [net.conv1.name, net.conv2.name]
    # Interception leaves no trace on the caller's layers.
    assert "call" not in vars(net.conv2) and "call" not in vars(net.head)


def test_subclassed_model_with_lime_and_metrics():
    net, functional = subclassed_and_functional()
    lime_ours = kfv.Lime(net, samples=40, verbose=0, segmentation="grid").explain(IMAGES[:2], 1)
    lime_theirs = kfv.Lime(functional, samples=40, verbose=0, segmentation="grid").explain(
        IMAGES[:2], 1
    )
    np.testing.assert_allclose(lime_ours, lime_theirs, atol=1e-5)
    maps = kfv.Saliency(net).explain(IMAGES)
    ours = metrics.deletion_curve(net, IMAGES, maps, steps=4)
    theirs = metrics.deletion_curve(functional, IMAGES, maps, steps=4)
    np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-6)
    before = [w.copy() for w in net.get_weights()]
    check = metrics.randomization_check(kfv.Saliency, net, IMAGES[:2], layers=[net.head.name])
    assert check.spearman.shape == (1, 2)
    for a, b in zip(before, net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the caller's model is untouched


def test_subclassed_model_never_called_is_refused_clearly():
    with pytest.raises(
        ValueError, match=r"has not been called on images yet.*model\(images\[:1\]\)"
    ):
        kfv.Saliency(Net())
    with pytest.raises(ValueError, match="gap_head copies the model's convolutional base"):
        net, _ = subclassed_and_functional()
        kfv.gap_head(net, data=(IMAGES, np.arange(5) % 4), epochs=1, verbose=0)


def two_output_model():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((20, 20, 1))
    h = layers.Conv2D(6, 3, activation="relu", name="conv")(inputs)
    pooled = layers.GlobalAveragePooling2D(name="gap")(h)
    emotion = layers.Dense(7, activation="softmax", name="emotion")(pooled)
    valence = layers.Dense(3, name="valence")(pooled)
    both = keras.Model(inputs, {"emotion": emotion, "valence": valence})
    return both, keras.Model(inputs, emotion), keras.Model(inputs, valence)


def test_a_two_output_model_explains_the_chosen_output():
    both, emotion, valence = two_output_model()
    with pytest.raises(ValueError, match=r"has 2 outputs: \['emotion', 'valence'\].*output="):
        kfv.GradCAM(both)
    with pytest.raises(ValueError, match=r"no output named 'arousal'.*\['emotion', 'valence'\]"):
        kfv.Saliency(both, output="arousal")
    with pytest.raises(ValueError, match="Output index 2 is out of range"):
        kfv.Saliency(both, output=2)
    for cls in (kfv.Saliency, kfv.GradCAM, kfv.SmoothGrad):
        for output, single in (("emotion", emotion), (1, valence)):
            ours = cls(both, output=output).explain(IMAGES, target=1)
            np.testing.assert_allclose(ours, cls(single).explain(IMAGES, target=1), atol=1e-6)
    assert kfv.CAM(both, output="emotion").explain(IMAGES).shape == (5, 20, 20)
    curve = metrics.deletion_curve(both, IMAGES, kfv.Saliency(emotion).explain(IMAGES), output=0)
    np.testing.assert_allclose(
        curve.scores,
        metrics.deletion_curve(emotion, IMAGES, kfv.Saliency(emotion).explain(IMAGES)).scores,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="has 2 outputs"):
        metrics.insertion_curve(both, IMAGES, np.ones((5, 20, 20)))
    class_images = kfv.maximize_activation(both, "valence", steps=3, verbose=0)
    assert class_images.shape == (3, 20, 20, 1)


def test_mixed_precision_maps_are_finite_and_not_constant():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((20, 20, 3))
    h = layers.Conv2D(8, 3, activation="relu", dtype="mixed_float16", name="c1")(inputs)
    h = layers.Conv2D(8, 3, activation="relu", dtype="mixed_float16", name="c2")(h)
    h = layers.GlobalAveragePooling2D(dtype="mixed_float16")(h)
    outputs = layers.Dense(4, activation="softmax", dtype="float32")(h)
    model = keras.Model(inputs, outputs)
    images = RNG.uniform(0, 1, (3, 20, 20, 3)).astype("float32")
    for explainer in (kfv.Saliency(model), kfv.GradCAM(model), kfv.IntegratedGradients(model)):
        maps = explainer.explain(images)
        assert maps.dtype == np.float32 and np.isfinite(maps).all()
        assert (maps.max(axis=(1, 2)) > maps.min(axis=(1, 2))).all()


def test_last_conv_layer_stops_where_the_grid_collapses():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((24, 24, 3))
    h = layers.Conv2D(8, 3, activation="relu", name="features")(inputs)
    h = layers.GlobalAveragePooling2D(keepdims=True)(h)  # (N, 1, 1, 8), as MobileNetV3
    h = layers.Conv2D(5, 1, name="logits_conv")(h)
    outputs = layers.Activation("softmax")(layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    assert kfv.last_conv_layer(model).name == "features"
    maps = kfv.GradCAM(model).explain(RNG.uniform(0, 255, (3, 24, 24, 3)))
    assert (maps.max(axis=(1, 2)) > maps.min(axis=(1, 2))).all()
    with pytest.warns(RuntimeWarning, match="1x1 spatial output"):
        kfv.GradCAM(model, "logits_conv")


@pytest.mark.slow
def test_mobilenet_v3_default_layer_gives_real_maps():
    model = keras.applications.MobileNetV3Small(
        input_shape=(64, 64, 3), weights=None, classes=7, include_preprocessing=True
    )
    layer = kfv.last_conv_layer(model)
    assert layer.name != "logits" and kfv.layers.all_layers  # the 1x1 conv after pooling
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        cam = kfv.GradCAM(model)
    maps = cam.explain(RNG.uniform(0, 255, (2, 64, 64, 3)))
    assert (maps.max(axis=(1, 2)) > maps.min(axis=(1, 2))).all()


# Keras' automatic layer names (backend-neutral code): checked once.
@pytest.mark.backend_independent
def test_op_names_never_collide_with_the_models_in_a_fresh_process(tmp_path):
    """A model whose layers hold Keras' automatic names, loaded first thing in a process."""
    path = tmp_path / "residual.keras"
    inputs = keras.Input((16, 16, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    r = layers.Conv2D(4, 1, padding="same")(x)
    x = layers.add([layers.Conv2D(4, 3, padding="same", name="tap")(x), r], name="add")
    x = layers.add([layers.Conv2D(4, 3, padding="same")(x), r], name="add_1")
    x = layers.Conv2D(3, 1, name="kfv_image")(x)  # even our own prefix
    outputs = layers.Activation("softmax")(layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(path)
    code = textwrap.dedent(
        f"""
        import keras, numpy as np
        model = keras.saving.load_model({str(path)!r}, compile=False)
        import keras_fer_viz as kfv
        from keras_fer_viz import metrics
        x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 1)).astype("float32")
        for cls in (kfv.GradCAM, kfv.GradCAMPlusPlus, kfv.Saliency):
            assert cls(model).explain(x).shape == (2, 16, 16)
        kfv.GradCAM(model, "add_1").explain(x)
        metrics.deletion_curve(model, x, metrics.random_maps(x), steps=2)
        metrics.randomization_check(kfv.GradCAMPlusPlus, model, x, layers=["add_1"])
        print("fine")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("fine")


def test_inputs_per_call_by_hand():
    """The memory bound; on JAX the largest power of two in it (padded calls fit)."""
    jax = keras.backend.backend() == "jax"
    assert PIXELS_PER_CALL // 2304 == 227
    assert inputs_per_call((48, 48)) == (128 if jax else 227)
    assert inputs_per_call((224, 224, 3)) == (8 if jax else 10)
    assert inputs_per_call((2000, 2000)) == 1
    assert inputs_per_call((224, 224), batch_size=3) == (2 if jax else 3)


def chunking_model():
    keras.utils.set_random_seed(5)
    inputs = keras.Input((20, 20, 1))
    h = layers.Conv2D(4, 3, activation="tanh")(inputs)
    outputs = layers.Dense(3)(layers.Flatten()(h))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "make",
    [
        lambda m, b: kfv.SmoothGrad(m, samples=7, batch_size=b),
        lambda m, b: kfv.IntegratedGradients(m, steps=7, batch_size=b, normalize=False),
        lambda m, b: kfv.Saliency(m, batch_size=b),
    ],
    ids=["smoothgrad", "integrated_gradients", "saliency"],
)
def test_chunking_over_images_and_samples_changes_no_result(make):
    model = chunking_model()
    x = IMAGES / 255.0
    whole = make(model, None).explain(x, target=2)
    for batch_size in (1, 3, 10, 35):  # fewer inputs than one image's samples, and more
        np.testing.assert_allclose(make(model, batch_size).explain(x, target=2), whole, atol=2e-6)


def test_integrated_gradients_stay_complete_when_steps_are_chunked():
    model = chunking_model()
    x = IMAGES[:2] / 255.0
    ig = kfv.IntegratedGradients(model, steps=64, batch_size=5, normalize=False)
    attributions = ig.explain(x, target=0)
    logits = model.predict(x, verbose=0)[:, 0] - model.predict(0 * x, verbose=0)[:, 0]
    np.testing.assert_allclose(attributions.sum(axis=(1, 2)), logits, rtol=1e-3, atol=1e-4)


def test_filter_ascent_in_chunks_equals_one_batch():
    model = chunking_model()
    layer = model.layers[1]
    whole = kfv.maximize_activation(model, layer, steps=5, verbose=0, value_range=(0, 1))
    parts = kfv.maximize_activation(
        model, layer, steps=5, verbose=0, value_range=(0, 1), batch_size=3
    )
    np.testing.assert_allclose(parts, whole, atol=1e-5)


def test_callbacks_explain_the_chosen_output():
    both, emotion, _ = two_output_model()
    labels = np.arange(5) % 7
    grad_cam = kfv.callbacks.GradCAMCallback(IMAGES, labels, output="emotion", background=False)
    grad_cam.set_model(both)
    grad_cam.make_figure(0)
    np.testing.assert_allclose(
        grad_cam.maps_by_epoch[1], kfv.GradCAM(emotion).explain(IMAGES, labels), atol=1e-6
    )
    matrix = kfv.callbacks.ConfusionMatrixCallback(IMAGES, labels, output=0)
    matrix.set_model(both)
    predicted = emotion.predict(IMAGES, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(matrix.compute(0), predicted)
    refused = kfv.callbacks.SaliencyCallback(IMAGES, labels, strict=True)
    refused.set_model(both)
    with pytest.raises(ValueError, match="has 2 outputs"):
        refused.make_figure(0)


# Every method on the two-output model runs on each backend in the conformance zoo;
# this checks that the report passes `output` everywhere.
@pytest.mark.backend_independent
def test_report_explains_the_chosen_output_of_a_two_output_model(tmp_path):
    from keras_fer_viz.cli import main
    from keras_fer_viz.spec import load_spec

    both, emotion, _ = two_output_model()
    spec = [
        e
        for e in load_spec()
        if e.id in ("q1_saliency", "q3_confusion_matrix", "q2_class_images", "trust_deletion")
    ]
    faces = kfv.synthetic_faces(28, seed=0)
    images = faces.images[:, 14:34, 14:34]  # 20x20 crops: the model's size
    result = kfv.report.write_report(
        both,
        images,
        faces.labels,
        tmp_path / "r",
        spec,
        output="emotion",
        explorer_faces=1,
        verbose=0,
    )
    assert sorted(result.figures) == sorted(e.id for e in spec), result.failed
    assert not result.failed
    # The explorer explains the emotion output with every method (CAM: its own head).
    assert not result.explorer.failed and set(result.explorer.maps) == set(kfv.EXPLAINERS)
    np.testing.assert_allclose(
        result.explorer.probabilities,
        emotion.predict(images[result.explorer.index], verbose=0),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="has 2 outputs"):
        kfv.report.write_report(both, images, faces.labels, tmp_path / "refused", spec, verbose=0)
    assert not (tmp_path / "refused").exists()  # refused before anything is written
    path = tmp_path / "both.keras"
    both.save(path)
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(
        '[[figure]]\nid = "q1"\ntitle = "t"\nquestion = "q"\nmethod = "saliency"\nfile = "q1.png"\n'
    )
    argv = ["report", "--model", str(path), "--data", "synthetic", "--samples", "140"]
    argv += ["--spec", str(spec_file), "--quiet", "--out", str(tmp_path / "cli")]
    argv += ["--explorer-faces", "0"]
    assert main([*argv, "--output", "1"]) == 2  # valence has 3 outputs, the data 7 classes
    assert main([*argv, "--output", "emotion"]) == 0
    assert (tmp_path / "cli" / "q1.png").is_file()
