"""LIME for image classifiers: the `lime` package, made fast, grayscale-aware and reproducible.

LIME (Ribeiro, Singh and Guestrin 2016, "Why should I trust you?")
explains one prediction by switching superpixels of the image off at
random, asking the model about each perturbed image, and fitting a weighted
linear model to the answers: each superpixel's weight says how much it
speaks for (or against) the class.

`Lime` runs `lime.lime_image.LimeImageExplainer` (the real package) with
what it lacks out of the box on small grayscale faces:

- segmentations tuned to give 30-80 superpixels on a 48x48 face (lime's
  default quickshift gives 1-4, and fails on a (48, 48, 1) image in its Lab
  conversion);
- the model called directly, compiled, in large batches (lime's usual
  ``model.predict`` on batches of 10 is 5-9x slower than the model itself),
  each grayscale image handed back in the model's own channel layout;
- the perturbed images built as one numpy operation per batch instead of
  one Python loop per sample and superpixel;
- a seed per explanation: the same seed gives the same weights, to the
  last digit, whatever other images are explained with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import keras
import numpy as np
from lime.lime_image import LimeImageExplainer
from numpy.typing import ArrayLike

from keras_fer_viz import _gradients
from keras_fer_viz._explainer import (
    Explainer,
    as_images,
    as_targets,
    check_positive_int,
    inputs_per_call,
)
from keras_fer_viz.registry import register

__all__ = ["Lime", "LimeExplanation", "segment"]

SEGMENTATIONS = ("slic", "quickshift", "felzenszwalb", "grid")
_BASE_AREA = 48 * 48  # the defaults are tuned on 48x48 faces and scaled with the area


def _gray01(image):
    """(H, W, C) -> (H, W) float in [0, 1]: what the segmentations work on."""
    gray = image.mean(axis=-1) if image.ndim == 3 else image
    lo, hi = float(gray.min()), float(gray.max())
    return (gray - lo) / (hi - lo) if hi > lo else np.zeros_like(gray, dtype=float)


def segment(
    image: ArrayLike,
    method: Literal["slic", "quickshift", "felzenszwalb", "grid"] = "slic",
    **options: Any,
) -> np.ndarray:
    """Superpixels of one image, labelled 0..S-1.

    Args:
        image: (H, W) or (H, W, C), any value range (it is scaled to [0, 1]
            on its intensity, so grayscale and RGB faces alike work).
        method: ``"slic"``, ``"quickshift"``, ``"felzenszwalb"`` or
            ``"grid"``. Defaults to `"slic"`.
        **options: settings passed to the scikit-image function (or
            ``cells`` for the grid, cells per side), overriding the defaults.

    Returns:
        int (H, W) labels, 0 to S-1.

    Example:

    >>> from keras_fer_viz.data import synthetic_faces
    >>> labels = segment(synthetic_faces(1).images[0])
    >>> bool(30 <= labels.max() + 1 <= 80)
    True
    """
    from skimage import segmentation as sk

    image = np.asarray(image, dtype=float)
    gray = _gray01(image)
    h, w = gray.shape
    scale = (h * w) / _BASE_AREA
    if method == "slic":
        settings = dict(n_segments=60, compactness=0.1, sigma=0.5, start_label=0)
        settings.update(options)
        labels = sk.slic(gray, channel_axis=None, **settings)
    elif method == "quickshift":
        # Quickshift's count jumps with max_dist; when the first setting
        # falls outside 30-80 superpixels (a few faces in a hundred), the
        # next one on the ladder is tried, unless the caller chose max_dist.
        ladder = [options.pop("max_dist")] if "max_dist" in options else [2.5, 2.2, 2.8]
        settings = dict(kernel_size=1.0 * np.sqrt(scale), ratio=0.5, rng=0)
        settings.update(options)
        rgb = np.dstack([gray] * 3)
        for max_dist in ladder:
            labels = sk.quickshift(
                rgb, convert2lab=False, max_dist=max_dist * np.sqrt(scale), **settings
            )
            if 30 <= len(np.unique(labels)) <= 80:
                break
    elif method == "felzenszwalb":
        settings = dict(scale=2.0, sigma=0.5, min_size=int(round(12 * scale)))
        settings.update(options)
        labels = sk.felzenszwalb(gray, **settings)
    elif method == "grid":
        cells = int(options.get("cells", 7))
        rows = np.minimum(np.arange(h) * cells // h, cells - 1)
        cols = np.minimum(np.arange(w) * cells // w, cells - 1)
        labels = rows[:, None] * cells + cols[None, :]
    else:
        raise ValueError(
            f"Expected segmentation in {SEGMENTATIONS} or a callable. Received: {method!r}"
        )
    return np.unique(labels, return_inverse=True)[1].reshape(h, w)


@dataclass
class LimeExplanation:
    """One LIME explanation: superpixels, their weights and the local fit.

    Attributes:
        target: the explained class.
        probability: the model's probability of `target` for the image.
        segments: int (H, W) superpixel labels, 0 to S-1.
        weights: float (S,) signed weight of every superpixel (> 0 speaks
            for the class).
        intercept: the local linear model's intercept.
        score: R^2 of the local linear model on the perturbed samples.
        explanation: lime's own `ImageExplanation`, for its API.
    """

    target: int
    probability: float
    segments: np.ndarray
    weights: np.ndarray
    intercept: float
    score: float
    explanation: Any

    def map(self) -> np.ndarray:
        """(H, W) float32: each superpixel's positive weight, scaled to [0, 1]."""
        positive = np.maximum(self.weights, 0.0)
        peak = positive.max()
        values = positive / peak if peak > 0 else positive
        return values[self.segments].astype(np.float32)

    def mask(
        self,
        positive: bool = True,
        negative: bool = True,
        num_features: int = 5,
        min_weight: float = 0.0,
    ) -> np.ndarray:
        """(H, W) int8: +1 for superpixels for the class, -1 against, 0 elsewhere.

        Takes the `num_features` superpixels of largest absolute weight among
        those asked for (as lime's ``get_image_and_mask``), ignoring weights
        of magnitude <= `min_weight`.
        """
        if not (positive or negative):
            raise ValueError("Expected positive, negative or both to be True.")
        order = np.argsort(-np.abs(self.weights), kind="stable")
        keep = np.abs(self.weights[order]) > min_weight
        sign = np.sign(self.weights[order])
        keep &= ((sign > 0) & positive) | ((sign < 0) & negative)
        chosen = order[keep][:num_features]
        values = np.zeros(len(self.weights), np.int8)
        values[chosen] = np.sign(self.weights[chosen]).astype(np.int8)
        return values[self.segments]


@register
class Lime(Explainer):
    """LIME superpixel explanations, through the `lime` package.

    For each image, `samples` copies with random superpixels switched off
    (replaced by their mean, or `hide_color`) are classified, and lime fits
    a locally weighted ridge model on the on/off pattern: the weight of a
    superpixel is its contribution to the target's probability. Use it to
    see which regions a model's decision for each class rests on, and which
    speak against it (the study's question 3).

    Ribeiro, Singh and Guestrin (2016), "Why should I trust you? Explaining
    the predictions of any classifier".

    Args:
        model: a Keras image classifier (1 or 3 channels) with probability
            outputs.
        segmentation: ``"slic"``, ``"quickshift"``, ``"felzenszwalb"``,
            ``"grid"`` (7x7 cells) or a callable ``f(image) -> (H, W) int
            labels``. The named ones give 30-80 superpixels on a 48x48 face.
            Defaults to `"slic"`.
        samples: perturbed images per explanation. Defaults to `1000`.
        batch_size: perturbed images per model call; None sizes calls by
            image size (227 faces of 48x48) so memory stays bounded.
            Defaults to `None`.
        seed: seed of the perturbations; each image is explained with it, so
            an explanation does not depend on the other images. Defaults to
            `0`.
        hide_color: value of switched-off pixels, in the model's input
            units; None replaces each superpixel by its mean (lime's
            default). Defaults to `None`.
        kernel_width: width of lime's exponential kernel on the cosine
            distance to the unperturbed image. Defaults to `0.25`.
        segmentation_options: settings for the segmentation function,
            overriding the defaults. Defaults to `None`.
        verbose: "auto" or 1 shows a progress bar when more than one image is
            explained; 0 is silent (use 0 inside callbacks). Defaults to
            `"auto"`.
        output: a multi-output model's output to explain (name or index).
            Defaults to `None`.

    Returns (from `explain`):
        float32 (N, H, W) maps in [0, 1]: each superpixel's positive weight
        for the target, divided by the largest. `explanations` gives the
        signed weights, segments, intercept and fit score.

    Raises:
        ValueError: if an option is invalid, or the images do not fit the
            model.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> lime = kfv.Lime(model, samples=200, verbose=0)
    >>> faces = kfv.synthetic_faces(2)
    >>> lime.explain(faces.images, target=faces.labels).shape
    (2, 48, 48)
    >>> result = lime.explanations(faces.images[:1])[0]
    >>> result.weights.shape == (int(result.segments.max()) + 1,)
    True
    """

    signed = True
    blank_reason = "no superpixel raises the class's probability in LIME's linear fit"

    name = "lime"

    def __init__(
        self,
        model: keras.Model,
        segmentation: Literal["slic", "quickshift", "felzenszwalb", "grid"]
        | Callable[[np.ndarray], ArrayLike] = "slic",
        samples: int = 1000,
        batch_size: int | None = None,
        seed: int = 0,
        *,
        hide_color: float | Sequence[float] | None = None,
        kernel_width: float = 0.25,
        segmentation_options: Mapping[str, Any] | None = None,
        verbose: int | Literal["auto"] = "auto",
        output: str | int | None = None,
    ) -> None:
        if not (callable(segmentation) or segmentation in SEGMENTATIONS):
            raise ValueError(
                f"Expected segmentation in {SEGMENTATIONS} or a callable. "
                f"Received: {segmentation!r}"
            )
        samples = check_positive_int(samples, "samples", minimum=2)
        if not (isinstance(kernel_width, (int, float)) and kernel_width > 0):
            raise ValueError(f"Expected kernel_width > 0. Received: {kernel_width!r}")
        super().__init__(model, score="probability", batch_size=batch_size, output=output)
        channels = self.input_shape[-1]
        if channels not in (1, 3):
            raise ValueError(
                f"Lime explains images with 1 or 3 channels. Received: model {model.name!r} "
                f"with input shape {self.input_shape}"
            )
        self.segmentation = segmentation
        self.segmentation_options = dict(segmentation_options or {})
        self.samples, self.seed, self.hide_color = samples, seed, hide_color
        self.kernel_width = float(kernel_width)
        self.verbose = verbose
        probe, _ = self._build_probe()
        forward = _gradients.forward(probe)
        self._predict = _gradients.compile(
            lambda x: forward([x])[-1], model, [((None, *self.input_shape), "float32")], batch=(0,)
        )

    def _segment(self, image):
        if callable(self.segmentation):
            labels = np.asarray(self.segmentation(image))
            if labels.shape != image.shape[:2] or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(
                    f"Expected the segmentation function to return int labels of shape "
                    f"{image.shape[:2]}. Received: {labels.dtype} {labels.shape}"
                )
            return np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
        return segment(image, self.segmentation, **self.segmentation_options)

    def _classify(self, images):
        """lime's classifier_fn: RGB float64 batches -> probabilities."""
        x = np.asarray(images, np.float32)
        if self.input_shape[-1] == 1 and x.shape[-1] == 3:
            x = x[..., :1]  # lime made the gray image RGB by repeating it
        step = inputs_per_call(x.shape[1:3], self.batch_size)
        return np.concatenate([self._predict(x[i : i + step]) for i in range(0, len(x), step)])

    def explanations(
        self, images: ArrayLike, target: int | Sequence[int] | np.ndarray | None = None
    ) -> list[LimeExplanation]:
        """Full LIME results: one `LimeExplanation` per image.

        Args:
            images: (N, H, W, C) or one (H, W, C) image, as the model takes them.
            target: None (predicted class), an int, or one int per image.
                Defaults to `None`.

        Returns:
            A list of `LimeExplanation`, in the order of the images.
        """
        x = as_images(images, self.input_shape, self.model.name)
        t = as_targets(target, len(x), self.num_classes)
        probs = self._classify(x)
        t = np.where(t < 0, probs.argmax(axis=1), t)
        verbose = 1 if self.verbose == "auto" else int(self.verbose)
        bar = keras.utils.Progbar(len(x), unit_name="image") if verbose and len(x) > 1 else None
        results = []
        for i, (image, label) in enumerate(zip(x, t, strict=True)):
            results.append(self._explain_one(image, int(label), float(probs[i, label])))
            if bar is not None:
                bar.update(i + 1)
        return results

    def _explain_one(self, image, label, probability):
        explainer = _FastLimeImageExplainer(kernel_width=self.kernel_width, random_state=self.seed)
        lime_image = image[..., 0].astype(np.float64) if image.shape[-1] == 1 else image
        lime_image = lime_image.astype(np.float64)
        result = explainer.explain_instance(
            lime_image,
            self._classify,
            labels=(label,),
            hide_color=self.hide_color,
            top_labels=None,
            num_samples=self.samples,
            batch_size=inputs_per_call(image.shape[:2], self.batch_size),
            segmentation_fn=self._segment,
            random_seed=self.seed,
        )
        segments = result.segments
        weights = np.zeros(int(segments.max()) + 1)
        for feature, weight in result.local_exp[label]:
            weights[feature] = weight
        return LimeExplanation(
            target=label,
            probability=probability,
            segments=segments,
            weights=weights,
            intercept=float(result.intercept[label]),
            score=float(result.score),
            explanation=result,
        )

    def explain(
        self,
        images: ArrayLike,
        target: int | Sequence[int] | np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Positive LIME evidence for the target, (N, H, W) float32 in [0, 1].

        Each superpixel gets its positive weight, divided by the image's
        largest; superpixels against the class get 0. See `explanations`
        for the signed weights. `batch_size` is accepted for symmetry with
        the other explainers and ignored (set it in the constructor).
        """
        return np.stack([r.map() for r in self.explanations(images, target)])


class _FastLimeImageExplainer(LimeImageExplainer):
    """lime's explainer with its perturbation step vectorised.

    Same random draws as lime's `data_labels` (one on/off row per sample,
    the first all on), but each batch of perturbed images is one `np.where`
    over the superpixel labels instead of a Python loop per sample and
    superpixel, and there is no tqdm bar.
    """

    #: channels of the perturbed images handed to classifier_fn (1 for a
    #: grayscale model: lime's RGB copies of a gray image are equal anyway).
    channels = 3

    def data_labels(self, image, fudged_image, segments, classifier_fn, num_samples, batch_size=10):
        image, fudged_image = image[..., : self.channels], fudged_image[..., : self.channels]
        n_features = np.unique(segments).shape[0]
        data = self.random_state.randint(0, 2, num_samples * n_features).reshape(
            (num_samples, n_features)
        )
        data[0, :] = 1
        labels = []
        for start in range(0, num_samples, batch_size):
            on = data[start : start + batch_size][:, segments].astype(bool)
            labels.append(classifier_fn(np.where(on[..., None], image, fudged_image)))
        return data, np.concatenate(labels)
