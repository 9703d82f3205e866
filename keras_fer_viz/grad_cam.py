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
from collections.abc import Callable
from typing import Any, Literal

import keras
from keras import ops

from keras_fer_viz import _gradients
from keras_fer_viz._explainer import Explainer, _predicted, upsample_maps
from keras_fer_viz.layers import resolve_layer, spatial_layers
from keras_fer_viz.registry import register

__all__ = [
    "GradCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "HiResCAM",
    "LayerCAM",
    "EigenCAM",
    "upsample_maps",
]


class _LayerGradient(Explainer):
    """The CAM family's shared part: a spatial layer's output and the gradient there.

    A subclass supplies one method, ``_combine(activations, grads)``:
    (N, h, w, K) activations of the layer and the class score's gradient
    with respect to them -> the raw (N, h, w) map. Everything else (the
    layer, the probe, one compiled forward and backward pass, upsampling and
    normalising) is here. A class-agnostic method sets ``gradient = False``
    and gets ``grads=None`` from a forward pass only.
    """

    overlay = True
    signed = True
    blank_reason = (
        "the weighted sum of the layer's feature maps is negative everywhere, so the ReLU "
        "leaves nothing: at this layer the face's features count against the class"
    )
    #: False for a method that needs the activations only (no backward pass).
    gradient = True
    # (N, h, w, K) activations and their gradients (None without) -> raw (N, h, w) map.
    _combine: Callable[[Any, Any], Any]

    def __init__(
        self,
        model: keras.Model,
        layer: str | int | keras.layers.Layer | None = None,
        *,
        score: Literal["logit", "probability"] = "logit",
        normalize: bool = True,
        batch_size: int | None = None,
        output: str | int | None = None,
    ) -> None:
        super().__init__(
            model, score=score, normalize=normalize, batch_size=batch_size, output=output
        )
        self.layer = resolve_layer(model, layer)
        self._probe, shapes = self._build_probe([self.layer], perturb=self.gradient)
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
        self._fn = self._compile(self._layer_map_fn())

    def _layer_map_fn(self):
        """``fn(x, t) -> maps`` through the layer (the raw map when not normalising)."""
        h, w, k = self.layer_shape[1:]
        if self.gradient:
            # The gradient at the layer only: nothing below it is differentiated.
            vg = _gradients.value_and_grad(self._probe, wrt=[1])

            def fn(x, t):
                delta = ops.zeros((ops.shape(x)[0], h, w, k), dtype=x.dtype)
                outputs, grads, _ = vg([x, delta], t)
                raw = self._combine(outputs[0], grads[1])  # (N, h, w), signed
                return self._finish_maps(raw, tuple(x.shape[1:3])), _predicted(outputs[-1])

        else:
            forward = _gradients.forward(self._probe)

            def fn(x, t):
                activations, scores = forward([x])
                maps = self._finish_maps(self._combine(activations, None), tuple(x.shape[1:3]))
                return maps, _predicted(scores)

        return fn


@register
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

    name = "grad_cam"

    def _combine(self, activations, grads):
        weights = ops.mean(grads, axis=(1, 2), keepdims=True)
        return ops.sum(activations * weights, axis=-1)


@register
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

    name = "grad_cam_plus_plus"

    def _combine(self, activations, grads):
        g2 = ops.square(grads)
        g3 = g2 * grads
        total = ops.sum(activations, axis=(1, 2), keepdims=True)
        denom = 2.0 * g2 + total * g3
        alpha = ops.where(denom != 0, g2 / ops.where(denom != 0, denom, 1.0), 0.0)
        weights = ops.sum(alpha * ops.relu(grads), axis=(1, 2), keepdims=True)
        return ops.sum(activations * weights, axis=-1)


_LAYER_ARGS = """    Args:
        model: a Keras image classifier.
        layer: the spatial layer, as in `GradCAM`. Defaults to `None`.
        score: ``"logit"`` or ``"probability"``. Defaults to `"logit"`.
        normalize: True returns ReLU'd maps upsampled to the input size and
            scaled to [0, 1]; False returns the raw signed map at the
            layer's resolution (N, h, w), in the units said above.
            Defaults to `True`.
        batch_size: images per compiled call; None sizes calls by image size
            so memory stays bounded. Defaults to `None`.
        output: a multi-output model's output to explain (name or index).
            Defaults to `None`.

    Returns (from `explain`):
        float32 (N, H, W) maps in [0, 1], or raw (N, h, w) maps.
"""


@register
class XGradCAM(_LayerGradient):
    """XGrad-CAM: Grad-CAM with activation-weighted gradient averages.

        The weight of feature map ``A_k`` is ``sum_ij A_k[i,j] g_k[i,j] / sum_ij
        A_k[i,j]``, the gradient averaged with the activations as weights (the
        choice Fu et al. derive from two axioms, sensitivity and conservation);
        the map is ``ReLU(sum_k weight_k A_k)``. A map whose activations sum to
        zero gets weight 0. Raw units: the score's gradient times activations.
        On a ``conv -> GAP -> Dense`` model it equals `CAM` after normalising.

        Fu et al. (2020), "Axiom-based Grad-CAM: towards accurate visualization
        and explanation of CNNs".

    {args}
        Example:

        >>> import keras_fer_viz as kfv
        >>> model = kfv.fer_cnn(width=0.25)
        >>> kfv.XGradCAM(model).explain(kfv.synthetic_faces(2).images).shape
        (2, 48, 48)
    """

    name = "xgrad_cam"

    def _combine(self, activations, grads):
        total = ops.sum(activations, axis=(1, 2), keepdims=True)
        safe = ops.where(total != 0, total, ops.ones_like(total))
        weights = ops.where(
            total != 0, ops.sum(activations * grads, axis=(1, 2), keepdims=True) / safe, 0.0
        )
        return ops.sum(activations * weights, axis=-1)


@register
class HiResCAM(_LayerGradient):
    """HiResCAM: the gradient times the activation, position by position.

        The map is ``ReLU(sum_k g_k * A_k)`` with the element-wise product in
        place of Grad-CAM's spatially averaged weights, so a position counts
        only where its own gradient says so; Draelos and Carin prove it shows
        exactly the locations the score uses for models that end in GAP and a
        Dense layer (where it equals `CAM`). Raw units: the score's gradient
        times activations.

        Draelos and Carin (2020), "Use HiResCAM instead of Grad-CAM for faithful
        explanations of convolutional neural networks".

    {args}
        Example:

        >>> import keras_fer_viz as kfv
        >>> model = kfv.fer_cnn(width=0.25)
        >>> kfv.HiResCAM(model).explain(kfv.synthetic_faces(2).images).shape
        (2, 48, 48)
    """

    name = "hires_cam"

    def _combine(self, activations, grads):
        return ops.sum(activations * grads, axis=-1)


@register
class LayerCAM(_LayerGradient):
    """LayerCAM: positive gradients weight the activations position by position.

        The map is ``ReLU(sum_k ReLU(g_k) * A_k)``: each activation counts with
        its own gradient where that gradient is positive. Fine enough for
        shallow layers, where Grad-CAM's averaged weights blur (Jiang et al.
        combine layers; here one layer at a time). On a ``conv -> GAP -> Dense``
        model it is `CAM` with only the positive Dense weights. Raw units: the
        score's gradient times activations.

        Jiang et al. (2021), "LayerCAM: exploring hierarchical class activation
        maps for localization".

    {args}
        Example:

        >>> import keras_fer_viz as kfv
        >>> model = kfv.fer_cnn(width=0.25)
        >>> kfv.LayerCAM(model, layer="block2_conv2").explain(kfv.synthetic_faces(2).images).shape
        (2, 48, 48)
    """

    name = "layer_cam"

    def _combine(self, activations, grads):
        return ops.sum(activations * ops.relu(grads), axis=-1)


@register
class EigenCAM(_LayerGradient):
    """Eigen-CAM: the first principal component of a layer's activations.

    The (h*w, K) activations of each image, centred over positions, are
    projected on their first principal direction (SVD); the projection's
    sign is chosen to agree with the mean activation over channels, then
    ReLU'd and normalised. Class-agnostic: `target` is checked but does not
    change the map; it needs a forward pass only, no gradient. Use it for a
    quick, label-free look at what a layer's dominant pattern is.

    Muhammad and Yeasin (2020), "Eigen-CAM: class activation map using
    principal components".

    Args:
        model: a Keras image classifier.
        layer: the spatial layer, as in `GradCAM`. Defaults to `None`.
        score: unused (Eigen-CAM has no class score); kept so that every
            CAM takes the same arguments. Defaults to `"logit"`.
        normalize: True returns ReLU'd maps upsampled to the input size and
            scaled to [0, 1]; False the raw projection (N, h, w) in the
            layer's activation units. Defaults to `True`.
        batch_size: images per compiled call; None sizes calls by image size
            so memory stays bounded. Defaults to `None`.
        output: a multi-output model's output (name or index); it decides
            the number of classes a `target` is checked against.
            Defaults to `None`.

    Returns (from `explain`):
        float32 (N, H, W) maps in [0, 1], or raw (N, h, w) projections.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> faces = kfv.synthetic_faces(2).images
    >>> eigen = kfv.EigenCAM(model)
    >>> bool((eigen.explain(faces, target=0) == eigen.explain(faces, target=3)).all())
    True
    """

    name = "eigen_cam"
    blank_reason = (
        "the projection on the layer's first principal component is negative everywhere, "
        "so the ReLU leaves nothing (a layer with no dominant positive pattern)"
    )
    gradient = False

    def _combine(self, activations, grads):
        n, h, w, k = activations.shape
        flat = ops.reshape(activations, (-1, h * w, k))
        centred = flat - ops.mean(flat, axis=1, keepdims=True)
        # The projection on the first right singular vector v of each centred
        # (P, K) matrix X is X v = sigma u, u its first left singular vector:
        # the top eigenvector of the smaller of X^T X (K, K) and X X^T (P, P)
        # (`eigh`, eigenvalues ascending), so a 2048-channel layer at 7x7
        # costs a 49x49 eigenproblem.
        if h * w <= k:
            gram = ops.einsum("npk,nqk->npq", centred, centred)
            values, vectors = ops.eigh(gram)
            sigma = ops.sqrt(ops.maximum(values[:, -1:], 0.0))
            projection = vectors[:, :, -1] * sigma
        else:
            scatter = ops.einsum("npk,npl->nkl", centred, centred)
            _, vectors = ops.eigh(scatter)
            projection = ops.einsum("npk,nk->np", centred, vectors[:, :, -1])
        mean = ops.mean(flat, axis=-1)
        agree = ops.sum(projection * (mean - ops.mean(mean, axis=1, keepdims=True)), axis=1)
        sign = ops.where(agree < 0, -1.0, 1.0)
        return ops.reshape(projection * ops.expand_dims(sign, 1), (-1, h, w))


for _cls in (XGradCAM, HiResCAM, LayerCAM):
    _cls.__doc__ = (_cls.__doc__ or "").replace("{args}", _LAYER_ARGS)
