"""How far to trust a map: faithfulness, sanity checks and ground-truth scores.

- `deletion_curve` and `insertion_curve` (Petsiuk, Das and Saenko 2018,
  "RISE: randomized input sampling for explanation of black-box models"):
  pixels are removed from the image (or revealed on a blurred copy) in the
  order of the map, most relevant first, and the target class's probability
  is followed. A faithful map makes it fall fast on deletion (low area under
  the curve) and rise fast on insertion (high area). `random_maps` gives the
  random-order baseline.
- `randomization_check` (Adebayo et al. 2018, "Sanity checks for saliency
  maps"): the layers of a copy of the model are re-initialised one after
  another from the top; a method whose maps barely change (high rank
  correlation, high SSIM to the original maps) does not explain the model.
- `evidence_scores`: on faces with a known truth (the `evidence` masks of
  `keras_fer_viz.synthetic_faces`), the pointing game (the map's maximum
  falls inside the evidence) and the share of map mass inside it, each with
  its chance level.

The curves are computed in compiled batches: every perturbed image of a
chunk of images is built and classified in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import keras
import numpy as np
from keras import ops
from numpy.typing import ArrayLike

from keras_fer_viz import _gradients
from keras_fer_viz._explainer import (
    as_images,
    as_targets,
    check_batch_size,
    check_positive_int,
    inputs_per_call,
)
from keras_fer_viz.layers import all_layers, build_probe, input_shape, is_graph

__all__ = [
    "Curve",
    "deletion_curve",
    "insertion_curve",
    "random_maps",
    "RandomizationResult",
    "randomization_check",
    "EvidenceScores",
    "evidence_scores",
    "spearman",
]


@dataclass
class Curve:
    """A deletion or insertion curve per image.

    Attributes:
        kind: "deletion" or "insertion".
        fractions: (S,) share of pixels removed or revealed, 0 to 1.
        scores: (N, S) probability of each image's target along the way.
        auc: (N,) area under each curve (trapezoid rule over the fractions).
        targets: (N,) the classes followed.
    """

    kind: Literal["deletion", "insertion"]
    fractions: np.ndarray
    scores: np.ndarray
    auc: np.ndarray
    targets: np.ndarray

    @property
    def mean_auc(self) -> float:
        return float(self.auc.mean())


def random_maps(images: ArrayLike, seed: int = 0) -> np.ndarray:
    """Uniform random maps (N, H, W) for the random-order baseline of the curves."""
    x = np.asarray(images)
    x = x[None] if x.ndim == 3 else x
    return np.random.default_rng(seed).uniform(size=x.shape[:3]).astype(np.float32)


def _fill(x, fill):
    if isinstance(fill, (int, float)) and not isinstance(fill, bool):
        return np.full_like(x, float(fill))
    if fill == "mean":
        return np.broadcast_to(x.mean(axis=(1, 2, 3), keepdims=True), x.shape).copy()
    if fill == "blur":
        from skimage.filters import gaussian

        sigma = max(1.0, x.shape[1] / 12)  # 4 pixels on a 48x48 face
        return gaussian(x, sigma=(0, sigma, sigma, 0), preserve_range=True).astype(np.float32)
    raise ValueError(f"Expected fill 'mean', 'blur' or a number. Received: {fill!r}")


def _ranks(maps):
    """Rank of each pixel in the map's order: 0 for the most relevant (ties by position).

    Values are compared at 1e-4 of the map's largest magnitude: rounding noise
    (which differs between backends and machines) does not reorder pixels the
    map scores alike.
    """
    flat = maps.reshape(len(maps), -1)
    order = np.argsort(-_quantized(maps), axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None], axis=1)
    return ranks.reshape(maps.shape).astype(np.int32)


_CURVE_FNS: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def _curve_fn(model, steps_plus_one, shape, output):
    """The compiled function for one model, output and curve length, built once."""
    key = (id(model), steps_plus_one, shape, output)
    cached = _CURVE_FNS.get(key)
    if cached is not None and cached[0]() is model:
        return cached[1]
    probe, _ = build_probe(model, (), score="probability", output=output)
    forward = _gradients.forward(probe)

    def fn(x, first, second, ranks, counts, targets):
        # The pixels whose rank is below the count come from `first`, the
        # others from `second`: one perturbed image per (image, step).
        n = ops.shape(x)[0]
        take = ops.expand_dims(ranks, 1) < ops.reshape(counts, (1, -1, 1, 1))
        take = ops.expand_dims(take, -1)
        images = ops.where(take, ops.expand_dims(first, 1), ops.expand_dims(second, 1))
        images = ops.reshape(images, (-1, *shape))
        probs = forward([images])[-1]
        probs = ops.reshape(probs, (n, steps_plus_one, -1))
        index = ops.reshape(targets, (-1, 1, 1))
        return ops.take_along_axis(probs, ops.broadcast_to(index, (n, steps_plus_one, 1)), axis=-1)[
            ..., 0
        ]

    spec = [((None, *shape), "float32")] * 3 + [
        ((None, *shape[:2]), "int32"),
        ((steps_plus_one,), "int32"),
        ((None,), "int32"),
    ]
    compiled = _gradients.compile(fn, model, spec, batch=(0, 1, 2, 3, 5))
    import weakref

    _CURVE_FNS[key] = (weakref.ref(model), compiled)
    return compiled


def _curve(kind, model, images, maps, target, steps, fill, batch_size, output):
    shape = input_shape(model)
    x = as_images(images, shape, model.name)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.shape != x.shape[:3]:
        raise ValueError(
            f"Expected one (H, W) map per image: shape {x.shape[:3]}. Received: shape={maps.shape}"
        )
    steps = check_positive_int(steps, "steps")
    probs = _gradients.predict(model, x, output=output)
    t = as_targets(target, len(x), probs.shape[-1])
    t = np.where(t < 0, probs.argmax(axis=1), t).astype(np.int32)
    pixels = x.shape[1] * x.shape[2]
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * pixels).astype(np.int32)
    filled = _fill(x, fill).astype(np.float32)
    # Deletion: the first `count` pixels in map order take the fill value.
    # Insertion: they take the image's value, the rest the fill (a blur).
    first, second = (filled, x) if kind == "deletion" else (x, filled)
    fn = _curve_fn(model, steps + 1, tuple(x.shape[1:]), output)
    ranks = _ranks(maps)
    inputs = inputs_per_call(x.shape[1:3], check_batch_size(batch_size))
    per_call = _gradients.call_size(inputs // (steps + 1))
    scores = np.concatenate(
        [
            fn(
                x[i : i + per_call],
                first[i : i + per_call],
                second[i : i + per_call],
                ranks[i : i + per_call],
                counts,
                t[i : i + per_call],
            )
            for i in range(0, len(x), per_call)
        ]
    )
    auc = np.trapezoid(scores, fractions, axis=1)
    return Curve(kind, fractions, scores, auc, t)


def deletion_curve(
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    target: int | Sequence[int] | np.ndarray | None = None,
    steps: int = 20,
    fill: Literal["mean", "blur"] | float = "mean",
    batch_size: int | None = None,
    output: str | int | None = None,
) -> Curve:
    """The target's probability as the map's most relevant pixels are removed.

    Petsiuk, Das and Saenko (2018), "RISE". Pixels are removed in the map's
    order (most relevant first, `steps` equal shares) by setting them to
    `fill`; a faithful map makes the probability fall fast: a low area
    under the curve.

    Args:
        model: a Keras classifier with probability outputs.
        images: (N, H, W, C) images, as the model takes them.
        maps: (N, H, W) maps, higher = more relevant.
        target: None (each image's predicted class), an int, or one int
            per image. Defaults to `None`.
        steps: shares of pixels (the curve has `steps + 1` points).
            Defaults to `20`.
        fill: what removed pixels become: ``"mean"`` (the image's mean; no
            black blobs, which a per-image standardising model would read as
            strong features), ``"blur"``, or a number. Defaults to `"mean"`.
        batch_size: perturbed images per compiled call; None sizes calls by
            image size so memory stays bounded (one image's steps form one
            call). Defaults to `None`.
        output: a multi-output model's output (name or index) whose
            probability is followed. Defaults to `None`.

    Returns:
        A `Curve`.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> faces = kfv.synthetic_faces(2)
    >>> curve = deletion_curve(model, faces.images, random_maps(faces.images), steps=4)
    >>> curve.scores.shape, curve.auc.shape
    ((2, 5), (2,))
    """
    return _curve("deletion", model, images, maps, target, steps, fill, batch_size, output)


def insertion_curve(
    model: keras.Model,
    images: ArrayLike,
    maps: ArrayLike,
    target: int | Sequence[int] | np.ndarray | None = None,
    steps: int = 20,
    fill: Literal["mean", "blur"] | float = "blur",
    batch_size: int | None = None,
    output: str | int | None = None,
) -> Curve:
    """The target's probability as the map's most relevant pixels are revealed.

    Starts from `fill` (a blurred copy by default, as Petsiuk et al. do) and
    reveals the image's pixels in the map's order; a faithful map makes the
    probability rise fast: a high area under the curve. Arguments as in
    `deletion_curve`.

    Returns:
        A `Curve`.
    """
    return _curve("insertion", model, images, maps, target, steps, fill, batch_size, output)


def _quantized(maps):
    """Each map's values rounded at 1e-4 of its largest magnitude, (N, P) float64."""
    flat = np.asarray(maps).reshape(len(maps), -1).astype(np.float64)
    scale = np.abs(flat).max(axis=1, keepdims=True)
    return np.round(flat / np.where(scale > 0, scale, 1.0), 4)


def spearman(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Spearman rank correlation of each pair of maps, (N,); ties get average ranks.

    Values are compared at 1e-4 of each map's largest magnitude, as the
    deletion ranks are: the rounding noise of a near-flat map (a randomised
    model's), which differs between backends and machines, does not reorder
    pixels the map scores alike. A constant map correlates 0 with anything.
    """
    from scipy.stats import rankdata

    ra: np.ndarray = rankdata(_quantized(a), axis=1)
    rb: np.ndarray = rankdata(_quantized(b), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    return np.where(denom > 0, (ra * rb).sum(1) / np.where(denom > 0, denom, 1), 0.0)


def _ssim(a, b) -> np.ndarray:
    from skimage.metrics import structural_similarity

    side = min(a.shape[1:3])
    window = min(7, side if side % 2 else side - 1)  # scikit-image's default, or what fits
    if window < 3:
        return np.full(len(a), np.nan)
    return np.array(
        [
            structural_similarity(p, q, data_range=1.0, win_size=window)
            for p, q in zip(a, b, strict=True)
        ]
    )


@dataclass
class RandomizationResult:
    """The maps of a cascading randomisation and their similarity to the original.

    Attributes:
        layers: names of the layers re-initialised, in order (top first);
            step k has layers[0..k] randomised.
        maps: (L + 1, N, H, W): the original maps, then after each step.
        spearman: (L, N) rank correlation of each step's maps to the original.
        ssim: (L, N) structural similarity of each step's maps to the original.
    """

    layers: list[str]
    maps: np.ndarray
    spearman: np.ndarray
    ssim: np.ndarray

    @property
    def final_spearman(self) -> float:
        """Mean rank correlation once every layer is randomised (0 is ideal)."""
        return float(self.spearman[-1].mean())


def _kernels(layer):
    return [
        v
        for v in layer.weights
        if v.path.split("/")[-1] == "bias" or v.path.split("/")[-1].endswith("kernel")
    ]


def _reinitialize(layer, seed):
    """New random values for a layer's kernels, from its own initialisers, seeded.

    Drawn with numpy, so a seed gives the same weights on every backend.
    Variance-scaling initialisers (Glorot, He, LeCun: Keras' defaults) and
    RandomNormal/RandomUniform/TruncatedNormal are drawn as Keras defines
    them; zero, constant and any other initialiser get Glorot uniform for
    kernels and N(0, 0.05) for biases (zeros would make the layer silent
    rather than random). Frozen layers count too (a GAP head's base is
    frozen); batch normalisation statistics are left alone, as in Adebayo et
    al.
    """
    rng = np.random.default_rng(seed)
    for variable in _kernels(layer):
        name = variable.path.split("/")[-1]
        shape = tuple(variable.shape)
        initializer = getattr(layer, f"{name}_initializer", None)
        value = _draw(initializer, shape, rng)
        if value is None or not np.any(value):
            if name == "bias":
                value = rng.normal(0.0, 0.05, shape)
            else:
                value = _draw(keras.initializers.GlorotUniform(), shape, rng)
        variable.assign(value.astype(keras.backend.standardize_dtype(variable.dtype)))


def _draw(initializer, shape, rng):
    """`initializer`'s distribution drawn with numpy, or None for one not known."""
    config = initializer.get_config() if initializer is not None else {}
    if isinstance(initializer, keras.initializers.VarianceScaling):
        fan_in, fan_out = _fans(shape)
        mode, distribution = initializer.mode, initializer.distribution
        fan = {"fan_in": fan_in, "fan_out": fan_out}.get(mode, (fan_in + fan_out) / 2)
        scale = initializer.scale / max(1.0, fan)
        if distribution == "truncated_normal":
            return _truncated(rng, np.sqrt(scale) / 0.87962566103423978, shape)
        if distribution == "untruncated_normal":
            return rng.normal(0.0, np.sqrt(scale), shape)
        limit = np.sqrt(3.0 * scale)
        return rng.uniform(-limit, limit, shape)
    if isinstance(initializer, keras.initializers.TruncatedNormal):
        return config["mean"] + _truncated(rng, config["stddev"], shape)
    if isinstance(initializer, keras.initializers.RandomNormal):
        return rng.normal(config["mean"], config["stddev"], shape)
    if isinstance(initializer, keras.initializers.RandomUniform):
        return rng.uniform(config["minval"], config["maxval"], shape)
    return None


def _fans(shape):
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    field = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * field, shape[-1] * field


def _truncated(rng, stddev, shape):
    """Normal values redrawn until within two standard deviations."""
    value = rng.normal(0.0, 1.0, shape)
    while True:
        out = np.abs(value) > 2
        if not out.any():
            return stddev * value
        value[out] = rng.normal(0.0, 1.0, int(out.sum()))


def randomization_check(
    explainer_factory: Callable[..., Any],
    model: keras.Model,
    images: ArrayLike,
    target: int | Sequence[int] | np.ndarray | None = None,
    layers: Iterable[str] | None = None,
    seed: int = 0,
    output: str | int | None = None,
) -> RandomizationResult:
    """Cascading model-parameter randomisation (Adebayo et al. 2018).

    A copy of `model` (same weights) is explained, then its layers with a
    kernel are re-initialised one after another from the output towards the
    input, and the images are explained again after each step. Maps that
    stay close to the original (rank correlation near 1) do not depend on
    what the model learnt. The caller's model is not touched.

    Args:
        explainer_factory: ``f(model) -> explainer`` with an ``explain``
            method, e.g. ``lambda m: kfv.GradCAM(m)``.
        model: a Sequential or Functional Keras classifier.
        images: (N, H, W, C) images.
        target: None (the original model's predicted class, kept for every
            step), an int, or one int per image. Defaults to `None`.
        layers: names of the layers to randomise, in order; None for every
            layer with a kernel, top first. Defaults to `None`.
        seed: seed of the new weights. Defaults to `0`.
        output: a multi-output model's output (name or index); passed to
            `explainer_factory` as ``output=`` when it is an explainer class.
            Defaults to `None`.

    Returns:
        A `RandomizationResult`.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> result = randomization_check(kfv.Saliency, model, kfv.synthetic_faces(2).images)
    >>> result.layers[:2], result.spearman.shape
    (['predictions', 'dense3'], (10, 2))
    """
    x = as_images(images, input_shape(model), model.name)
    probs = _gradients.predict(model, x, output=output)
    t = as_targets(target, len(x), probs.shape[-1])
    t = np.where(t < 0, probs.argmax(axis=1), t)
    copy = _copy_model(model, x[:1])
    if output is not None and isinstance(explainer_factory, type):
        explainer = explainer_factory(copy, output=output)
    else:
        explainer = explainer_factory(copy)
    original = explainer.explain(x, target=t)
    # The copy's layers, matched to the caller's by position in the forward
    # pass (a cloned subclassed model's layers get new automatic names).
    mine = [r.layer for r in all_layers(model) if not isinstance(r.layer, keras.Model)]
    theirs = [r.layer for r in all_layers(copy) if not isinstance(r.layer, keras.Model)]
    twin = dict(zip(map(id, mine), theirs, strict=True))
    if layers is None:
        names = [la.name for la in reversed(mine) if hasattr(la, "kernel") and _kernels(la)]
    else:
        names = list(layers)
    by_name = {la.name: la for la in mine}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise ValueError(
            f"Layers {missing} are not in model {model.name!r}. Layers: {sorted(by_name)}"
        )
    chosen = [twin[id(by_name[name])] for name in names]
    maps, rho, ssim = [original], [], []
    for step, layer in enumerate(chosen):
        _reinitialize(layer, seed + step)
        now = explainer.explain(x, target=t)
        maps.append(now)
        rho.append(spearman(original, now))
        ssim.append(_ssim(original, now))
    return RandomizationResult(names, np.stack(maps), np.array(rho), np.array(ssim))


def _copy_model(model, image):
    """A copy of `model` with its weights (a subclassed model is built on `image`)."""
    try:
        copy = keras.models.clone_model(model)
        if not is_graph(model):
            copy(image, training=False)
    except Exception as err:
        raise ValueError(
            f"randomization_check randomises a copy of the model (the caller's is never "
            f"changed), and model {model.name!r} ({type(model).__name__}) could not be copied "
            f"with keras.models.clone_model: {type(err).__name__}: {err}. Give a subclassed "
            "model `get_config` (and `from_config` if needed) so Keras can rebuild it."
        ) from None
    copy.set_weights(model.get_weights())
    return copy


@dataclass
class EvidenceScores:
    """Pointing game and evidence mass of maps against ground-truth masks.

    Attributes (each (N,), with `mean` giving the average):
        pointing: share of the map's maximal pixels that lie inside the
            evidence (1 or 0 for a single maximum; a tie is scored as a
            random pick among the maxima).
        mass: share of the map's mass inside the evidence (a blank map,
            with no mass, counts as chance).
        chance: the evidence's share of the image: what a random point
            scores on the pointing game and a uniform map on mass.
    """

    pointing: np.ndarray
    mass: np.ndarray
    chance: np.ndarray

    def mean(self) -> dict[str, float]:
        return dict(
            pointing=float(self.pointing.mean()),
            mass=float(self.mass.mean()),
            chance=float(self.chance.mean()),
        )


def evidence_scores(maps: ArrayLike, evidence: ArrayLike) -> EvidenceScores:
    """Scores maps against the pixels that carry the class.

    Args:
        maps: (N, H, W) maps, >= 0.
        evidence: (N, H, W) bool masks (`synthetic_faces(...).evidence`).

    Returns:
        `EvidenceScores`.

    Example:

    >>> import numpy as np
    >>> evidence = np.zeros((1, 4, 4), bool); evidence[0, :2] = True
    >>> scores = evidence_scores(np.ones((1, 4, 4)), evidence)  # a constant map
    >>> scores.mean()
    {'pointing': 0.5, 'mass': 0.5, 'chance': 0.5}
    """
    maps = np.asarray(maps, dtype=np.float64)
    evidence = np.asarray(evidence, dtype=bool)
    if maps.ndim != 3 or maps.shape != evidence.shape:
        raise ValueError(
            f"Expected maps and evidence of the same shape (N, H, W). Received: "
            f"{maps.shape} and {evidence.shape}"
        )
    if (maps < 0).any():
        raise ValueError("Expected maps >= 0 (take the absolute value of signed maps).")
    flat, ev = maps.reshape(len(maps), -1), evidence.reshape(len(maps), -1)
    chance = ev.mean(axis=1)
    top = flat == flat.max(axis=1, keepdims=True)
    pointing = (top & ev).sum(1) / top.sum(1)
    total = flat.sum(1)
    mass = np.where(total > 0, (flat * ev).sum(1) / np.where(total > 0, total, 1), chance)
    return EvidenceScores(pointing, mass, chance)
