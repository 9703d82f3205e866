"""What the filters of a layer respond to: gradient ascent and feature maps.

- `maximize_activation` synthesises, for each chosen filter of a layer, the
  input image that activates it most: gradient ascent on the pixels from a
  grey, slightly noisy start, with the usual regularisers (an L2 pull
  towards grey, total variation against pixel noise, and jitter: a random
  shift at every step) that keep the images readable (Erhan et al. 2009,
  "Visualizing higher-layer features of a deep network"; Simonyan et al.
  2014 for class scores; Yosinski et al. 2015, "Understanding neural
  networks through deep visualization", for the regularisers). All filters
  are optimised together, as one batch, in one compiled loop.
- `feature_maps` returns a layer's raw outputs for given images.

Both see inside nested models, through the replay of `keras_fer_viz.layers`.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Literal, cast

import keras
import numpy as np
from keras import ops
from numpy.typing import ArrayLike

from keras_fer_viz import _gradients
from keras_fer_viz._explainer import (
    as_images,
    check_batch_size,
    check_positive_int,
    inputs_per_call,
)
from keras_fer_viz.layers import (
    build_probe,
    input_shape,
    output_layer,
    output_names,
    resolve_layer,
    spatial_layers,
)

__all__ = ["maximize_activation", "feature_maps"]


def feature_maps(
    model: keras.Model,
    layer: str | int | keras.layers.Layer | None,
    images: ArrayLike,
    batch_size: int | None = None,
) -> np.ndarray:
    """The raw outputs of a spatial layer for given images.

    Use it to see what the filters of a layer pick out of real faces (the
    study's question 2): one (h, w) map per filter and image.

    Args:
        model: a Keras image classifier (Sequential, Functional or nested).
        layer: a spatial layer: a name, a path through nested models, a
            `Layer`, an index into ``model.layers``, or None for the last
            conv layer.
        images: (N, H, W, C) or one (H, W, C) image, as the model takes them.
        batch_size: images per compiled call; None sizes calls by image size
            so memory stays bounded. Defaults to `None`.

    Returns:
        float32 (N, h, w, F): the layer's activations, in inference mode.

    Raises:
        ValueError: if the layer is not spatial, or the images do not fit.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> kfv.feature_maps(model, "block2_conv1", kfv.synthetic_faces(3).images).shape
    (3, 24, 24, 16)
    """
    target = resolve_layer(model, layer)
    probe, shapes = build_probe(model, [target], score=None)
    if len(shapes[0]) != 4:
        raise ValueError(
            f"feature_maps needs a spatial layer with output (N, h, w, F). Received: layer "
            f"{target.name!r} with output shape {shapes[0]}. Spatial layers: "
            f"{[la.name for la in spatial_layers(model)]}"
        )
    shape = input_shape(model)
    x = as_images(images, shape, model.name)
    step = inputs_per_call(x.shape[1:3], check_batch_size(batch_size))
    forward = _gradients.forward(probe)
    fn = _gradients.compile(
        lambda im: forward([im])[0], model, [((None, *shape), "float32")], batch=(0,)
    )
    return np.concatenate([fn(x[i : i + step]) for i in range(0, len(x), step)])


# model -> {key: probe or compiled loop}: a second call with the same model
# and layer (a callback at every epoch) neither rebuilds nor retraces. Weak
# keys: the cache goes with the model.
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _objective_probe(model, layer, output=None):
    """(layer, probe, kind, units): what to maximise for `layer`.

    kind is "spatial" (mean of a filter's map), "units" (a unit of a flat
    layer) or "class" (a class logit, for the model's output layer).
    """
    target = resolve_layer(model, layer)
    cache = _CACHE.setdefault(model, {})
    key = ("probe", id(target), output)
    if key not in cache:
        cache[key] = _build_objective_probe(model, target, output)
    return cache[key]


def _build_objective_probe(model, target, output):
    if output is None:  # the output whose layer `target` is, if any
        heads = [output_layer(model, k) for k in range(len(output_names(model)))]
        output = next((k for k, head in enumerate(heads) if head is target), None)
        is_head = output is not None
    else:
        is_head = target is output_layer(model, output)
    if is_head:
        probe, _ = build_probe(model, (), score="logit", output=output)
        return target, probe, "class", int(probe.outputs[-1].shape[-1])
    probe, shapes = build_probe(model, [target], score=None)
    shape = shapes[0]
    if len(shape) == 4:
        return target, probe, "spatial", int(shape[-1])
    if len(shape) == 2:
        return target, probe, "units", int(shape[-1])
    raise ValueError(
        f"maximize_activation needs a layer with output (N, h, w, F) or (N, F). Received: "
        f"layer {target.name!r} with output shape {shape}"
    )


def maximize_activation(
    model: keras.Model,
    layer: str | int | keras.layers.Layer | None,
    filters: int | Sequence[int] | np.ndarray | None = None,
    steps: int = 150,
    seed: int = 0,
    *,
    learning_rate: float = 0.03,
    l2: float = 0.01,
    total_variation: float = 0.3,
    jitter: int = 2,
    value_range: Sequence[float] = (0.0, 255.0),
    output: Literal["display", "input"] = "display",
    score: Literal["probability", "logit"] = "probability",
    verbose: int | Literal["auto"] = "auto",
    model_output: str | int | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Images that maximally activate the filters of a layer, by gradient ascent.

    Starting from grey with a little noise, each image climbs the gradient
    of its filter's mean activation (or of a class's logit, when `layer` is
    the model's output) for `steps` steps of normalised gradient ascent, with
    L2 decay towards grey, a total-variation penalty and random jitter. The
    activation's gradient and the penalty's are each scaled to unit RMS
    before they are combined, so the settings hold for any layer.
    All filters form one batch and the whole loop is compiled; the same
    `seed` gives the same images. Settings suit small grayscale inputs such
    as 48x48 faces.

    Erhan et al. (2009), "Visualizing higher-layer features of a deep
    network"; Yosinski et al. (2015), "Understanding neural networks through
    deep visualization".

    Args:
        model: a Keras image classifier (Sequential, Functional or nested).
        layer: the layer (see `keras_fer_viz.resolve_layer`): a conv or other
            spatial layer (filters), a flat layer (units), or the model's
            output layer (classes; its logits are maximised).
        filters: filter indices, an int, or None for all. Defaults to `None`.
        steps: ascent steps. Defaults to `150`.
        seed: seed of the starting noise and the jitter. Defaults to `0`.
        learning_rate: step size, as a share of `value_range`, of the
            RMS-normalised gradient. Defaults to `0.03`.
        l2: L2 decay: the share of each pixel's distance to grey removed at
            every step. Defaults to `0.01`.
        total_variation: weight of the total-variation gradient against the
            activation's (both RMS-normalised): smoothness. Defaults to `0.3`.
        jitter: largest random shift in pixels at each step. Defaults to `2`.
        value_range: ``(low, high)`` of the model's input pixels; images stay
            inside it. Defaults to `(0.0, 255.0)` (raw pixels).
        output: ``"display"``: each image stretched to [0, 1] for showing;
            ``"input"``: in the model's input units, to feed back to it.
            Defaults to `"display"`.
        score: for the model's output layer only: ``"probability"``
            maximises the log-probability of the class (its logit minus the
            log-sum-exp of all logits), so the image is one the model
            assigns to that class; ``"logit"`` maximises the logit alone
            (Simonyan et al. 2014), which may raise other classes too.
            Defaults to `"probability"`.
        verbose: 0 silent, or "auto"/1 for a Keras progress bar over steps.
            Defaults to `"auto"`.
        model_output: for a multi-output model, the output (name or index)
            whose classes `layer` = its output layer means. Defaults to `None`.
        batch_size: images (filters) optimised together per compiled loop;
            None sizes the chunks by image size so memory stays bounded.
            Defaults to `None`.

    Returns:
        float32 (F, H, W, C) images, one per filter, in the order of
        `filters`.

    Raises:
        ValueError: if a filter index is out of range or an option is invalid.

    Example:

    >>> import keras_fer_viz as kfv
    >>> model = kfv.fer_cnn(width=0.25)
    >>> images = kfv.maximize_activation(model, "block1_conv1", [0, 3], steps=5, verbose=0)
    >>> images.shape, float(images.min()), float(images.max())
    ((2, 48, 48, 1), 0.0, 1.0)
    """
    target, probe, kind, units = _objective_probe(model, layer, model_output)
    batch_size = check_batch_size(batch_size)
    index = _filter_indices(filters, units, target.name, kind)
    steps = check_positive_int(steps, "steps")
    for name, value in (
        ("learning_rate", learning_rate),
        ("l2", l2),
        ("total_variation", total_variation),
    ):
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
            raise ValueError(f"Expected {name} >= 0. Received: {value!r}")
    jitter = check_positive_int(jitter, "jitter", minimum=0)
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(
            f"Expected value_range (low, high) with high > low. Received: {value_range!r}"
        )
    if output not in ("display", "input"):
        raise ValueError(f"Expected output 'display' or 'input'. Received: {output!r}")
    if score not in ("probability", "logit"):
        raise ValueError(f"Expected score 'probability' or 'logit'. Received: {score!r}")
    model_shape = input_shape(model)
    if any(d is None for d in model_shape):
        raise ValueError(
            f"maximize_activation needs a fixed input size. Received: model {model.name!r} "
            f"with input shape {model_shape}"
        )
    shape = cast("tuple[int, int, int]", model_shape)  # no None: checked above

    rng = np.random.default_rng(seed)
    mid, span = (lo + hi) / 2, hi - lo
    shifts = rng.integers(-jitter, jitter + 1, (steps, 2)).astype(np.int32)
    # Filter f always starts from the same noise, whichever filters are asked
    # for with it: an image depends on (seed, filter), not on the batch.
    start = rng.uniform(-1, 1, (int(index.max()) + 1, *shape))[index]
    x = (mid + span * 0.05 * start).astype(np.float32)
    onehot = np.eye(units, dtype=np.float32)[index]
    settings = np.array([learning_rate, l2, total_variation, lo, hi], np.float32)
    fn = _ascent_loop(model, target, probe, kind, units, score, shape)
    verbose = 1 if verbose == "auto" else int(verbose)
    # Filters are optimised in chunks of equal size (the last padded with
    # copies of its first filter, so JAX compiles one shape), as many as the
    # memory bound allows; each image depends only on (seed, filter).
    size = min(_gradients.padded_size(len(index)), inputs_per_call(shape[:2], batch_size))
    chunks = -(-len(index) // size)
    bar = keras.utils.Progbar(steps * chunks, unit_name="step") if verbose else None
    per_call = steps if not verbose else max(1, steps // 10)
    done, results = 0, []
    for first in range(0, len(index), size):
        part, hot = x[first : first + size], onehot[first : first + size]
        real = len(part)
        if real < size:
            part = np.concatenate([part, np.repeat(part[:1], size - real, axis=0)])
            hot = np.concatenate([hot, np.repeat(hot[:1], size - real, axis=0)])
        for start in range(0, steps, per_call):
            chunk = shifts[start : start + per_call]
            part = fn(part, hot, chunk, settings)
            done += len(chunk)
            if bar is not None:
                bar.update(done)
        results.append(part[:real])
    x = np.concatenate(results)
    if output == "input":
        return x
    low = x.min(axis=(1, 2, 3), keepdims=True)
    high = x.max(axis=(1, 2, 3), keepdims=True)
    return ((x - low) / np.where(high > low, high - low, 1.0)).astype(np.float32)


def _ascent_loop(model, target, probe, kind, units, score, shape):
    """The compiled ascent loop for one layer, built and traced once per model."""
    cache = _CACHE.setdefault(model, {})
    key = ("loop", id(target), score)
    if key in cache:
        return cache[key]
    forward = _gradients.forward(probe)

    def activation(images, select):
        out = forward([images])[-1]
        if kind == "spatial":
            out = ops.mean(out, axis=(1, 2))
        elif kind == "class" and score == "probability":
            out = ops.log_softmax(out, axis=-1)
        return ops.sum(out * select)

    def variation(images):
        return ops.sum(ops.abs(images[:, 1:] - images[:, :-1])) + ops.sum(
            ops.abs(images[:, :, 1:] - images[:, :, :-1])
        )

    ascend, smooth = _gradients.grad(activation), _gradients.grad(variation)

    def unit_rms(g):
        return g / (ops.sqrt(ops.mean(ops.square(g), axis=(1, 2, 3), keepdims=True)) + 1e-12)

    def run(images, select, shifts, settings):
        learning_rate, l2, total_variation, lo, hi = (settings[i] for i in range(5))
        mid, span = (lo + hi) / 2, hi - lo

        # Each direction is normalised on its own, so the regularisers weigh
        # the same against any layer, whatever the scale of its activations.
        def body(i, images):
            dy, dx = shifts[i, 0], shifts[i, 1]
            shifted = ops.roll(ops.roll(images, dy, axis=1), dx, axis=2)
            _, g = ascend(shifted, select)
            g = ops.roll(ops.roll(g, -dy, axis=1), -dx, axis=2)
            _, g_tv = smooth(images)
            step = unit_rms(g) - total_variation * unit_rms(g_tv)
            images = images + (learning_rate * span) * step
            images = mid + (1.0 - l2) * (images - mid)  # L2 decay towards grey
            return ops.clip(images, lo, hi)

        return ops.fori_loop(0, ops.shape(shifts)[0], body, images)

    spec = [
        ((None, *shape), "float32"),
        ((None, units), "float32"),
        ((None, 2), "int32"),
        ((5,), "float32"),
    ]
    cache[key] = _gradients.compile(run, probe, spec)
    return cache[key]


def _filter_indices(filters, units, name, kind):
    what = {"spatial": "filters", "units": "units", "class": "classes"}[kind]
    if filters is None:
        return np.arange(units)
    index = np.atleast_1d(np.asarray(filters))
    if index.ndim != 1 or index.size == 0 or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(
            f"Expected `filters` to be None, an int or a list of ints. Received: {filters!r}"
        )
    bad = index[(index < 0) | (index >= units)]
    if bad.size:
        raise ValueError(
            f"Filter index {int(bad[0])} is out of range: layer {name!r} has {units} {what} "
            f"(0 to {units - 1})."
        )
    return index
