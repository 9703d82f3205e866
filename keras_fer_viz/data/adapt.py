"""Fitting images to a model's input: size, channels and value range.

Data come at their own size and colour (FER2013: 48x48 grayscale pixels in
0-255); a model wants its own (a 64x64 grayscale CNN, a 96x96 RGB backbone
fed values in [-1, 1]). `adapt_images` converts a batch of 0-255 pixels to
what a model takes and says in plain English what it did, so that a report
can tell its reader which images the model saw. Resizing is bilinear with
antialiasing (`keras.ops.image.resize`, in chunks of bounded size); gray
becomes RGB by repeating the channel and RGB becomes gray by the ITU-R
BT.601 luminance (as PIL and TensorFlow convert); scaling is affine, 0 ->
low and 255 -> high.

Keras is imported only when an image must be resized.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["PIXEL_RANGE", "adapt_images", "adapt_masks", "describe_range"]

#: The value range of raw pixels, which `adapt_images` takes and `fer_cnn` is fed.
PIXEL_RANGE = (0.0, 255.0)
# ITU-R BT.601 luma weights: PIL's convert("L") and tf.image.rgb_to_grayscale.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# Output values resized at once: bounds the backend's working memory.
_CHUNK_VALUES = 1 << 24


def _model_shape(input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
    """(H, W, C) from a model's input shape, with or without the batch axis."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if shape is not None and len(shape) == 4:
        shape = shape[1:]
    if (
        shape is None
        or len(shape) != 3
        or any(d is not None and (isinstance(d, bool) or not isinstance(d, int)) for d in shape)
        or any(d is not None and d < 1 for d in shape)
    ):
        raise ValueError(
            "Expected `input_shape` to be a model's image input shape, (H, W, C) or "
            "(None, H, W, C), channels last, each side an int or None. "
            f"Received: input_shape={input_shape!r}. Pass `model.input_shape`."
        )
    return shape


def _check_range(input_range: Sequence[float]) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise ValueError(
            "Expected `input_range` to be two numbers (low, high), e.g. (0, 255) or (-1, 1). "
            f"Received: input_range={input_range!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(
            "Expected `input_range` (low, high) with finite low < high. "
            f"Received: input_range={input_range!r}"
        )
    return low, high


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def describe_range(input_range: Sequence[float]) -> str:
    """``"[-1, 1]"`` for ``(-1.0, 1.0)``: a value range as the report writes it."""
    low, high = _check_range(input_range)
    return f"[{_number(low)}, {_number(high)}]"


def _resize(images: np.ndarray, size: tuple[int, ...], interpolation: str) -> np.ndarray:
    """Batched resize through keras.ops, chunked so that no call holds too much."""
    import keras

    n, h, w, c = images.shape
    per_image = max(h * w, size[0] * size[1]) * c
    step = max(1, _CHUNK_VALUES // per_image)
    out = np.empty((n, *size, c), images.dtype)
    for start in range(0, n, step):
        chunk = keras.ops.image.resize(
            images[start : start + step],
            size,
            interpolation=interpolation,
            antialias=interpolation != "nearest",
            data_format="channels_last",
        )
        out[start : start + step] = keras.ops.convert_to_numpy(chunk)
    return out


def adapt_images(
    images: ArrayLike,
    input_shape: Sequence[int | None],
    input_range: Sequence[float] = PIXEL_RANGE,
) -> tuple[np.ndarray, list[str]]:
    """Converts images of 0-255 pixels to a model's input size, channels and range.

    Use it to feed one data set to models that take other image sizes,
    colours or value ranges: FER2013's 48x48 gray faces to a 96x96 RGB
    network that wants values in [-1, 1], say. Steps that are not needed are
    not taken, and those taken are returned as sentences for a report.

    - Size: resized (bilinear, antialiased) to the model's (H, W); a model
      whose H and W are None takes any size, and the images keep theirs.
    - Channels: 1 -> 3 repeats the gray channel; 3 -> 1 takes the luminance
      0.299 R + 0.587 G + 0.114 B (ITU-R BT.601); a model whose channel
      count is None keeps the images' channels.
    - Range: pixels are mapped affinely from [0, 255] to `input_range`
      (nothing is done for the default, (0, 255)).

    Args:
        images: (N, H, W, C) or (N, H, W) images with pixels in [0, 255]
            (uint8 or float), C = 1 or 3, channels last.
        input_shape: the model's input shape, ``model.input_shape`` or its
            (H, W, C) part; sides may be None.
        input_range: (low, high), the values the model takes for black and
            white. Defaults to `(0, 255)` (raw pixels, as `fer_cnn` takes).

    Returns:
        A tuple ``(adapted, steps)``: float32 images (N, H', W', C') as the
        model takes them, and a list of strings saying what was done, e.g.
        ``["resized 48x48 -> 64x64", "gray -> RGB (channel repeated)",
        "scaled 0-255 pixels to [-1, 1]"]``; empty when nothing was.

    Raises:
        ValueError: if the images are not a batch of 1- or 3-channel images,
            if the channels cannot be converted (e.g. 4 to 3), or if
            `input_shape` or `input_range` is invalid.

    Example:

    >>> faces = np.zeros((2, 48, 48, 1), np.uint8)
    >>> x, steps = adapt_images(faces, (None, 64, 64, 3), input_range=(-1, 1))
    >>> x.shape, x.dtype.name, float(x.min())
    ((2, 64, 64, 3), 'float32', -1.0)
    >>> steps
    ['resized 48x48 -> 64x64', 'gray -> RGB (channel repeated)', 'scaled 0-255 pixels to [-1, 1]']
    """
    shape = _model_shape(input_shape)
    low, high = _check_range(input_range)
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if (
        x.ndim != 4
        or not len(x)
        or min(x.shape[1:3]) < 1
        or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool)
    ):
        raise ValueError(
            "Expected a non-empty batch of images (N, H, W, C) or (N, H, W) of numbers. "
            f"Received: shape={x.shape}, dtype={x.dtype}"
        )
    x = x.astype(np.float32, copy=False)
    steps = []
    source_c, target_c = x.shape[-1], shape[2]
    if (
        target_c is not None
        and target_c != source_c
        and (source_c, target_c)
        not in (
            (1, 3),
            (3, 1),
        )
    ):
        raise ValueError(
            f"Cannot convert images with {source_c} channel(s) to the model's {target_c}: "
            "expected gray (1 channel) or RGB (3 channels) on both sides. "
            f"Received: images of shape {x.shape} for a model input of shape {shape}. "
            "Convert the images to gray or RGB first."
        )
    if (source_c, target_c) == (3, 1):  # before resizing: one channel to resize, not three
        x = np.tensordot(x, _LUMA, axes=([-1], [0]))[..., None].astype(np.float32)
    size = tuple(t if t is not None else s for t, s in zip(shape[:2], x.shape[1:3], strict=True))
    if size != tuple(x.shape[1:3]):
        steps.append(f"resized {x.shape[1]}x{x.shape[2]} -> {size[0]}x{size[1]}")
        x = _resize(x, size, "bilinear")
    if (source_c, target_c) == (3, 1):
        steps.append("RGB -> gray (luminance 0.299 R + 0.587 G + 0.114 B)")
    elif (source_c, target_c) == (1, 3):
        steps.append("gray -> RGB (channel repeated)")
        x = np.repeat(x, 3, axis=-1)
    if (low, high) != PIXEL_RANGE:
        steps.append(f"scaled 0-255 pixels to {describe_range((low, high))}")
        x = x * np.float32((high - low) / 255.0) + np.float32(low)
    return x, steps


def adapt_masks(masks: ArrayLike, input_shape: Sequence[int | None]) -> np.ndarray:
    """Resizes (N, H, W) bool masks (e.g. ground-truth evidence) to a model's (H, W).

    The nearest pixel is taken, so a mask stays a mask; masks already at the
    model's size, or for a model whose H and W are None, are returned as
    they are.

    Args:
        masks: (N, H, W) masks, bool or 0/1.
        input_shape: the model's input shape, as in `adapt_images`.

    Returns:
        (N, H', W') bool masks.

    Raises:
        ValueError: if `masks` is not (N, H, W) or `input_shape` is invalid.
    """
    shape = _model_shape(input_shape)
    m = np.asarray(masks)
    if m.ndim != 3 or not len(m):
        raise ValueError(f"Expected masks of shape (N, H, W). Received: shape={m.shape}")
    size = tuple(t if t is not None else s for t, s in zip(shape[:2], m.shape[1:], strict=True))
    m = m.astype(bool)
    if size == tuple(m.shape[1:]):
        return m
    return _resize(m[..., None].astype(np.float32), size, "nearest")[..., 0] > 0.5
