"""Guided backpropagation and Guided Grad-CAM.

- `GuidedBackprop` (Springenberg et al. 2015, "Striving for simplicity: the
  all convolutional net"): the gradient of the class score with respect to
  the pixels, where every ReLU of the model lets a gradient through only if
  it is positive and only where the ReLU's forward input was positive.
- `GuidedGradCAM` (Selvaraju et al. 2017, "Grad-CAM: visual explanations
  from deep networks via gradient-based localization"): guided
  backpropagation times the upsampled Grad-CAM map, fine detail restricted
  to the class's regions.

The guided rule is a custom gradient (`keras.ops.custom_gradient`, on every
backend) put in place of each ReLU for the duration of the compiled call
only: ReLU layers (`keras.layers.ReLU`, ``Activation("relu")``) and layers
with ``activation="relu"`` (or relu6) inside, at any depth. The attribute
that holds the ReLU is swapped on the layer object while the call is traced
(TensorFlow, JAX) or runs (PyTorch) and restored in a ``finally``, so the
caller's model is the same before and after, and every other explainer
sees the ordinary gradient. ReLUs written as ``ops.relu`` inside a
subclassed model's ``call`` cannot be reached; a model without any
reachable ReLU gets a warning (its guided gradient is the plain gradient).

Adebayo et al. (2018, "Sanity checks for saliency maps") show that guided
backpropagation barely changes when the model's weights are randomised: it
reconstructs the image more than it explains the class. The trust ranking
(`keras_fer_viz.metrics.randomization_check`) shows this.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import keras
from keras import ops

from keras_fer_viz import _gradients
from keras_fer_viz import layers as _layers
from keras_fer_viz._explainer import Explainer, upsample_maps
from keras_fer_viz.grad_cam import GradCAM
from keras_fer_viz.registry import register
from keras_fer_viz.saliency import _check_reduce, _reduce_channels

__all__ = ["GuidedBackprop", "GuidedGradCAM", "guided_relus"]

_RELU_FUNCTIONS = {keras.activations.relu: None, keras.activations.relu6: 6.0}


def _guided(forward, threshold=0.0, max_value=None):
    """`forward` (a ReLU) with the guided gradient: ReLU(upstream) where it passes."""

    @ops.custom_gradient
    def guided(x):
        y = forward(x)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            passes = x > threshold
            if max_value is not None:
                passes = ops.logical_and(passes, x < max_value)
            return ops.relu(upstream) * ops.cast(passes, upstream.dtype)

        return y, grad

    return guided


def _relu_activation(fn):
    """(is a ReLU, its max value) for a layer's `activation` function."""
    if fn in _RELU_FUNCTIONS:
        return True, _RELU_FUNCTIONS[fn]
    name = getattr(fn, "__name__", "")
    if name in ("relu", "relu6") and callable(fn):  # tf.nn.relu and the like
        return True, 6.0 if name == "relu6" else None
    return False, None


def _find_relus(model):
    """``[(layer, attribute, replacement)]`` for every ReLU inside `model`."""
    found = []
    for layer in _layers._leaf_layers(model):
        if isinstance(layer, keras.layers.ReLU):
            if float(layer.negative_slope or 0.0) != 0.0:
                continue  # a leaky ReLU is not a ReLU: guided backprop leaves it alone
            max_value = None if layer.max_value is None else float(layer.max_value)
            found.append(
                (layer, "call", _guided(layer.call, float(layer.threshold or 0.0), max_value))
            )
            continue
        activation = getattr(layer, "activation", None)
        is_relu, max_value = _relu_activation(activation)
        if is_relu:
            found.append((layer, "activation", _guided(activation, 0.0, max_value)))
    return found


@contextlib.contextmanager
def guided_relus(relus: Iterable[tuple[Any, str, Any]]) -> Iterator[None]:
    """Runs with each ReLU of `relus` (from `_find_relus`) guided; restores them after.

    The replacement is an attribute of the layer object for the duration of
    the block only; the layer's own attribute (or its absence, for ``call``)
    is put back whatever happens inside.
    """
    with _layers._INTERCEPT_LOCK:
        saved = []
        try:
            for layer, attribute, replacement in relus:
                saved.append((layer, attribute, layer.__dict__.get(attribute, _MISSING)))
                object.__setattr__(layer, attribute, replacement)
            yield
        finally:
            for layer, attribute, own in reversed(saved):
                if own is _MISSING:
                    object.__delattr__(layer, attribute)
                else:
                    object.__setattr__(layer, attribute, own)


_MISSING = object()


def _warn_without_relus(cls, model, relus):
    if not relus:
        warnings.warn(
            f"{cls.__name__}: found no ReLU layer or activation='relu' in model {model.name!r}, "
            "so the guided gradient is the plain gradient. (ReLUs written as ops.relu inside "
            "a subclassed model's call cannot be guided.)",
            RuntimeWarning,
            stacklevel=3,
        )


@register
class GuidedBackprop(Explainer):
    """Guided backpropagation: gradients that only pass positive evidence back.

    Backpropagates the class score through the model as `Saliency` does,
    except that at every ReLU a gradient passes only if it is positive and
    the ReLU's input was positive. The maps are sharp, edge-like pictures of
    the input's features. They hardly depend on the class or the weights
    (Adebayo et al. 2018): read them as "what features the network
    reconstructs", and prefer `GuidedGradCAM` or `SmoothGrad` for "why this
    class". The model is not modified (see the module docstring).

    Springenberg et al. (2015), "Striving for simplicity: the all
    convolutional net".

    Args:
        model: a Keras image classifier with ReLU activations.
        reduce: how channels are combined, as in `Saliency`: ``"max"`` of
            the absolute guided gradients, ``"mean"``, or ``"norm"``.
            Defaults to `"max"`.
        score: ``"logit"`` or ``"probability"``. Defaults to `"logit"`.
        normalize: scale each map to [0, 1] by its maximum; False returns
            the raw map: the absolute guided gradient of the score
            (score units per pixel unit) reduced over channels.
            Defaults to `True`.
        batch_size: images per compiled call; None sizes calls by image size
            so memory stays bounded. Defaults to `None`.
        output: a multi-output model's output to explain (name or index).
            Defaults to `None`.

    Returns (from `explain`):
        float32 (N, H, W) maps, >= 0, in [0, 1] when `normalize`.

    Raises:
        ValueError: if an option is invalid or the images do not fit.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> maps = kfv.GuidedBackprop(model).explain(kfv.synthetic_faces(2).images, target=3)
    >>> maps.shape, float(maps.max())
    ((2, 48, 48), 1.0)
    """

    name = "guided_backprop"
    blank_reason = "no positive gradient reaches the image through the guided ReLUs"

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
        self._relus = _find_relus(model)
        _warn_without_relus(type(self), model, self._relus)
        self._probe, _ = self._build_probe()
        vg = _gradients.value_and_grad(self._probe)

        def fn(x, t):
            with guided_relus(self._relus):
                _, grads, _ = vg([x], t)
            return self._finish_maps(_reduce_channels(grads[0], reduce), tuple(x.shape[1:3]))

        self._fn = self._compile(fn)


@register
class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM: guided backpropagation masked by Grad-CAM.

    The pixel-level detail of `GuidedBackprop` where `GradCAM` says the
    class is: the map is the absolute guided gradient, reduced over
    channels, times ReLU(Grad-CAM) bilinearly upsampled to the input. Both
    come from one compiled call (an ordinary backward pass for Grad-CAM, a
    guided one for the pixels). High-resolution and class-discriminative.

    Selvaraju et al. (2017), "Grad-CAM: visual explanations from deep
    networks via gradient-based localization".

    Args:
        model: a Keras image classifier with ReLU activations.
        layer: Grad-CAM's spatial layer, as in `GradCAM`. Defaults to `None`.
        reduce: channel reduction of the guided gradient, as in `Saliency`.
            Defaults to `"max"`.
        score: ``"logit"`` or ``"probability"``. Defaults to `"logit"`.
        normalize: scale each map to [0, 1]; False returns the raw product
            (N, H, W): |guided gradient| (score per pixel unit) times the
            upsampled ReLU(Grad-CAM) (score per activation unit, times
            activation). Defaults to `True`.
        batch_size: images per compiled call; None sizes calls by image size
            so memory stays bounded. Defaults to `None`.
        output: a multi-output model's output to explain (name or index).
            Defaults to `None`.

    Returns (from `explain`):
        float32 (N, H, W) maps, >= 0, in [0, 1] when `normalize`.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> kfv.GuidedGradCAM(model).explain(kfv.synthetic_faces(2).images).shape
    (2, 48, 48)
    """

    name = "guided_grad_cam"
    overlay = False
    signed = False
    blank_reason = (
        "Grad-CAM's map is blank (its weighted sum of the feature maps is negative "
        "everywhere), and the guided gradient is multiplied by it"
    )

    def __init__(
        self,
        model: keras.Model,
        layer: str | int | keras.layers.Layer | None = None,
        reduce: Literal["max", "mean", "norm"] = "max",
        *,
        score: Literal["logit", "probability"] = "logit",
        normalize: bool = True,
        batch_size: int | None = None,
        output: str | int | None = None,
    ) -> None:
        _check_reduce(reduce)
        self.reduce = reduce
        self._relus = _find_relus(model)
        _warn_without_relus(type(self), model, self._relus)
        super().__init__(
            model, layer, score=score, normalize=normalize, batch_size=batch_size, output=output
        )

    def _layer_map_fn(self):
        h, w, k = self.layer_shape[1:]
        at_layer = _gradients.value_and_grad(self._probe, wrt=[1])  # Grad-CAM's pass
        at_pixels = _gradients.value_and_grad(self._probe, wrt=[0])  # the guided pass

        def fn(x, t):
            size = tuple(x.shape[1:3])
            delta = ops.zeros((ops.shape(x)[0], h, w, k), dtype=x.dtype)
            outputs, grads, t = at_layer([x, delta], t)  # t: the targets used, fixed below
            cam = ops.relu(self._combine(outputs[0], grads[1]))
            with guided_relus(self._relus):
                _, guided, _ = at_pixels([x, delta], t)
            pixels = _reduce_channels(guided[0], self.reduce)
            return self._finish_maps(pixels * upsample_maps(cam, size), size)

        return fn
