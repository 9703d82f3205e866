"""Tests of keras_fer_viz.data.adapt: images fitted to a model's size, channels and range.

Oracles from outside the code: Pillow's bilinear resize and its RGB -> L
conversion, np.kron for nearest-neighbour mask upsampling, and the affine
map written out by hand.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from keras_fer_viz.data import adapt_images, adapt_masks
from keras_fer_viz.data.adapt import describe_range


def _faces(n=3, size=(48, 48), channels=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, channels), dtype=np.uint8)


def _pil_resize(images, size):
    """Pillow's bilinear (antialiased when shrinking) resize, one float image at a time."""
    h, w = size
    return np.stack(
        [
            np.stack(
                [
                    np.asarray(
                        Image.fromarray(img[..., c].astype(np.float32), "F").resize(
                            (w, h), Image.Resampling.BILINEAR
                        )
                    )
                    for c in range(img.shape[-1])
                ],
                axis=-1,
            )
            for img in images
        ]
    )


def test_images_that_fit_are_returned_as_float32_with_no_step():
    x = _faces()
    out, steps = adapt_images(x, (None, 48, 48, 1))
    assert steps == [] and out.dtype == np.float32
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("size", [(64, 64), (72, 40), (24, 24), (30, 36)])
def test_resize_matches_pillow_bilinear(size):
    x = _faces()
    out, steps = adapt_images(x, (*size, 1))
    assert out.shape == (3, *size, 1)
    assert steps == [f"resized 48x48 -> {size[0]}x{size[1]}"]
    # Same kernel as Pillow (triangle, widened when shrinking): float rounding only.
    np.testing.assert_allclose(out, _pil_resize(x, size), atol=2e-3)


def test_gray_to_rgb_repeats_the_channel_and_rgb_to_gray_takes_the_luminance():
    gray = _faces(channels=1)
    rgb, steps = adapt_images(gray, (48, 48, 3))
    assert steps == ["gray -> RGB (channel repeated)"] and rgb.shape == (3, 48, 48, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], gray[..., 0])
    colour = _faces(channels=3, seed=1)
    back, steps = adapt_images(colour, (48, 48, 1))
    assert steps == ["RGB -> gray (luminance 0.299 R + 0.587 G + 0.114 B)"]
    # Pillow's convert("L") is the same ITU-R 601 luminance, rounded to uint8.
    pil = np.stack([np.asarray(Image.fromarray(img).convert("L")) for img in colour])
    np.testing.assert_allclose(back[..., 0], pil, atol=0.5 + 1e-3)


def test_all_three_steps_in_the_order_the_report_gives_them():
    x = _faces(size=(48, 48), channels=1)
    out, steps = adapt_images(x, (None, 64, 64, 3), input_range=(-1, 1))
    assert steps == [
        "resized 48x48 -> 64x64",
        "gray -> RGB (channel repeated)",
        "scaled 0-255 pixels to [-1, 1]",
    ]
    expected = _pil_resize(x, (64, 64)) / 127.5 - 1.0
    np.testing.assert_allclose(out, np.repeat(expected, 3, axis=-1), atol=2e-5)
    # RGB -> gray goes before the resize (one channel to resize): same values.
    colour = _faces(channels=3, seed=2)
    out, steps = adapt_images(colour, (24, 24, 1))
    assert steps[0] == "resized 48x48 -> 24x24" and steps[1].startswith("RGB -> gray")
    luma = colour.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(out[..., 0], _pil_resize(luma[..., None], (24, 24))[..., 0], 0, 2e-3)


@pytest.mark.parametrize(
    "low, high, text", [(-1, 1, "[-1, 1]"), (0, 1, "[0, 1]"), (-0.5, 2.5, "[-0.5, 2.5]")]
)
def test_scaling_maps_black_and_white_to_the_range(low, high, text):
    x = np.array([0, 51, 255], np.uint8).reshape(1, 1, 3, 1)
    out, steps = adapt_images(x, (1, 3, 1), input_range=(low, high))
    assert steps == [f"scaled 0-255 pixels to {text}"] and describe_range((low, high)) == text
    np.testing.assert_allclose(out.ravel(), [low, low + 0.2 * (high - low), high], atol=1e-6)


@given(
    low=st.floats(-10, 10),
    width=st.floats(0.01, 300),
    pixels=st.lists(st.integers(0, 255), min_size=1, max_size=16),
)
def test_scaling_is_affine_and_invertible(low, width, pixels):
    x = np.array(pixels, np.uint8).reshape(1, 1, -1, 1)
    out, _ = adapt_images(x, (None, None, 1), input_range=(low, low + width))
    back = (out.astype(np.float64) - low) * 255.0 / width
    np.testing.assert_allclose(back, x, atol=1e-3 * max(1.0, abs(low) / width * 255))


def test_none_sides_keep_the_size_and_3d_images_are_gray():
    x = _faces(size=(30, 20))[..., 0]  # (N, H, W)
    out, steps = adapt_images(x, (None, None, None, 1))
    assert out.shape == (3, 30, 20, 1) and steps == []
    out, steps = adapt_images(x, (None, None, 3))
    assert out.shape == (3, 30, 20, 3) and steps == ["gray -> RGB (channel repeated)"]


def test_masks_take_the_nearest_pixel():
    masks = np.random.default_rng(3).random((2, 4, 6)) > 0.5
    up = adapt_masks(masks, (None, 8, 12, 1))
    assert up.dtype == bool
    np.testing.assert_array_equal(up, np.kron(masks, np.ones((2, 2), bool)))
    np.testing.assert_array_equal(adapt_masks(masks, (None, None, 1)), masks)
    np.testing.assert_array_equal(adapt_masks(up, (4, 6, 1)), masks)


@pytest.mark.parametrize(
    "images, shape, kwargs, match",
    [
        (np.zeros((2, 8, 8, 4)), (8, 8, 3), {}, r"4 channel\(s\) to the model's 3.*Received"),
        (np.zeros((2, 8, 8, 1)), (8, 8), {}, r"input_shape.*Received: input_shape=\(8, 8\)"),
        (np.zeros((2, 8, 8, 1)), (8, 8.5, 1), {}, r"input_shape.*model.input_shape"),
        (np.zeros((0, 8, 8, 1)), (8, 8, 1), {}, r"non-empty batch.*shape=\(0, 8, 8, 1\)"),
        (np.zeros((8, 8)), (8, 8, 1), {}, r"non-empty batch.*shape=\(8, 8\)"),
        (np.zeros((2, 8, 8, 1)), (8, 8, 1), {"input_range": (1, 1)}, r"low < high.*\(1, 1\)"),
        (np.zeros((2, 8, 8, 1)), (8, 8, 1), {"input_range": "ab"}, r"two numbers.*'ab'"),
        (np.array([["a"]]), (8, 8, 1), {}, r"non-empty batch"),
    ],
)
def test_bad_arguments_say_what_was_received(images, shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        adapt_images(images, shape, **kwargs)


def test_masks_must_be_three_dimensional():
    with pytest.raises(ValueError, match=r"\(N, H, W\).*shape=\(4, 4\)"):
        adapt_masks(np.zeros((4, 4), bool), (8, 8, 1))
