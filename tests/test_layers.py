"""Tests of keras_fer_viz.layers on Sequential, Functional and nested models."""

import keras
import numpy as np
import pytest
import tiny_models

from keras_fer_viz.layers import (
    all_layers,
    conv_layers,
    last_conv_layer,
    resolve_layer,
    score_kind,
    spatial_layers,
    submodel,
)
from keras_fer_viz.models import fer_cnn

to_numpy = keras.ops.convert_to_numpy

CONVS = [f"block{b}_conv{i}" for b in (1, 2, 3) for i in (1, 2)]


@pytest.fixture(scope="module")
def functional():
    keras.utils.set_random_seed(0)
    return fer_cnn(width=0.25)


@pytest.fixture(scope="module")
def sequential(functional):
    """The same stack, same weights, as a plain Sequential model."""
    return keras.Sequential([keras.Input((48, 48, 1)), *functional.layers[1:]], name="seq_cnn")


@pytest.fixture(scope="module")
def nested():
    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), weights=None, include_top=False, alpha=0.35
    )
    return keras.Sequential(
        [
            keras.Input((96, 96, 3)),
            backbone,
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(4, activation="softmax", name="head"),
        ],
        name="transfer",
    )


def faces(n=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 48, 48, 1)).astype("float32")


def test_conv_layers_in_order(functional, sequential):
    assert [la.name for la in conv_layers(functional)] == CONVS
    assert [la.name for la in conv_layers(sequential)] == CONVS
    assert last_conv_layer(functional).name == "block3_conv2"
    assert last_conv_layer(sequential) is functional.get_layer("block3_conv2")


def test_spatial_layers_include_pools_and_norms(functional):
    names = [la.name for la in spatial_layers(functional)]
    assert names[:2] == ["rescale", "standardize"]
    assert "block1_pool" in names and "block3_bn" in names
    assert "flatten" not in names and "dense1" not in names


def test_nested_backbone_is_entered(nested):
    backbone = nested.layers[0]
    convs = conv_layers(nested)
    assert convs[0] is backbone.get_layer("Conv1")
    assert convs[-1] is backbone.get_layer("Conv_1")
    # Conv_1 -> Conv_1_bn -> out_relu: Grad-CAM reads the map after the ReLU.
    assert last_conv_layer(nested) is backbone.get_layer("out_relu")
    paths = [info.path for info in all_layers(nested)]
    assert paths[0] == f"{backbone.name}/Conv1" and paths[-1] == "head"
    assert f"{backbone.name}" in paths  # the backbone itself, after its layers


def test_resolve_layer_by_every_kind_of_reference(functional, nested):
    layer = functional.get_layer("block2_conv1")
    assert resolve_layer(functional, "block2_conv1") is layer
    assert resolve_layer(functional, layer) is layer
    assert resolve_layer(functional, -1) is functional.get_layer("predictions")
    assert resolve_layer(functional, None) is functional.get_layer("block3_conv2")
    backbone = nested.layers[0]
    assert resolve_layer(nested, f"{backbone.name}/Conv_1") is backbone.get_layer("Conv_1")
    assert resolve_layer(nested, "Conv_1") is backbone.get_layer("Conv_1")
    assert resolve_layer(nested, 0) is backbone


def test_wrong_references_list_the_candidates(functional):
    with pytest.raises(ValueError, match=r"No layer named 'block2_conv9'.*Did you mean.*block2"):
        resolve_layer(functional, "block2_conv9")
    with pytest.raises(ValueError, match=r"Layers: \['image'|Layers: \['rescale'"):
        resolve_layer(functional, "nothing_like_it")
    with pytest.raises(ValueError, match="index 40 is out of range.*has 31 layers"):
        resolve_layer(functional, 40)
    with pytest.raises(ValueError, match="is not part of model"):
        resolve_layer(functional, keras.layers.Dense(3, name="stranger"))
    with pytest.raises(TypeError, match="Received: float 1.5"):
        resolve_layer(functional, 1.5)


def test_ambiguous_name_asks_for_a_path():
    inner_a = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, name="c")])
    inner_b = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(2, 3, name="c")])
    outer = keras.Sequential([keras.Input((8, 8, 1)), inner_a, inner_b], name="outer")
    with pytest.raises(ValueError, match="ambiguous.*matches"):
        resolve_layer(outer, "c")
    assert resolve_layer(outer, f"{inner_b.name}/c") is inner_b.layers[0]


def test_model_without_conv_layer():
    model = tiny_models.linear()
    with pytest.raises(ValueError, match="no convolution layer.*this model has none"):
        last_conv_layer(model)
    assert conv_layers(model) == []


def test_unbuilt_and_multi_input_models_are_refused():
    with pytest.raises(ValueError, match="has no defined input"):
        conv_layers(keras.Sequential([keras.layers.Conv2D(2, 3)]))
    a, b = keras.Input((4, 4, 1)), keras.Input((4, 4, 1))
    two = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(ValueError, match="one image input.*2 inputs"):
        conv_layers(two)


def test_score_kind_finds_the_softmax():
    assert score_kind(tiny_models.conv_gap_dense("softmax")) == "softmax-dense"
    assert score_kind(tiny_models.conv_gap_dense("layer")) == "softmax-layer"
    assert score_kind(tiny_models.conv_gap_dense("linear")) == "none"


@pytest.mark.parametrize("head", ["softmax", "layer"])
def test_submodel_returns_logits_and_the_layer(head):
    model = tiny_models.conv_gap_dense(head)
    linear = tiny_models.conv_gap_dense("linear")
    x = np.arange(32, dtype="float32").reshape(2, 4, 4, 1) / 8
    sub = submodel(model, ["conv"])
    activations, logits = (to_numpy(t) for t in sub(x, training=False))
    np.testing.assert_allclose(logits, to_numpy(linear(x)), rtol=1e-6)
    kernel, bias = model.get_layer("conv").get_weights()
    np.testing.assert_allclose(activations, tiny_models.conv_reference(x, kernel, bias), rtol=1e-6)
    probs = to_numpy(submodel(model, score="probability")(x))
    np.testing.assert_allclose(probs, to_numpy(model(x)), rtol=1e-6)


def test_submodel_of_sequential_and_nested_models(functional, sequential, nested):
    x = faces()
    ref = submodel(functional, ["block3_conv2"])(x, training=False)
    got = submodel(sequential, ["block3_conv2"])(x, training=False)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(to_numpy(g), to_numpy(r), rtol=1e-5, atol=1e-5)
    probs = to_numpy(functional(x, training=False))
    np.testing.assert_allclose(to_numpy(keras.ops.softmax(ref[1])), probs, rtol=1e-5, atol=1e-6)

    x3 = np.random.default_rng(1).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    backbone = nested.layers[0]
    feats, logits = submodel(nested, ["out_relu"])(x3, training=False)
    np.testing.assert_allclose(to_numpy(feats), to_numpy(backbone(x3)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(keras.ops.softmax(logits)), to_numpy(nested(x3)), rtol=1e-5, atol=1e-6
    )


def test_caller_model_is_untouched(functional):
    before = [w.copy() for w in functional.get_weights()]
    layer_count, output = len(functional.layers), functional.output
    activation = functional.get_layer("predictions").activation
    submodel(functional, ["block1_conv1", "block3_conv2"])
    assert len(functional.layers) == layer_count and functional.output is output
    assert functional.get_layer("predictions").activation is activation
    for a, b in zip(before, functional.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_submodel_of_a_model_loaded_from_disk(tmp_path, functional):
    path = tmp_path / "m.keras"
    functional.save(path)
    loaded = keras.saving.load_model(path)
    x = faces(2)
    a = submodel(functional, ["block2_conv2"])(x, training=False)
    b = submodel(loaded, ["block2_conv2"])(x, training=False)
    for r, g in zip(a, b, strict=True):
        np.testing.assert_allclose(to_numpy(g), to_numpy(r), rtol=1e-6)


def test_submodel_argument_errors(functional):
    with pytest.raises(ValueError, match="score 'logit', 'probability' or None"):
        submodel(functional, score="softmax")
    with pytest.raises(ValueError, match="at least one layer"):
        submodel(functional, [], score=None)
