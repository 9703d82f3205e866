"""What every explainer shares: input checks, targets, batching, normalisation.

An explainer binds a model in its constructor and data in ``explain``
(captum's shape): ``Method(model, **options).explain(images, target)``
returns one (H, W) map per image. Subclasses build one compiled function
``(images, targets, *constants) -> maps`` and say how many images fit in one
call; this base class checks the input, streams it through that function in
batches, and fills a preallocated output, so memory stays bounded for any N.

Memory is bounded by default: a compiled call takes at most
`PIXELS_PER_CALL` input pixels (positions, H x W, summed over the model
inputs of the call: images, noisy copies, integration steps, perturbed
images), so a 224x224 image gets about 1/22 of the inputs a 48x48 face does.
Activation memory, which dominates the peak of a forward and backward pass,
grows with the pixels; an explicit ``batch_size`` overrides the bound.
Batch size changes no result on TensorFlow and JAX (on PyTorch, whose CPU
convolutions round differently per batch size, a ReLU input within rounding
of zero can flip).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, overload

import keras
import numpy as np
from keras import ops
from numpy.typing import ArrayLike

from keras_fer_viz import _gradients
from keras_fer_viz import layers as _layers

__all__ = [
    "Explainer",
    "PIXELS_PER_CALL",
    "as_images",
    "as_targets",
    "check_batch_size",
    "check_positive_int",
    "inputs_per_call",
    "normalize_maps",
    "upsample_maps",
]

#: Input pixels (H x W positions, summed over a call's model inputs) per
#: compiled call by default: 227 faces of 48x48, 10 images of 224x224.
#: Measured (benchmarks/RESULTS.md): SmoothGrad(64) and IG(64) through
#: ResNet50V2 at 224x224 peak well under 6 GB, and speed at 48x48 is that of
#: larger calls.
PIXELS_PER_CALL = 2**19


@overload
def check_positive_int(
    value: object, name: str, minimum: int = 1, allow_none: Literal[False] = False
) -> int: ...
@overload
def check_positive_int(
    value: object, name: str, minimum: int = 1, allow_none: bool = False
) -> int | None: ...
def check_positive_int(
    value: object, name: str, minimum: int = 1, allow_none: bool = False
) -> int | None:
    """`value` as an int >= `minimum` (or None when `allow_none`); else a ValueError.

    Bools are refused (``True`` is not a count); numpy integers are accepted.
    The error names the argument, what was expected and what was received.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = f"a positive int `{name}`" if minimum == 1 else f"an int `{name}` >= {minimum}"
        alternative = " or None" if allow_none else ""
        raise ValueError(f"Expected {what}{alternative}. Received: {value!r}")
    return int(value)


def check_batch_size(batch_size: object, name: str = "batch_size") -> int | None:
    """None, or a positive int; anything else is refused with what was received."""
    return check_positive_int(batch_size, name, allow_none=True)


def inputs_per_call(image_shape: Sequence[int], batch_size: int | None = None) -> int:
    """Model inputs per compiled call: `batch_size`, or as many as `PIXELS_PER_CALL` allows.

    Args:
        image_shape: (H, W) or (H, W, C) of one model input.
        batch_size: an explicit count, or None for the memory bound.
    """
    if batch_size is not None:
        return _gradients.call_size(batch_size)
    h, w = int(image_shape[0]), int(image_shape[1])
    return _gradients.call_size(max(1, PIXELS_PER_CALL // max(1, h * w)))


def _predicted(scores):
    """The predicted classes (N,) int32 of class scores (N, C), inside a compiled function."""
    return ops.cast(ops.argmax(scores, axis=-1), "int32")


def as_images(
    images: ArrayLike, input_shape: Sequence[int | None], model_name: str = "model"
) -> np.ndarray:
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


def as_targets(
    target: int | Sequence[int] | np.ndarray | None, n: int, num_classes: int
) -> np.ndarray:
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


def normalize_maps(maps: Any) -> Any:
    """Scales each (H, W) map to [0, 1] by its maximum; an all-zero map stays zero.

    Maps must be >= 0 (take the ReLU or the absolute value first). Runs in
    `keras.ops`, inside the compiled functions.
    """
    peak = ops.max(maps, axis=(1, 2), keepdims=True)
    safe = ops.where(peak > 0, peak, ops.ones_like(peak))
    return ops.where(peak > 0, maps / safe, ops.zeros_like(maps))


def upsample_maps(maps: Any, size: tuple[int, int]) -> Any:
    """(N, h, w) maps -> (N, H, W), bilinear. Runs in `keras.ops`."""
    if tuple(maps.shape[1:3]) == tuple(size):
        return maps
    up = ops.image.resize(ops.expand_dims(maps, -1), size, interpolation="bilinear")
    return up[..., 0]


class Explainer:
    """Base class: ``Method(model, **options).explain(images, target=None)``.

    The contract. A subclass supplies:

    - `name`, its spec name (snake_case, e.g. ``"grad_cam"``), and the
      `keras_fer_viz.registry.register` decorator, which puts it in
      ``kfv.EXPLAINERS``; its constructor's keyword options (``layer``,
      ``samples``, ...) are what a spec entry may set.
    - ``__init__``: call ``super().__init__`` (model, score, normalize,
      batch_size, output are checked here), then `_build_probe` (which sets
      `num_classes` from the explained output), then `_compile` with the
      map function ``fn(images, targets, *constants) -> maps``. A map
      function ends with `_finish_maps`, which returns the raw map when
      ``normalize=False`` and otherwise makes it >= 0, upsamples it to the
      image and scales it to [0, 1], in one place for every method.
    - optionally `_constants(x)` (extra arrays for the map function),
      `_images_per_call(inputs)` (images per call, given the model inputs a
      call may take: a method that expands each image into k model inputs
      returns ``inputs // k``), and `_explain_chunk` (for a method that
      needs more than one call per chunk of images).
    - class attributes: `signed` (its raw map has a sign), `overlay` (its
      maps are coarse, drawn over the image in figures: the CAM family) and
      `blank_reason` (why one of its maps can be blank, in words).

    Everything else is here: input checks, targets, memory-bounded batching
    (`PIXELS_PER_CALL`), the output array. `keras_fer_viz.grad_cam` is the
    example to follow: a new CAM is one `_combine` method.
    """

    #: The spec name (snake_case); set by every registered subclass.
    name: str = ""
    #: True for methods whose raw map has a sign (the default map is still >= 0).
    signed = False
    #: True for coarse maps drawn over the image (the CAM family).
    overlay = False
    #: How `_finish_maps` makes a signed raw map >= 0: "relu" or "abs".
    positive = "relu"
    #: Why a map of this method can be blank (zero everywhere) when nothing is
    #: broken, in words: figures and the report's explorer say it under such a map.
    blank_reason = "the method gives no pixel any relevance for this class"
    # The compiled map function, set by every subclass's constructor.
    _fn: Callable[..., Any]
    _num_classes: int
    _last_predictions: np.ndarray | None

    def __init__(
        self,
        model: keras.Model,
        *,
        score: Literal["logit", "probability"] = "logit",
        normalize: bool = True,
        batch_size: int | None = None,
        output: str | int | None = None,
    ) -> None:
        if not isinstance(model, keras.Model):
            raise TypeError(f"Expected a `keras.Model`. Received: {type(model).__name__}")
        if score not in ("logit", "probability"):
            raise ValueError(f"Expected score 'logit' or 'probability'. Received: {score!r}")
        self.model = model
        self.score = score
        self.normalize = bool(normalize)
        self.batch_size = check_batch_size(batch_size)
        self.output = output
        self.input_shape = _layers.input_shape(model)

    def _build_probe(self, layers=(), score=None, perturb=False):
        """The probe for this explainer's output; sets `num_classes`."""
        probe, shapes = _layers.build_probe(
            self.model,
            layers,
            score=self.score if score is None else score,
            perturb=perturb,
            output=self.output,
        )
        self._num_classes = int(probe.outputs[-1].shape[-1])
        return probe, shapes

    def _compile(self, fn, *constant_specs):
        """`fn(images, targets, *constants)` compiled for this model's input shape."""
        image = ((None, *self.input_shape), "float32")
        specs = [image, ((None,), "int32"), *constant_specs]
        return _gradients.compile(fn, self.model, specs, batch=(0, 1))

    def _check_baseline(self, baseline) -> np.ndarray:
        """A reference image in the model's input units, float32, broadcastable to one input."""
        base = np.asarray(baseline, dtype=np.float32)
        try:
            np.broadcast_shapes(base.shape, tuple(d or 1 for d in self.input_shape))
        except ValueError:
            raise ValueError(
                f"Expected a baseline broadcastable to the input shape {self.input_shape}. "
                f"Received: shape={base.shape}"
            ) from None
        if not np.isfinite(base).all():
            raise ValueError("Expected a finite baseline. Received: NaN or infinity")
        return base

    def _finish_maps(self, raw, size):
        """The raw (N, h, w) map when ``normalize=False``; else >= 0, at `size`, in [0, 1]."""
        if not self.normalize:
            return raw
        maps = ops.abs(raw) if self.positive == "abs" else ops.relu(raw)
        return normalize_maps(upsample_maps(maps, size))

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def _images_per_call(self, inputs: int) -> int:
        return inputs

    def _constants(self, x):
        return ()

    def _explain_chunk(self, x, t, constants, inputs):
        """Maps of a chunk of images; `inputs` is the model inputs a call may take."""
        return self._fn(x, t, *constants)

    def explain(
        self,
        images: ArrayLike,
        target: int | Sequence[int] | np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Explains a batch of images.

        Args:
            images: (N, H, W, C) or one (H, W, C) image, raw pixels as the
                model takes them (uint8 is cast to float32, not rescaled).
            target: the class to explain: None for each image's predicted
                class, an int for all images, or one int per image.
                Defaults to `None`.
            batch_size: model inputs per compiled call for this call, over
                the constructor's; None keeps the constructor's (whose None
                sizes calls by image size). Defaults to `None`.

        Returns:
            float32 maps, (N, H, W) in [0, 1] (or the raw maps when the
            explainer was built with ``normalize=False``).

        Raises:
            ValueError: if the images do not fit the model or a target is
                out of range.
        """
        x = as_images(images, self.input_shape, self.model.name)
        t = as_targets(target, len(x), self.num_classes)
        batch_size = check_batch_size(batch_size)
        inputs = inputs_per_call(x.shape[1:3], batch_size or self.batch_size)
        step = _gradients.call_size(self._images_per_call(inputs))
        constants = self._constants(x)
        out, predictions = None, []
        for start in range(0, len(x), step):
            chunk = slice(start, start + step)
            xs, ts = x[chunk], t[chunk]
            n, size = len(xs), _gradients.padded_size(len(xs))
            if size != n:
                # JAX: a ragged chunk runs at a padded size (bounded
                # compiles), with copies of its last image that are cut off.
                xs = np.concatenate([xs, np.repeat(xs[-1:], size - n, axis=0)])
                ts = np.concatenate([ts, np.repeat(ts[-1:], size - n)])
            maps = self._explain_chunk(xs, ts, constants, inputs)
            if isinstance(maps, tuple):  # (maps, predicted classes) from one pass
                maps, predicted = maps
                predictions.append(np.asarray(predicted[:n], np.int64))
            maps = maps[:n]
            if out is None:
                out = np.empty((len(x),) + maps.shape[1:], np.float32)
            out[start : start + step] = maps
        # What the model predicted, when the method's own pass gave it (for
        # explain_dataset, which then needs no second forward pass); else None.
        self._last_predictions = (
            np.concatenate(predictions) if sum(map(len, predictions)) == len(x) else None
        )
        assert out is not None  # as_images refuses an empty batch
        return out

    def __repr__(self) -> str:
        layer = getattr(self, "layer", None)
        where = f", layer={layer.name!r}" if isinstance(layer, keras.layers.Layer) else ""
        return f"{type(self).__name__}(model={self.model.name!r}{where})"
