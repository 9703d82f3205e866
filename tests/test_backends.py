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
