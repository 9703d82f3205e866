"""The same maps on every backend of Keras.

tox runs the whole suite once per backend (KERAS_BACKEND=tensorflow, jax,
torch). Here every method runs on the fixture model, saved once, loaded on
the backend under test, and is compared with what TensorFlow computed when
the fixtures were made (tests/fixtures/backend_maps.npz, written by
make_fixtures.py).
"""

import keras
import numpy as np
import pytest
from backend_maps import INPUT_GRADIENTS, compared_exactly, compute
from conftest import FIXTURES

from keras_fer_viz import _gradients

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def maps(fixture_model, fixture_cam_model):
    return compute(fixture_model, fixture_cam_model)


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURES / "backend_maps.npz") as data:
        return {k: data[k] for k in data.files}


def test_every_method_is_compared(maps, reference):
    assert sorted(maps) == sorted(reference)


@pytest.mark.parametrize("name", compared_exactly())
def test_maps_match_tensorflow_within_1e_4(maps, reference, name):
    assert maps[name].shape == reference[name].shape
    np.testing.assert_allclose(maps[name], reference[name], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", INPUT_GRADIENTS)
def test_input_gradient_maps_match_tensorflow(maps, reference, name):
    """Within 1e-4 but where a ReLU sits at zero within rounding error.

    There the gradient is discontinuous: a unit whose input is 1.6e-6 on one
    backend and -1e-7 on another passes gradient on one only, over its
    receptive field (seen: 9 of 32,256 saliency pixels, a 3x3 patch under one
    first-layer unit; integrated gradients, with 16 path images each, 77). So:
    at least 99.5% of pixels within 1e-4, none off by more than 0.02, and
    every map's pixel ranking the same.
    """
    got, want = maps[name], reference[name]
    assert got.shape == want.shape
    off = np.abs(got - want) > TOLERANCE
    assert off.mean() <= 5e-3, f"{off.sum()} of {off.size} pixels differ by more than 1e-4"
    np.testing.assert_allclose(got, want, rtol=0, atol=0.02)
    from keras_fer_viz.metrics import spearman

    got, want = got.reshape(len(got), -1), want.reshape(len(want), -1)
    # A blank map (Guided Grad-CAM where Grad-CAM is blank) has no ranking: it
    # must be blank on both (checked above, within 0.02), and is left out here.
    ranked = np.ptp(want, axis=1) > 0
    assert spearman(got[ranked], want[ranked]).min() > 0.999


def test_the_backend_under_test_is_the_one_asked_for():
    import os

    assert keras.backend.backend() == os.environ.get("KERAS_BACKEND", "tensorflow")
    assert _gradients.backend() == keras.backend.backend()


def test_value_and_grad_differentiates_only_the_inputs_asked_for():
    # logits = x @ A + d @ B: the gradient of logit t is A[:, t] at x and
    # B[:, t] at d, for every row.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(2, 3))
    x_in, d_in = keras.Input((4,)), keras.Input((2,))
    dense_x = keras.layers.Dense(3, use_bias=False)
    dense_d = keras.layers.Dense(3, use_bias=False)
    probe = keras.Model([x_in, d_in], [keras.layers.Add()([dense_x(x_in), dense_d(d_in)])])
    dense_x.set_weights([a])
    dense_d.set_weights([b])
    x = rng.normal(size=(5, 4)).astype("float32")
    d = rng.normal(size=(5, 2)).astype("float32")
    t = np.array([0, 1, 2, 2, 1], np.int32)
    specs = [((None, 4), "float32"), ((None, 2), "float32"), ((None,), "int32")]

    def run(wrt):
        vg = _gradients.value_and_grad(probe, wrt=wrt)

        def fn(x, d, t):
            outputs, grads, _ = vg([x, d], t)
            present = [g for g in grads if g is not None]
            return [outputs[-1], *present]

        return _gradients.compile(fn, probe, specs)(x, d, t)

    logits, gx, gd = run(None)
    np.testing.assert_allclose(logits, x @ a + d @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, a[:, t].T, rtol=1e-6)
    np.testing.assert_allclose(gd, b[:, t].T, rtol=1e-6)
    only_d = run([1])
    assert len(only_d) == 2  # the gradient at x was not taken
    np.testing.assert_allclose(only_d[1], b[:, t].T, rtol=1e-6)
    with pytest.raises(ValueError, match=r"indices of the probe's 2 inputs.*\[2\]"):
        _gradients.value_and_grad(probe, wrt=[2])([x, d], t)
