"""The reference facial-expression CNN of the study.

`fer_cnn` builds the network that report A of the study explained: three
blocks of two 3x3 convolutions, max pooling and batch normalisation, then a
dense head of 256, 128 and 64 units with batch normalisation and dropout.
Input scaling and data augmentation are Keras layers inside the model, so a
saved model carries its own preprocessing and is fed raw 0-255 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

__all__ = ["compile_augmentation_on_jax", "fer_cnn"]

_BLOCK_FILTERS = (32, 64, 128)
_DENSE_UNITS = (256, 128, 64)


def fer_cnn(
    num_classes: int = 7, input_shape: Sequence[int] = (48, 48, 1), width: float = 1.0
) -> keras.Model:
    """Builds the reference CNN for facial-expression recognition.

    The stack of the study (report A), with readable layer names:
    ``rescale`` (pixels / 255), ``standardize`` (each image to zero mean and
    unit variance over all its pixels and channels, a one-group
    `GroupNormalization`: lighting and contrast carry no expression), the
    training-only augmentation layers
    ``augment_flip`` (horizontal), ``augment_rotate`` (+-5 degrees),
    ``augment_zoom`` (+-5%) and ``augment_shift`` (+-5%), then for
    ``b = 1, 2, 3`` with ``f = 32, 64, 128`` (times `width`):
    ``block{b}_conv1`` and ``block{b}_conv2`` (Conv2D(f, 3x3), ReLU),
    ``block{b}_pool`` (MaxPooling2D(2)), ``block{b}_bn``; then ``dropout``
    (0.2), ``flatten``, ``dense{i}`` (256, 128, 64 units, ReLU) each followed
    by ``dense{i}_bn`` and ``dense{i}_dropout`` (0.5), and ``predictions``, a
    softmax Dense layer.

    Convolutions use "same" padding: the last conv layer keeps a 12x12 map
    on 48x48 faces (5x5 with "valid"), which is what Grad-CAM and CAM
    upsample, and features at the border of the face are not cropped away.

    The model is returned uncompiled; `keras_fer_viz.train` compiles it.
    On JAX it compiles with XLA (`jit_compile="auto"`) despite its
    augmentation layers, which Keras marks as not XLA-compatible for
    TensorFlow's sake (`compile_augmentation_on_jax`).
    It is made of built-in Keras layers only, so it loads without this
    package, and it gives the same predictions after a round trip through
    a ``.keras`` or a legacy ``.h5`` file.

    Args:
        num_classes: number of classes. Defaults to `7`.
        input_shape: (height, width, channels) of the images, each side >= 8.
            Defaults to `(48, 48, 1)`.
        width: multiplier of the number of conv filters (e.g. `0.25` for a
            small test model). Defaults to `1.0`.

    Returns:
        A functional `keras.Model` named ``"fer_cnn"`` mapping
        (N, H, W, C) pixels in [0, 255] to (N, num_classes) probabilities.

    Raises:
        ValueError: if an argument is out of range.

    Example:

    >>> model = fer_cnn()
    >>> model.output_shape
    (None, 7)
    >>> model.get_layer("block3_conv2").output.shape
    (None, 12, 12, 128)
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"Expected `num_classes` to be an integer >= 2. Received: {num_classes!r}")
    shape = tuple(input_shape)
    if len(shape) != 3 or any(not isinstance(d, int) or d < 1 for d in shape) or min(shape[:2]) < 8:
        raise ValueError(
            "Expected `input_shape` to be (height, width, channels) with height and width "
            f">= 8. Received: input_shape={input_shape!r}"
        )
    if not width > 0:
        raise ValueError(f"Expected `width` > 0. Received: width={width!r}")

    inputs = keras.Input(shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    # Per-image standardisation: lighting and contrast vary from face to face
    # and say nothing about the expression. GroupNormalization with one group
    # normalises each image over all its pixels and channels, as
    # LayerNormalization(axis=(1, 2, 3)) does, but its config survives the
    # legacy .h5 format: Keras' .h5 loader drops a list-valued `axis` of more
    # than one entry (keras/src/legacy/saving/saving_utils.py), so that layer
    # came back normalising over the channel alone, which turned every
    # grayscale image into zeros and every prediction into the same one.
    x = layers.GroupNormalization(
        groups=1, axis=-1, center=False, scale=False, epsilon=1e-3, name="standardize"
    )(x)
    # Augmentation layers are identities outside training. They are mild:
    # a brow's tilt is an expression cue that a large rotation would blur,
    # and faces already vary in position, size and tilt. (Measured on
    # synthetic faces, 5 epochs: +-11 degrees, 10% zoom and 8% shift gave
    # 0.83-0.90 held-out accuracy; these settings 0.97.)
    x = layers.RandomFlip("horizontal", name="augment_flip")(x)
    x = layers.RandomRotation(0.015, fill_mode="nearest", name="augment_rotate")(x)
    x = layers.RandomZoom(0.05, fill_mode="nearest", name="augment_zoom")(x)
    x = layers.RandomTranslation(0.05, 0.05, fill_mode="nearest", name="augment_shift")(x)
    for b, filters in enumerate(_BLOCK_FILTERS, start=1):
        f = max(1, round(filters * width))
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"block{b}_conv1")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"block{b}_conv2")(x)
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
        x = layers.BatchNormalization(name=f"block{b}_bn")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(_DENSE_UNITS, start=1):
        x = layers.Dense(units, activation="relu", name=f"dense{i}")(x)
        x = layers.BatchNormalization(name=f"dense{i}_bn")(x)
        x = layers.Dropout(0.5, name=f"dense{i}_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="fer_cnn")
    compile_augmentation_on_jax(model)
    return model


# Keras marks its affine augmentation layers `supports_jit = False` whatever the
# backend (TensorFlow's image transform has no XLA kernel), and one such layer makes
# `compile(jit_compile="auto")` resolve to False for the whole model. On JAX that
# means training op by op, each op compiled on its own: 2 epochs of fer_cnn(width=0.5)
# on 1,400 faces took 95 s against 31 s jitted, with the same losses within 1%
# (benchmarks/RESULTS.md, `training`).
# On JAX these layers are `keras.ops` (an affine `map_coordinates`) and compile.
_JIT_SAFE_ON_JAX = (layers.RandomRotation, layers.RandomZoom, layers.RandomTranslation)


def compile_augmentation_on_jax(model: keras.Model) -> bool:
    """On JAX, lets `compile(jit_compile="auto")` jit a model with affine augmentation.

    Marks Keras' RandomRotation, RandomZoom and RandomTranslation layers of
    `model` as XLA-compatible when they are the only layers that say they are
    not. Nothing changes on another backend, or when another layer cannot be
    compiled; a model compiled already keeps its setting.

    Returns:
        True when the model can now be jitted on JAX.
    """
    if keras.backend.backend() != "jax":
        return False
    # `_flatten_layers` is what Keras' own check (`model_supports_jit`) walks.
    blocking = [layer for layer in model._flatten_layers() if not layer.supports_jit]
    if not all(isinstance(layer, _JIT_SAFE_ON_JAX) for layer in blocking):
        return False
    for layer in blocking:
        layer.supports_jit = True
    return True
