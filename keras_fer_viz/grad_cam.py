"""Grad-CAM and Grad-CAM++: which regions of a conv layer's map drive a class.

- `GradCAM` weights each feature map of a spatial layer by the spatial mean
  of the class score's gradient with respect to it, sums the weighted maps
  and keeps the positive part (Selvaraju et al. 2017, "Grad-CAM: visual
  explanations from deep networks via gradient-based localization").
- `GradCAMPlusPlus` weights the positive gradients pixel by pixel with
  closed-form coefficients that use their second and third powers
  (Chattopadhay et al. 2018, "Grad-CAM++: generalized gradient-based visual
  explanations for deep convolutional networks"), which credits several
  instances of a class rather than the strongest one.

The layer's output and its gradient come from one compiled forward and
backward pass through a replay of the model (see `keras_fer_viz.layers`),
so Sequential, Functional and nested backbones all work.
"""

from __future__ import annotations

import warnings

from keras import ops

from keras_fer_viz import _gradients
from keras_fer_viz._explainer import Explainer, normalize_maps
from keras_fer_viz.layers import resolve_layer, spatial_layers

__all__ = ["GradCAM", "GradCAMPlusPlus", "upsample_maps"]


def upsample_maps(maps, size):
    """(N, h, w) maps -> (N, H, W), bilinear. Runs in `keras.ops`."""
    up = ops.image.resize(ops.expand_dims(maps, -1), size, interpolation="bilinear")
    return up[..., 0]


class _LayerGradient(Explainer):
    """Shared set-up: a spatial layer's output and the score's gradient there."""

    def __init__(
        self, model, layer=None, *, score="logit", normalize=True, batch_size=None, output=None
    ):
        super().__init__(
            model, score=score, normalize=normalize, batch_size=batch_size, output=output
        )
        self.layer = resolve_layer(model, layer)
        self._probe, shapes = self._build_probe([self.layer], perturb=True)
        self.layer_shape = shapes[0]
        if len(self.layer_shape) != 4:
            candidates = [la.name for la in spatial_layers(model)]
            raise ValueError(
                f"{type(self).__name__} needs a layer with a spatial output (N, h, w, C). "
                f"Received: layer {self.layer.name!r} with output shape {self.layer_shape}. "
                f"Spatial layers of {model.name!r}: {candidates}"
            )
        if self.layer_shape[1] == 1 and self.layer_shape[2] == 1:
            warnings.warn(
                f"{type(self).__name__}: layer {self.layer.name!r} has a 1x1 spatial output "
                f"{self.layer_shape}, so every map is constant (one value spread over the "
                "image). Pick a layer before global pooling; the default "
                "(keras_fer_viz.last_conv_layer) does.",
                RuntimeWarning,
                stacklevel=3,
            )
        vg = _gradients.value_and_grad(self._probe)
        h, w, k = self.layer_shape[1:]

        def fn(x, t):
            delta = ops.zeros((ops.shape(x)[0], h, w, k), dtype=x.dtype)
            outputs, grads, _ = vg([x, delta], t)
            raw = self._combine(outputs[0], grads[1])  # (N, h, w), signed
            if not self.normalize:
                return raw
            size = tuple(x.shape[1:3])
            return normalize_maps(upsample_maps(ops.relu(raw), size))

        spec = [((None, *self.input_shape), "float32"), ((None,), "int32")]
        self._fn = _gradients.compile(fn, model, spec)

    def __repr__(self):
        return f"{type(self).__name__}(model={self.model.name!r}, layer={self.layer.name!r})"


class GradCAM(_LayerGradient):
    """Gradient-weighted class activation maps.

    For a spatial layer with feature maps ``A_k``, the weight of map ``k``
    is the spatial mean of the gradient of the class score with respect to
    it; the map is ``ReLU(sum_k weight_k * A_k)``, upsampled to the input
    size. Use it to see which regions drive a class; its resolution is the
    layer's (12x12 for the last conv layer of `fer_cnn`).

    Selvaraju et al. (2017), "Grad-CAM: visual explanations from deep
    networks via gradient-based localization".

    Args:
        model: a Keras image classifier (Sequential, Functional or nested).
        layer: the spatial layer: a name, a path through nested models, a
            `Layer`, an index into ``model.layers``, or None for
            `keras_fer_viz.last_conv_layer`. Defaults to `None`.
        score: ``"logit"`` (the pre-softmax score, when the model ends in a
            softmax) or ``"probability"``. Defaults to `"logit"`.
        normalize: True returns ReLU'd maps upsampled to the input size and
            scaled to [0, 1]; False returns the raw signed map
            ``sum_k weight_k * A_k`` at the layer's resolution (N, h, w).
            Defaults to `True`.
        batch_size: images per compiled call; None sizes calls by image size
            so memory stays bounded. Defaults to `None`.
        output: a multi-output model's output to explain (name or index).
            Defaults to `None`.

    Returns (from `explain`):
        float32 (N, H, W) maps in [0, 1], or raw (N, h, w) maps.

    Raises:
        ValueError: if the layer is unknown or not spatial (e.g. a Dense
            layer), or the model has no conv layer and none is given.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> cam = kfv.GradCAM(model)
    >>> cam.layer.name
    'block3_conv2'
    >>> cam.explain(kfv.synthetic_faces(3).images, target=3).shape
    (3, 48, 48)
    """

    def _combine(self, activations, grads):
        weights = ops.mean(grads, axis=(1, 2), keepdims=True)
        return ops.sum(activations * weights, axis=-1)


class GradCAMPlusPlus(_LayerGradient):
    """Grad-CAM++: pixel-wise weighted gradients for sharper, multi-part maps.

    Weights the positive gradients of each feature map pixel by pixel with
    ``alpha = g^2 / (2 g^2 + sum(A) g^3)``, the closed form Chattopadhay et
    al. derive for an exponential of the score; the map is
    ``ReLU(sum_k weight_k * A_k)``. It spreads credit over every region that
    supports the class, where Grad-CAM tends to pick the strongest one.

    Chattopadhay et al. (2018), "Grad-CAM++: generalized gradient-based
    visual explanations for deep convolutional networks".

    Args:
        model: a Keras image classifier.
        layer: the spatial layer, as in `GradCAM`. Defaults to `None`.
        score: ``"logit"`` or ``"probability"``. Defaults to `"logit"`.
        normalize: as in `GradCAM`. Defaults to `True`.
        batch_size: images per compiled call; None sizes calls by image size
            so memory stays bounded. Defaults to `None`.
        output: a multi-output model's output to explain (name or index).
            Defaults to `None`.

    Returns (from `explain`):
        float32 (N, H, W) maps in [0, 1], or raw (N, h, w) maps.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> kfv.GradCAMPlusPlus(model).explain(kfv.synthetic_faces(2).images).shape
    (2, 48, 48)
    """

    def _combine(self, activations, grads):
        g2 = ops.square(grads)
        g3 = g2 * grads
        total = ops.sum(activations, axis=(1, 2), keepdims=True)
        denom = 2.0 * g2 + total * g3
        alpha = ops.where(denom != 0, g2 / ops.where(denom != 0, denom, 1.0), 0.0)
        weights = ops.sum(alpha * ops.relu(grads), axis=(1, 2), keepdims=True)
        return ops.sum(activations * weights, axis=-1)
