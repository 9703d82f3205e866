"""What every explainer shares: input checks, targets, batching, normalisation.

An explainer binds a model in its constructor and data in ``explain``
(captum's shape): ``Method(model, **options).explain(images, target)``
returns one (H, W) map per image. Subclasses build one compiled function
``(images, targets, *constants) -> maps`` and say how many images fit in one
call; this base class checks the input, streams it through that function in
batches, and fills a preallocated output, so memory stays bounded for any N.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_fer_viz import layers as _layers

__all__ = ["Explainer", "as_images", "as_targets", "normalize_maps"]


def as_images(images, input_shape, model_name="model") -> np.ndarray:
    """Checks images against a model's (H, W, C) input; returns float32 (N, H, W, C).

    A single (H, W, C) image becomes a batch of one. Integer pixels are cast
    to float32 unchanged: the model holds its own preprocessing.
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    expected = (
        "(N, "
        + ", ".join("H W C".split()[i] if d is None else str(d) for i, d in enumerate(input_shape))
        + ")"
    )
    if x.ndim != 4:
        raise ValueError(
            f"Expected images of shape {expected} or a single image (H, W, C) for "
            f"{model_name!r}. Received: shape={x.shape}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"Expected at least one image. Received: shape={x.shape}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or np.iscomplexobj(x):
        raise ValueError(f"Expected real-valued images. Received: dtype={x.dtype}")
    mismatch = [
        i
        for i, (e, g) in enumerate(zip(input_shape, x.shape[1:], strict=True))
        if e is not None and e != g
    ]
    if mismatch:
        hint = ""
        if mismatch == [2]:
            hint = (
                " Convert grayscale to RGB with np.repeat(images, 3, axis=-1), or RGB to "
                "grayscale with images.mean(axis=-1, keepdims=True)."
            )
        raise ValueError(
            f"Expected images of shape {expected} for {model_name!r}. "
            f"Received: shape={x.shape}.{hint}"
        )
    x = x.astype(np.float32, copy=False)
    bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if bad.any():
        raise ValueError(
            f"Expected finite pixel values. Received: NaN or infinity in image "
            f"{int(np.flatnonzero(bad)[0])} ({int(bad.sum())} image(s) affected)"
        )
    return x


def as_targets(target, n: int, num_classes: int) -> np.ndarray:
    """Turns ``target`` into (n,) int32 class indices; -1 stands for the predicted class."""
    if target is None:
        return np.full(n, -1, np.int32)
    t = np.asarray(target)
    if t.dtype == bool or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(
            "Expected target None (the predicted class), an int, or one int per image. "
            f"Received: {target!r}"
        )
    if t.ndim == 0:
        t = np.full(n, int(t))
    elif t.shape != (n,):
        raise ValueError(f"Expected one target per image: shape ({n},). Received: shape={t.shape}")
    bad = (t < 0) | (t >= num_classes)
    if bad.any():
        raise ValueError(
            f"Expected target classes in [0, {num_classes}) for a model with {num_classes} "
            f"outputs. Received: {int(t[bad][0])}"
        )
    return t.astype(np.int32)


def normalize_maps(maps):
    """Scales each (H, W) map to [0, 1] by its maximum; an all-zero map stays zero.

    Maps must be >= 0 (take the ReLU or the absolute value first). Runs in
    `keras.ops`, inside the compiled functions.
    """
    peak = ops.max(maps, axis=(1, 2), keepdims=True)
    safe = ops.where(peak > 0, peak, ops.ones_like(peak))
    return ops.where(peak > 0, maps / safe, ops.zeros_like(maps))


class Explainer:
    """Base class: ``Method(model, **options).explain(images, target=None)``.

    Subclasses set `self._fn`, a compiled function from a batch of images
    and targets (and `self._constants(x)`, extra arrays) to maps, and may
    override `_images_per_call`.
    """

    #: True for methods whose raw map has a sign (the default map is still >= 0).
    signed = False

    def __init__(self, model, *, score="logit", normalize=True, batch_size=64):
        if not isinstance(model, keras.Model):
            raise TypeError(f"Expected a `keras.Model`. Received: {type(model).__name__}")
        if score not in ("logit", "probability"):
            raise ValueError(f"Expected score 'logit' or 'probability'. Received: {score!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Expected a positive int batch_size. Received: {batch_size!r}")
        self.model = model
        self.score = score
        self.normalize = bool(normalize)
        self.batch_size = batch_size
        self.input_shape = _layers.input_shape(model)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def _images_per_call(self, batch_size: int) -> int:
        return batch_size

    def _constants(self, x):
        return ()

    def explain(self, images, target=None, batch_size=None) -> np.ndarray:
        """Explains a batch of images.

        Args:
            images: (N, H, W, C) or one (H, W, C) image, raw pixels as the
                model takes them (uint8 is cast to float32, not rescaled).
            target: the class to explain: None for each image's predicted
                class, an int for all images, or one int per image.
                Defaults to `None`.
            batch_size: overrides the constructor's `batch_size` for this
                call. Defaults to `None`.

        Returns:
            float32 maps, (N, H, W) in [0, 1] (or the raw maps when the
            explainer was built with ``normalize=False``).

        Raises:
            ValueError: if the images do not fit the model or a target is
                out of range.
        """
        x = as_images(images, self.input_shape, self.model.name)
        t = as_targets(target, len(x), self.num_classes)
        if batch_size is None:
            batch_size = self.batch_size
        elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Expected a positive int batch_size. Received: {batch_size!r}")
        step = max(1, self._images_per_call(batch_size))
        constants = self._constants(x)
        out = None
        for start in range(0, len(x), step):
            maps = self._fn(x[start : start + step], t[start : start + step], *constants)
            if out is None:
                out = np.empty((len(x),) + maps.shape[1:], np.float32)
            out[start : start + step] = maps
        return out

    def __repr__(self):
        return f"{type(self).__name__}(model={self.model.name!r})"
