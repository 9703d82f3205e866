"""Tests of keras_fer_viz.data.synthetic: shapes, balance, purity, ground truth."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keras_fer_viz.data.fer2013 import EMOTIONS
from keras_fer_viz.data.synthetic import EXPRESSIONS, synthetic_faces


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(140, seed=3)


@pytest.fixture(scope="module")
def neutral():
    return synthetic_faces(140, seed=3, neutral_features=True)


def test_shapes_and_dtypes(faces):
    images, labels, evidence = faces  # unpacks as a tuple
    assert images.shape == (140, 48, 48, 1) and images.dtype == np.uint8
    assert labels.shape == (140,) and labels.dtype == np.int64
    assert evidence.shape == (140, 48, 48) and evidence.dtype == bool
    assert faces.images is images and faces.evidence is evidence


def test_classes_balanced_and_shuffled(faces):
    assert np.bincount(faces.labels, minlength=7).tolist() == [20] * 7
    assert not np.array_equal(faces.labels, np.arange(140) % 7)


def test_pure_function_of_arguments(faces):
    again = synthetic_faces(140, seed=3)
    for a, b in zip(faces, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = synthetic_faces(140, seed=4)
    assert not np.array_equal(faces.images, other.images)


def test_faces_vary_and_use_the_grey_range(faces):
    x = faces.images.astype(float)
    # Lighting, contrast and background differ from face to face.
    assert np.std(x.mean(axis=(1, 2, 3))) > 10
    assert x.min() < 30 and x.max() > 220
    # No two faces are the same picture.
    flat = faces.images.reshape(len(x), -1)
    assert len(np.unique(flat, axis=0)) == len(flat)


def test_evidence_is_a_small_central_part_of_every_face(faces):
    share = faces.evidence.mean(axis=(1, 2))
    assert (share > 0.04).all() and (share < 0.3).all()
    # The features sit in the middle of the picture, not on its border.
    assert not faces.evidence[:, :3].any() and not faces.evidence[:, -3:].any()
    assert not faces.evidence[:, :, :3].any() and not faces.evidence[:, :, -3:].any()


def test_neutral_features_change_only_evidence_pixels(faces, neutral):
    np.testing.assert_array_equal(faces.labels, neutral.labels)
    changed = faces.images[..., 0] != neutral.images[..., 0]
    inside = faces.evidence | neutral.evidence
    assert changed.any()
    assert not (changed & ~inside).any(), "a non-feature pixel depends on the class"
    # Neutral faces are drawn the same in both modes.
    is_neutral = faces.labels == EMOTIONS.index("Neutral")
    np.testing.assert_array_equal(faces.images[is_neutral], neutral.images[is_neutral])
    # Every other class differs from its neutral version.
    assert changed[~is_neutral].any(axis=(1, 2)).all()


def test_class_features_show_in_the_pixels():
    """Surprise opens the mouth (dark pixels in the mouth), Happy does not frown."""
    f = synthetic_faces(700, seed=0, image_size=48)
    x = f.images[..., 0].astype(float)
    # Darkest evidence pixel relative to the face's median: open mouths are black.
    rel = np.array([np.percentile(x[i][f.evidence[i]], 2) - np.median(x[i]) for i in range(len(x))])
    by_class = np.array([rel[f.labels == c].mean() for c in range(7)])
    assert by_class[EMOTIONS.index("Surprise")] < by_class[EMOTIONS.index("Neutral")] - 10
    # Evidence area follows eye and mouth opening: largest for Surprise, Fear.
    area = f.evidence.mean(axis=(1, 2))
    mean_area = np.array([area[f.labels == c].mean() for c in range(7)])
    assert set(np.argsort(mean_area)[-2:]) == {EMOTIONS.index("Surprise"), EMOTIONS.index("Fear")}


@pytest.mark.parametrize("size", [16, 32, 64])
def test_other_image_sizes(size):
    f = synthetic_faces(7, seed=1, image_size=size)
    assert f.images.shape == (7, size, size, 1)
    assert f.evidence.shape == (7, size, size)
    assert f.evidence.any(axis=(1, 2)).all()


def test_every_emotion_has_an_expression():
    assert tuple(EXPRESSIONS) == EMOTIONS
    keys = set(EXPRESSIONS["Neutral"])
    assert all(set(v) == keys for v in EXPRESSIONS.values())
    # No two emotions share a prototype.
    protos = {tuple(v.values()) for v in EXPRESSIONS.values()}
    assert len(protos) == 7


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=0), r"`n`.*>= 1.*Received: 0"),
        (dict(n=-3), r"`n`.*Received: -3"),
        (dict(n=2.5), r"`n`.*integer.*Received: 2.5"),
        (dict(n=True), r"`n`.*Received: True"),
        (dict(n=7, image_size=8), r"`image_size`.*>= 16.*Received: 8"),
        (dict(n=7, seed=-1), r"`seed`.*>= 0.*Received: -1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic_faces(**kwargs)


@given(n=st.integers(1, 40), seed=st.integers(0, 2**31 - 1))
def test_properties(n, seed):
    f = synthetic_faces(n, seed=seed, image_size=24)
    assert f.images.shape == (n, 24, 24, 1)
    counts = np.bincount(f.labels, minlength=7)
    assert counts.max() - counts.min() <= 1
    assert f.evidence.any(axis=(1, 2)).all()
    assert ((f.labels >= 0) & (f.labels < 7)).all()
