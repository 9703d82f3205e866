"""Perturbation methods: explain a class by how its score reacts to masked images.

- `Occlusion`: slide a grey (baseline) patch over the image and record how
  much the class score drops (Zeiler and Fergus 2014, "Visualizing and
  understanding convolutional networks").
- `ScoreCAM`: mask the image with each upsampled feature map of a conv
  layer and weight that map by the class probability of the masked image
  (Wang et al. 2020, "Score-CAM: score-weighted visual explanations for
  convolutional neural networks").

Both need forward passes only, no gradient. Each expands an image into
many model inputs (one per window, one per channel), which go through the
model in compiled calls under the memory bound of
`keras_fer_viz._explainer`: the copies of one image are split into chunks of
equal size, the last padded with dummy copies of weight zero (so JAX
compiles one shape), and the weighted sums of the chunks are added up, so
the result does not depend on the chunking.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import keras
import numpy as np
from keras import ops
from numpy.typing import ArrayLike

from keras_fer_viz import _gradients
from keras_fer_viz._explainer import Explainer, check_positive_int
from keras_fer_viz.grad_cam import _LayerGradient
from keras_fer_viz.registry import register

__all__ = ["Occlusion", "ScoreCAM"]


def _chunks(count: int, per_call: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Splits ``range(count)`` into equal chunks of at most `per_call` items.

    Returns:
        A list of ``(index, weight)`` pairs of int32 and float32 arrays of
        one length: the chunks are as even as possible, and the last is
        padded with index 0 and weight 0 (a dummy item that adds nothing).
    """
    calls = -(-count // max(1, per_call))
    size = -(-count // calls)
    index = np.arange(calls * size)
    weight = (index < count).astype(np.float32)
    index = np.where(index < count, index, 0).astype(np.int32)
    return [(index[i : i + size], weight[i : i + size]) for i in range(0, calls * size, size)]


def _starts(size: int, patch: int, stride: int) -> np.ndarray:
    """Window starts along one side: every `stride`, and the last one flush with the edge."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return np.asarray(starts, np.int32)


@register
class Occlusion(Explainer):
    """Occlusion sensitivity: how much the class score drops when a patch is hidden.

    A ``patch x patch`` window slides over the image every `stride` pixels
    (plus a last window flush with the right and bottom edges, so every
    pixel is covered); each occluded copy has the window set to `baseline`.
    The raw map of a pixel is ``score(image) - score(occluded copy)``
    averaged over the windows that cover it: positive where hiding the
    pixel lowers the class score, negative where it raises it. The class is
    fixed on the clean image (the predicted class when `target` is None).
    The [0, 1] map shows the magnitude of the drop, ``|drop|`` (as
    saliency does with gradients): a patch that raises the score is
    evidence the model uses too, and a ReLU would blank every map of an
    image no patch lowers (common under global max pooling, where most
    windows change nothing); ``normalize=False`` keeps the sign. Use it for
    a model-agnostic check that needs no gradient and no access to the
    layers; it costs one forward pass per window (about
    ``(H / stride)^2``), and its resolution is the patch's.

    Zeiler and Fergus (2014), "Visualizing and understanding convolutional
    networks".

    Args:
        model: a Keras image classifier (Sequential, Functional or nested),
            fed as it is fed in `predict` (raw pixels if it preprocesses).
        patch: side of the square window, in pixels, at most the image's
            smaller side. Defaults to `8`.
        stride: step between windows, in pixels, at most `patch` (so that
            windows overlap or touch). Defaults to `4`.
        baseline: what a hidden patch shows, in the model's input units: a
            number (``0.0``, black for raw pixels) or an array
            broadcastable to (H, W, C). Defaults to `0.0`.
        score: ``"logit"`` (the pre-softmax score, when the model ends in a
            softmax) or ``"probability"``: the score whose drop is
            measured. Defaults to `"logit"`.
        normalize: True returns the absolute maps scaled to [0, 1]; False
            the raw signed maps (N, H, W): the mean drop of the score, in
            its units (logits or probabilities). Defaults to `True`.
        batch_size: model inputs (occluded copies) per compiled call; None
            sizes calls by image size so memory stays bounded, splitting one
            image's windows into chunks when they exceed it. Defaults to
            `None`.
        output: a multi-output model's output to explain (name or index).
            Defaults to `None`.

    Returns (from `explain`):
        float32 (N, H, W) maps in [0, 1], or raw signed score drops.

    Raises:
        ValueError: if `patch` or `stride` is not a positive int, `stride`
            exceeds `patch`, `patch` exceeds the image, or `baseline` does
            not broadcast to the input shape.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> occlusion = kfv.Occlusion(model, patch=12, stride=6)
    >>> maps = occlusion.explain(kfv.synthetic_faces(2).images, target=3)
    >>> maps.shape, float(maps.min()) >= 0.0, float(maps.max()) <= 1.0
    ((2, 48, 48), True, True)
    """

    name = "occlusion"
    signed = True
    blank_reason = "hiding any patch leaves the class score exactly as it is"
    positive = "abs"

    def __init__(
        self,
        model: keras.Model,
        patch: int = 8,
        stride: int = 4,
        baseline: ArrayLike = 0.0,
        *,
        score: Literal["logit", "probability"] = "logit",
        normalize: bool = True,
        batch_size: int | None = None,
        output: str | int | None = None,
    ) -> None:
        patch = check_positive_int(patch, "patch")
        stride = check_positive_int(stride, "stride")
        if stride > patch:
            raise ValueError(
                f"Expected stride <= patch, so that every pixel is hidden by some window. "
                f"Received: patch={patch}, stride={stride}"
            )
        super().__init__(
            model, score=score, normalize=normalize, batch_size=batch_size, output=output
        )
        self.patch, self.stride = patch, stride
        self._check_patch(self.input_shape[:2])
        base = self._check_baseline(baseline)
        self.baseline = base
        self._probe, _ = self._build_probe()
        forward = _gradients.forward(self._probe)

        def clean(x, t):
            return _gradients.gather_scores(forward([x])[-1], t)

        def drops(x, t, scores, starts, weights, base):
            n, h, w = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
            k = ops.shape(starts)[0]
            rows = ops.expand_dims(ops.arange(h, dtype="int32"), 0)
            cols = ops.expand_dims(ops.arange(w, dtype="int32"), 0)
            r0, c0 = starts[:, :1], starts[:, 1:]
            in_rows = ops.logical_and(rows >= r0, rows < r0 + patch)  # (k, H)
            in_cols = ops.logical_and(cols >= c0, cols < c0 + patch)  # (k, W)
            hidden = ops.logical_and(
                ops.expand_dims(in_rows, 2), ops.expand_dims(in_cols, 1)
            )  # (k, H, W)
            # `where`, not x + m * (base - x): a hidden pixel is the baseline exactly.
            copies = ops.where(
                ops.expand_dims(ops.expand_dims(hidden, 0), -1),
                ops.expand_dims(base, 1),
                ops.expand_dims(x, 1),
            )  # (n, k, H, W, C)
            copies = ops.reshape(copies, (n * k, h, w, ops.shape(x)[3]))
            occluded, _ = _gradients.gather_scores(forward([copies])[-1], ops.repeat(t, k, axis=0))
            drop = (ops.expand_dims(scores, 1) - ops.reshape(occluded, (n, k))) * weights
            return ops.einsum("nk,khw->nhw", drop, ops.cast(hidden, "float32"))

        def finish(total, counts):
            return self._finish_maps(total / counts, tuple(total.shape[1:3]))

        h, w, c = self.input_shape
        image = ((None, h, w, c), "float32")
        self._clean = self._compile(clean)
        self._drops = _gradients.compile(
            drops,
            model,
            [
                image,
                ((None,), "int32"),
                ((None,), "float32"),
                ((None, 2), "int32"),
                ((None,), "float32"),
                ((1, h, w, c), "float32"),
            ],
            batch=(0, 1, 2),
        )
        self._fn = _gradients.compile(
            finish, model, [((None, h, w), "float32"), ((h, w), "float32")], batch=(0,)
        )
        self._windows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _check_patch(self, size):
        h, w = size
        if h is not None and w is not None and self.patch > min(h, w):
            raise ValueError(
                f"Expected a patch no larger than the image ({h}x{w}): patch <= {min(h, w)}. "
                f"Received: patch={self.patch}. Pass a smaller `patch`."
            )

    def _cover(self, size, starts):
        """How many of the windows starting at `starts` cover each position of a side."""
        positions = np.arange(size)[:, None]
        return ((positions >= starts) & (positions < starts + self.patch)).sum(axis=1)

    def _windows_for(self, size):
        """Window starts (M, 2) and per-pixel window counts (H, W) for an image size."""
        if size not in self._windows:
            self._check_patch(size)
            rows = _starts(size[0], self.patch, self.stride)
            cols = _starts(size[1], self.patch, self.stride)
            starts = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
            # Windows form a grid: a pixel's count is its row's times its column's.
            counts = np.outer(self._cover(size[0], rows), self._cover(size[1], cols))
            self._windows[size] = (starts.astype(np.int32), counts.astype(np.float32))
        return self._windows[size]

    def _constants(self, x):
        starts, counts = self._windows_for(tuple(x.shape[1:3]))
        base = np.broadcast_to(self.baseline, x.shape[1:])[None].astype(np.float32)
        return starts, counts, base

    def _images_per_call(self, inputs):
        h, w = self.input_shape[:2]
        if h is None or w is None:
            return inputs
        return inputs // len(self._windows_for((h, w))[0])

    def _explain_chunk(self, x, t, constants, inputs):
        starts, counts, base = constants
        scores, t = self._clean(x, t)  # the class is decided on the clean image
        total = None
        for index, weight in _chunks(len(starts), inputs // len(x)):
            part = self._drops(x, t, scores, starts[index], weight, base)
            total = part if total is None else total + part
        return self._fn(total, counts)


@register
class ScoreCAM(_LayerGradient):
    """Score-CAM: each feature map weighted by the class probability it alone lets through.

    For each channel ``k`` of a spatial layer's activations ``A_k`` (N, h,
    w), the map is upsampled (bilinear) to the input size and min-max
    normalised to [0, 1] over its positions (a constant channel gives a
    zero mask), giving a mask ``M_k``; the masked image ``x * M_k`` goes
    through the model. The weight of channel ``k`` is the softmax
    probability of the target class ``c`` for the masked image,
    ``w_k = p_c(x * M_k)``. The map is ``ReLU(sum_k w_k A_k)`` at the
    layer's resolution, upsampled to the input size and scaled to [0, 1].
    No gradient is used: it is insensitive to saturated or noisy gradients,
    and costs one forward pass per channel and image (K of them, chunked
    under the memory bound).

    The paper writes the weight as an increase of confidence over a
    baseline, ``p_c(x * M_k) - p_c(x_b)``; its authors' code leaves the
    baseline out, as here. The baseline term is the same for every channel,
    so it only subtracts ``p_c(x_b) sum_k A_k`` from the map, and where the
    class is about as likely for a blank image as for the masked ones (an
    untrained or weak model) that pushes every position below zero: a blank
    map for a model whose score does vary (seen on the Keras-2
    mini-Xception and MobileNetV3Small). pytorch-grad-cam weights by a
    softmax over channels of the target's raw output instead. On a layer
    whose activations are signed (no ReLU after it, such as the last,
    class-wise convolution of a mini-Xception) the map can be all <= 0: it
    is then blank, and `explain` warns, naming the layer.

    Wang et al. (2020), "Score-CAM: score-weighted visual explanations for
    convolutional neural networks".

    Args:
        model: a Keras image classifier (Sequential, Functional or nested).
        layer: the spatial layer, as in `GradCAM`: a name, a path through
            nested models, a `Layer`, an index, or None for
            `keras_fer_viz.last_conv_layer`. Defaults to `None`.
        score: where the probabilities come from. ``"logit"`` takes the
            softmax of the pre-softmax scores, as the paper does (for a
            model ending in a softmax these are its output probabilities;
            for a model that outputs logits, their softmax);
            ``"probability"`` takes the model's output as it is (for a head
            that is not a softmax, e.g. a sigmoid). Defaults to `"logit"`.
        normalize: True returns ReLU'd maps upsampled to the input size and
            scaled to [0, 1]; False returns the raw signed map
            ``sum_k w_k A_k`` (N, h, w) at the layer's resolution, in
            probability times the layer's activation units.
            Defaults to `True`.
        batch_size: model inputs (masked copies) per compiled call; None
            sizes calls by image size so memory stays bounded, splitting one
            image's channels into chunks when they exceed it. Defaults to
            `None`.
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
    >>> score_cam = kfv.ScoreCAM(model)
    >>> score_cam.layer.name
    'block3_conv2'
    >>> score_cam.explain(kfv.synthetic_faces(2).images, target=3).shape
    (2, 48, 48)
    """

    name = "score_cam"
    blank_reason = (
        "the score-weighted sum of the layer's feature maps is negative everywhere, so the "
        "ReLU leaves nothing"
    )
    gradient = False

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
            model, layer, score=score, normalize=normalize, batch_size=batch_size, output=output
        )
        # `_LayerGradient` compiled `_layer_map_fn` (the clean pass) as `_fn`.
        self._prepare = self._fn
        h, w, k = self.layer_shape[1:]
        image = ((None, *self.input_shape), "float32")
        forward = _gradients.forward(self._probe)

        def weighted(x, t, activations, channels, valid):
            n, size = ops.shape(x)[0], ops.shape(channels)[0]
            chosen = ops.take(activations, channels, axis=-1)  # (n, h, w, size)
            up = chosen
            if tuple(chosen.shape[1:3]) != tuple(x.shape[1:3]):
                up = ops.image.resize(chosen, tuple(x.shape[1:3]), interpolation="bilinear")
            lo = ops.min(up, axis=(1, 2), keepdims=True)
            span = ops.max(up, axis=(1, 2), keepdims=True) - lo
            # A constant channel (judged before upsampling, which may round) is no mask.
            flat = ops.max(chosen, axis=(1, 2), keepdims=True) == ops.min(
                chosen, axis=(1, 2), keepdims=True
            )
            keep = ops.logical_and(span > 0, ops.logical_not(flat))
            masks = ops.where(keep, (up - lo) / ops.where(keep, span, 1.0), 0.0)
            masks = ops.transpose(masks, (0, 3, 1, 2))  # (n, size, H, W)
            copies = ops.expand_dims(x, 1) * ops.expand_dims(masks, -1)
            copies = ops.reshape(copies, (n * size, *ops.shape(x)[1:]))
            p = self._probabilities(forward([copies])[-1])
            p = ops.take_along_axis(p, ops.expand_dims(ops.repeat(t, size, axis=0), -1), axis=-1)
            weights = ops.reshape(p, (n, size)) * valid
            return ops.einsum("nhwk,nk->nhw", chosen, weights)

        self._weighted = _gradients.compile(
            weighted,
            model,
            [
                image,
                ((None,), "int32"),
                ((None, h, w, k), "float32"),
                ((None,), "int32"),
                ((None,), "float32"),
            ],
            batch=(0, 1, 2),
        )
        self._fn = _gradients.compile(
            lambda x, raw: self._finish_maps(raw, tuple(x.shape[1:3])),
            model,
            [image, ((None, h, w), "float32")],
            batch=(0, 1),
        )

    def _probabilities(self, scores):
        return ops.softmax(scores, axis=-1) if self.score == "logit" else scores

    def _layer_map_fn(self):
        """The clean pass: ``(x, t) -> (activations, targets)``."""
        forward = _gradients.forward(self._probe)

        def prepare(x, t):
            activations, scores = forward([x])
            _, t = _gradients.gather_scores(scores, t)
            return activations, t

        return prepare

    def _images_per_call(self, inputs):
        return inputs // self.layer_shape[-1]

    def explain(
        self,
        images: ArrayLike,
        target: int | Sequence[int] | np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        maps = super().explain(images, target, batch_size)
        blank = int((maps.reshape(len(maps), -1).max(axis=1) <= 0).sum())
        if blank:
            warnings.warn(
                f"ScoreCAM: {blank} of {len(maps)} maps are blank: every position's weighted "
                f"activation at layer {self.layer.name!r} is <= 0. Score-CAM's weights are "
                "probabilities (>= 0), so its map follows the sign of the activations, and this "
                "layer's are signed (no ReLU after it). Pick a layer whose output has passed a "
                "ReLU (keras_fer_viz.conv_layers lists the candidates), or use GradCAM here.",
                RuntimeWarning,
                stacklevel=2,
            )
        return maps

    def _explain_chunk(self, x, t, constants, inputs):
        activations, t = self._prepare(x, t)
        total = None
        for channels, valid in _chunks(self.layer_shape[-1], inputs // len(x)):
            part = self._weighted(x, t, activations, channels, valid)
            total = part if total is None else total + part
        return self._fn(x, total)
