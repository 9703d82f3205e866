"""Gradient saliency: where in the image does a small change move the class score?

- `Saliency`: the absolute gradient of the class score with respect to the
  pixels, reduced over channels (Simonyan, Vedaldi and Zisserman 2014, "Deep
  inside convolutional networks").
- `SmoothGrad`: the gradient averaged over noisy copies of the image
  (Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise").
- `GradientXInput`: the gradient times the input, summed over channels
  (Shrikumar et al. 2016, "Not just a black box: learning important
  features through propagating activation differences").
- `IntegratedGradients`: the gradient integrated along the straight path
  from a baseline image, times the difference to the baseline (Sundararajan,
  Taly and Yan 2017, "Axiomatic attribution for deep networks"); its
  attributions add up to the change of the score.

Each differentiates the pre-softmax logit by default (``score="logit"``),
in compiled batches; samples of SmoothGrad and integration steps are
batched with the images, and split into chunks of equal size when one
image's samples exceed the memory bound (`keras_fer_viz._explainer`): the
weighted gradients of the chunks are summed, so the result does not depend
on the chunking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import keras
import numpy as np
from keras import ops
from numpy.typing import ArrayLike

from keras_fer_viz import _gradients
from keras_fer_viz._explainer import Explainer, _predicted, check_positive_int
from keras_fer_viz.registry import register

__all__ = ["Saliency", "SmoothGrad", "IntegratedGradients", "GradientXInput"]

_REDUCTIONS = ("max", "mean", "norm")


def _reduce_channels(grads, reduce):
    """(N, H, W, C) gradients -> (N, H, W) magnitudes."""
    if reduce == "max":
        return ops.max(ops.abs(grads), axis=-1)
    if reduce == "mean":
        return ops.mean(ops.abs(grads), axis=-1)
    return ops.sqrt(ops.sum(ops.square(grads), axis=-1))


def _check_reduce(reduce):
    if reduce not in _REDUCTIONS:
        raise ValueError(f"Expected reduce in {_REDUCTIONS}. Received: {reduce!r}")


class _InputGradient(Explainer):
    blank_reason = (
        "the class score's gradient is zero at every pixel: the units between the image "
        "and the score are switched off or saturated"
    )
    """Shared set-up: a probe model without taps and its value-and-grad function."""

    def __init__(self, model: keras.Model, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._probe, _ = self._build_probe()
        self._vg = _gradients.value_and_grad(self._probe)
        self._forward = _gradients.forward(self._probe)


class _ExpandedGradient(_InputGradient):
    """A weighted sum of gradients over perturbed copies of each image.

    A subclass supplies `_points(x)`: per-copy parameters (S, ...) and
    weights (S,); `_perturb(x, points)`: the (n, S', H, W, C) copies of a
    chunk of images for S' of the points; `_finish(x, total, *constants)`:
    the map from the weighted gradient sum; and `_count`, S. Copies are made
    in chunks of equal size (the last padded with zero-weight points, so JAX
    compiles one shape), as many as the memory bound allows.
    """

    _count: int
    _perturb: Callable[..., Any]
    _finish: Callable[..., Any]

    def _compile(self, point_spec, constant_specs=()):
        def total(x, t, points, weights, *constants):
            n, k = ops.shape(x)[0], ops.shape(points)[0]
            copies = self._perturb(x, points, *constants)
            copies = ops.reshape(copies, (-1, *x.shape[1:]))
            _, grads, _ = self._vg([copies], ops.repeat(t, k, axis=0))
            grads = ops.reshape(grads[0], (n, k, *x.shape[1:]))
            return ops.sum(grads * ops.reshape(weights, (1, k, 1, 1, 1)), axis=1)

        image = ((None, *self.input_shape), "float32")
        self._total = _gradients.compile(
            total,
            self.model,
            [image, ((None,), "int32"), point_spec, ((None,), "float32")] + list(constant_specs),
            batch=(0, 1),
        )
        self._fn = _gradients.compile(
            lambda x, g, *c: self._finish(x, g, *c),
            self.model,
            [image, image] + list(constant_specs),
            batch=(0, 1),
        )
        self._predict = _gradients.compile(
            lambda x, t: _gradients.gather_scores(self._forward([x])[-1], t)[1],
            self.model,
            [image, ((None,), "int32")],
            batch=(0, 1),
        )

    def _images_per_call(self, inputs):
        return inputs // self._count

    def _explain_chunk(self, x, t, constants, inputs):
        t = self._predict(x, t)  # the class predicted for the clean image
        points, weights, *constants = constants
        size = max(1, min(self._count, inputs // len(x)))
        pad = -self._count % size
        if pad:
            points = np.concatenate([points, np.zeros((pad, *points.shape[1:]), points.dtype)])
            weights = np.concatenate([weights, np.zeros(pad, weights.dtype)])
        total = None
        for start in range(0, len(points), size):
            part = self._total(
                x, t, points[start : start + size], weights[start : start + size], *constants
            )
            total = part if total is None else total + part
        return self._fn(x, total, *constants)


@register
class Saliency(_InputGradient):
    """Vanilla gradient saliency maps.

    The map of an image is the absolute gradient of the class score with
    respect to its pixels, reduced over channels: the pixels where a small
    change moves the score most. Use it for a first, fast look at where the
    model looks; it is noisy, and `SmoothGrad` cleans it up.

    Simonyan, Vedaldi and Zisserman (2014), "Deep inside convolutional
    networks: visualising image classification models and saliency maps".

    Args:
        model: a Keras image classifier (Sequential, Functional or nested),
            fed as it is fed in `predict` (raw pixels if it preprocesses).
        reduce: how channels are combined: ``"max"`` of the absolute
            gradients (Simonyan et al.), ``"mean"`` of them, or ``"norm"``
            (their L2 norm). Defaults to `"max"`.
        score: ``"logit"`` explains the pre-softmax score when the model
            ends in a softmax (saturated probabilities have vanishing
            gradients), ``"probability"`` the output. Defaults to `"logit"`.
        normalize: scale each map to [0, 1] by its maximum; False returns
            the raw gradient magnitudes. Defaults to `True`.
        batch_size: images per compiled call; None sizes calls by image size
            so memory stays bounded (see `keras_fer_viz._explainer`).
            Defaults to `None`.
        output: the output to explain of a multi-output model (its name or
            index); None for a model with one output. Defaults to `None`.

    Returns (from `explain`):
        float32 (N, H, W) maps, >= 0, in [0, 1] when `normalize`.

    Raises:
        ValueError: if an option is invalid, or (in `explain`) the images do
            not fit the model.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> faces = kfv.synthetic_faces(7)
    >>> maps = kfv.Saliency(model).explain(faces.images, target=faces.labels)
    >>> maps.shape, float(maps.min()) >= 0.0, float(maps.max())
    ((7, 48, 48), True, 1.0)
    """

    name = "saliency"

    def __init__(
        self,
        model: keras.Model,
        reduce: Literal["max", "mean", "norm"] = "max",
        *,
        score: Literal["logit", "probability"] = "logit",
        normalize: bool = True,
        batch_size: int | None = None,
        output: str | int | None = None,
    ) -> None:
        _check_reduce(reduce)
        super().__init__(
            model, score=score, normalize=normalize, batch_size=batch_size, output=output
        )
        self.reduce = reduce

        def fn(x, t):
            outputs, grads, _ = self._vg([x], t)
            maps = self._finish_maps(_reduce_channels(grads[0], reduce), tuple(x.shape[1:3]))
            return maps, _predicted(outputs[-1])

        self._fn = self._compile(fn)


@register
class SmoothGrad(_ExpandedGradient):
    """Saliency averaged over noisy copies of each image.

    Adds Gaussian noise of standard deviation ``noise * (max - min)`` of
    each image to `samples` copies, averages their gradients, and reduces
    the average as `Saliency` does. Sharper and less noisy than vanilla
    saliency; `samples` times the cost.

    The noise patterns are drawn once from `seed` and shared by all images
    (common random numbers), each scaled to its image's range: an image's
    map does not depend on which other images are in the batch, and the
    same seed gives the same maps.

    Smilkov et al. (2017), "SmoothGrad: removing noise by adding noise".

    Args:
        model: a Keras image classifier.
        samples: noisy copies per image. Defaults to `25`.
        noise: noise level, as a share of each image's value range.
            Defaults to `0.15`.
        reduce: channel reduction, as in `Saliency`. Defaults to `"max"`.
        seed: seed of the noise. Defaults to `0`.
        score: ``"logit"`` or ``"probability"``, as in `Saliency`.
            Defaults to `"logit"`.
        normalize: scale each map to [0, 1]. Defaults to `True`.
        batch_size: model inputs (noisy copies) per compiled call; None
            sizes calls by image size so memory stays bounded, splitting one
            image's samples into chunks when they exceed it. Defaults to
            `None`.
        output: a multi-output model's output to explain (name or index).
            Defaults to `None`.

    Returns (from `explain`):
        float32 (N, H, W) maps, >= 0, in [0, 1] when `normalize`.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> maps = kfv.SmoothGrad(model, samples=8).explain(kfv.synthetic_faces(2).images)
    >>> maps.shape
    (2, 48, 48)
    """

    name = "smoothgrad"

    def __init__(
        self,
        model: keras.Model,
        samples: int = 25,
        noise: float = 0.15,
        reduce: Literal["max", "mean", "norm"] = "max",
        *,
        seed: int = 0,
        score: Literal["logit", "probability"] = "logit",
        normalize: bool = True,
        batch_size: int | None = None,
        output: str | int | None = None,
    ) -> None:
        samples = check_positive_int(samples, "samples")
        if not (isinstance(noise, (int, float)) and 0 <= noise and np.isfinite(noise)):
            raise ValueError(f"Expected a noise level >= 0. Received: noise={noise!r}")
        _check_reduce(reduce)
        super().__init__(
            model, score=score, normalize=normalize, batch_size=batch_size, output=output
        )
        self.samples, self.noise, self.reduce, self.seed = samples, float(noise), reduce, seed
        self._count = samples
        self._compile(((None, *self.input_shape), "float32"))
        self._banks: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}

    def _perturb(self, x, bank):
        lo = ops.min(x, axis=(1, 2, 3), keepdims=True)
        hi = ops.max(x, axis=(1, 2, 3), keepdims=True)
        sigma = self.noise * (hi - lo)
        return ops.expand_dims(x, 1) + ops.expand_dims(sigma, 1) * ops.expand_dims(bank, 0)

    def _finish(self, x, total):
        return self._finish_maps(_reduce_channels(total, self.reduce), tuple(x.shape[1:3]))

    def _constants(self, x):
        shape = x.shape[1:]
        if shape not in self._banks:
            rng = np.random.default_rng(self.seed)
            bank = rng.standard_normal((self.samples, *shape)).astype(np.float32)
            weights = np.full(self.samples, 1.0 / self.samples, np.float32)
            self._banks[shape] = (bank, weights)
        return self._banks[shape]


@register
class IntegratedGradients(_ExpandedGradient):
    """Integrated gradients: attributions that add up to the change of the score.

    The gradient of the class score is integrated along the straight path
    from a baseline image to the image (Gauss-Legendre quadrature with
    `steps` nodes, all batched with the images) and multiplied by the
    difference image. The raw attributions, summed over channels, add up to
    ``f(image) - f(baseline)`` (completeness); the default map is their
    absolute value, scaled to [0, 1].

    Sundararajan, Taly and Yan (2017), "Axiomatic attribution for deep
    networks".

    Args:
        model: a Keras image classifier.
        steps: integration nodes. Defaults to `32`.
        baseline: the reference image, in the model's input units: a
            number (``0.0``, black for raw pixels) or an array broadcastable
            to (H, W, C). Defaults to `0.0`.
        score: ``"logit"`` or ``"probability"``, as in `Saliency`.
            Defaults to `"logit"`.
        normalize: True gives |attribution| scaled to [0, 1]; False the
            signed attributions (N, H, W), summed over channels.
            Defaults to `True`.
        batch_size: model inputs (path points) per compiled call; None
            sizes calls by image size so memory stays bounded, splitting one
            image's steps into chunks when they exceed it. Defaults to
            `None`.
        output: a multi-output model's output to explain (name or index).
            Defaults to `None`.

    Returns (from `explain`):
        float32 (N, H, W) maps in [0, 1], or signed attributions.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> ig = kfv.IntegratedGradients(model, steps=16, normalize=False)
    >>> ig.explain(kfv.synthetic_faces(1).images).shape
    (1, 48, 48)
    """

    name = "integrated_gradients"
    signed = True
    positive = "abs"

    def __init__(
        self,
        model: keras.Model,
        steps: int = 32,
        baseline: ArrayLike = 0.0,
        *,
        score: Literal["logit", "probability"] = "logit",
        normalize: bool = True,
        batch_size: int | None = None,
        output: str | int | None = None,
    ) -> None:
        steps = check_positive_int(steps, "steps")
        super().__init__(
            model, score=score, normalize=normalize, batch_size=batch_size, output=output
        )
        base = self._check_baseline(baseline)
        self.steps, self.baseline, self._count = steps, base, steps
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        self._alphas = ((nodes + 1) / 2).astype(np.float32)  # nodes on [0, 1]
        self._weights = (weights / 2).astype(np.float32)  # they sum to 1
        self._compile(((None,), "float32"), [((1, *self.input_shape), "float32")])

    def _perturb(self, x, alphas, base):
        a = ops.reshape(alphas, (1, -1, 1, 1, 1))
        return ops.expand_dims(base, 0) + a * ops.expand_dims(x - base, 1)

    def _finish(self, x, total, base):
        attributions = ops.sum((x - base) * total, axis=-1)
        return self._finish_maps(attributions, tuple(x.shape[1:3]))

    def _constants(self, x):
        base = np.broadcast_to(self.baseline, x.shape[1:])[None].astype(np.float32)
        return self._alphas, self._weights, base


@register
class GradientXInput(_InputGradient):
    """Gradient times input: each pixel's first-order contribution to the score.

    The raw map is ``sum_c x[h, w, c] * d score / d x[h, w, c]``, signed:
    for a linear model it is exactly each pixel's term ``W * x`` of the
    score, and in general the first-order Taylor term of the score around a
    zero image. One forward and backward pass, like `Saliency`; unlike
    saliency it says which way a pixel pushes, and is zero where the input
    is zero (black pixels of raw images get no credit: use
    `IntegratedGradients` with another baseline for those). The default map
    is its absolute value scaled to [0, 1].

    Shrikumar et al. (2016), "Not just a black box: learning important
    features through propagating activation differences"; analysed by
    Ancona et al. (2018), "Towards better understanding of gradient-based
    attribution methods for deep neural networks".

    Args:
        model: a Keras image classifier.
        score: ``"logit"`` or ``"probability"``, as in `Saliency`.
            Defaults to `"logit"`.
        normalize: True gives |gradient x input| scaled to [0, 1]; False the
            signed raw map (N, H, W) in score units, summed over channels.
            Defaults to `True`.
        batch_size: images per compiled call; None sizes calls by image size
            so memory stays bounded. Defaults to `None`.
        output: a multi-output model's output to explain (name or index).
            Defaults to `None`.

    Returns (from `explain`):
        float32 (N, H, W) maps in [0, 1], or signed raw maps.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> raw = kfv.GradientXInput(model, normalize=False).explain(kfv.synthetic_faces(2).images)
    >>> raw.shape, bool((raw < 0).any() and (raw > 0).any())
    ((2, 48, 48), True)
    """

    name = "gradient_x_input"
    signed = True
    positive = "abs"

    def __init__(
        self,
        model: keras.Model,
        *,
        score: Literal["logit", "probability"] = "logit",
        normalize: bool = True,
        batch_size: int | None = None,
        output: str | int | None = None,
    ) -> None:
        super().__init__(
            model, score=score, normalize=normalize, batch_size=batch_size, output=output
        )

        def fn(x, t):
            outputs, grads, _ = self._vg([x], t)
            maps = self._finish_maps(ops.sum(x * grads[0], axis=-1), tuple(x.shape[1:3]))
            return maps, _predicted(outputs[-1])

        self._fn = self._compile(fn)
