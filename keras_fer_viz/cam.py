"""Class activation maps through a global-average-pooling head swap.

Zhou et al. (2016), "Learning deep features for discriminative
localization": when a network ends in global average pooling (GAP) over
feature maps ``A_k`` followed by a linear classifier ``W``, the map
``CAM_c = sum_k W[k, c] A_k`` shows where class ``c`` is found, and its
spatial mean plus the bias is exactly the class logit. Most classifiers end
in dense layers instead; `gap_head` swaps the head: it keeps the model's
convolutional base up to a layer (a frozen copy; the caller's model is not
touched), adds GAP and a new softmax Dense layer, and trains only that
layer. `CAM` then reads the maps of any model with such a head.
"""

from __future__ import annotations

from typing import Literal

import keras
import numpy as np
from keras import ops
from numpy.typing import ArrayLike

from keras_fer_viz import _gradients
from keras_fer_viz._explainer import (
    Explainer,
    _predicted,
    as_images,
    check_positive_int,
    inputs_per_call,
)
from keras_fer_viz.layers import build_probe, input_shape, is_graph, resolve_layer, spatial_layers
from keras_fer_viz.registry import register

__all__ = ["CAM", "gap_head", "find_gap_head"]

# Layers allowed between the pooling and the classifier: identities at
# inference time.
_PASS_THROUGH = (keras.layers.Dropout,)


def find_gap_head(
    model: keras.Model, output: str | int | None = None
) -> tuple[keras.layers.Layer, keras.layers.Dense]:
    """Finds a GAP -> (Dropout) -> Dense head at the end of a model (or of one output).

    Returns:
        ``(feature_layer, dense)``: the layer whose output is pooled, and
        the Dense classifier.

    Raises:
        ValueError: if the model does not end in global average pooling
            and a Dense layer (optionally with a separate softmax).
    """
    from keras_fer_viz.layers import _select, _trace

    replay = _trace(model)
    rows = replay.rows
    problem = None
    hit = replay._producer.get(id(_select(model, replay.output, output, replay.output_names)))
    i = len(rows) - 1 if hit is None else hit[0]
    while i >= 0 and isinstance(rows[i].layer, keras.Model):
        i -= 1  # a nested model is listed after its own layers
    if i >= 0 and (
        isinstance(rows[i].layer, keras.layers.Softmax)
        or (
            isinstance(rows[i].layer, keras.layers.Activation)
            and getattr(rows[i].layer.activation, "__name__", "") == "softmax"
        )
    ):
        i = _single_input(rows, i)
    dense = rows[i].layer if i is not None and i >= 0 else None
    if not isinstance(dense, keras.layers.Dense):
        problem = "it does not end in a Dense classifier"
    else:
        j = _single_input(rows, i)
        while j is not None and isinstance(rows[j].layer, _PASS_THROUGH):
            j = _single_input(rows, j)
        if j is None or not isinstance(rows[j].layer, keras.layers.GlobalAveragePooling2D):
            found = "nothing" if j is None else f"{type(rows[j].layer).__name__} {rows[j].path!r}"
            problem = f"its classifier {dense.name!r} is fed by {found}, not GlobalAveragePooling2D"
        else:
            k = _single_input(rows, j)
            while k is not None and k > 0 and isinstance(rows[k].layer, keras.Model):
                k -= 1  # a nested model's output comes from its last layer, listed before it
            if k is None or len(rows[k].output_shape) != 4:
                problem = "the pooled tensor is not the output of a spatial layer"
            else:
                return rows[k].layer, dense
    raise ValueError(
        f"CAM needs a model that ends in GlobalAveragePooling2D and a Dense layer; model "
        f"{model.name!r} does not: {problem}. Build one from your model with "
        "`keras_fer_viz.gap_head(model, data=(x, y))`, or use GradCAM, which works on any head."
    )


def _single_input(rows, i):
    ids = rows[i].input_ids
    return ids[0] if len(ids) == 1 else None


@register
class CAM(Explainer):
    """Class activation maps of a model with a global-average-pooling head.

    For feature maps ``A_k`` pooled by GAP and a Dense classifier ``W``,
    ``CAM_c = sum_k W[k, c] A_k``. Needs no gradient, and its raw map is an
    exact decomposition of the logit: the spatial mean of ``CAM_c`` plus the
    bias ``b_c`` is the logit of class ``c``. Use `gap_head` to give any
    classifier such a head.

    Zhou et al. (2016), "Learning deep features for discriminative
    localization".

    Args:
        model: a model ending in ``GlobalAveragePooling2D -> Dense`` (a
            Dropout in between and a separate softmax are allowed), such as
            the one `gap_head` returns.
        normalize: True returns ReLU'd maps upsampled to the input size and
            scaled to [0, 1]; False returns the raw map in logit units at
            the feature maps' resolution (N, h, w). Defaults to `True`.
        batch_size: images per compiled call; None sizes calls by image size
            so memory stays bounded. Defaults to `None`.
        output: a multi-output model's output to explain (name or index);
            that output must end in the GAP head. Defaults to `None`.

    Returns (from `explain`):
        float32 (N, H, W) maps in [0, 1], or raw (N, h, w) maps.

    Raises:
        ValueError: if the model has no GAP + Dense head (the message points
            at `gap_head`).

    Example:

    >>> import keras, keras_fer_viz as kfv
    >>> inputs = keras.Input((48, 48, 1))
    >>> x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    >>> x = keras.layers.GlobalAveragePooling2D()(x)
    >>> model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x))
    >>> kfv.CAM(model).explain(kfv.synthetic_faces(2).images).shape
    (2, 48, 48)
    """

    name = "cam"
    signed = True
    overlay = True
    blank_reason = (
        "the head's class-weighted sum of the feature maps is negative everywhere, so the "
        "ReLU leaves nothing: the pooled features count against the class"
    )

    def __init__(
        self,
        model: keras.Model,
        *,
        normalize: bool = True,
        batch_size: int | None = None,
        output: str | int | None = None,
    ) -> None:
        super().__init__(model, normalize=normalize, batch_size=batch_size, output=output)
        self.layer, self.dense = find_gap_head(model, output)
        self._probe, shapes = self._build_probe([self.layer], score="logit")
        self.layer_shape = shapes[0]
        forward = _gradients.forward(self._probe)

        def fn(x, t):
            features, logits = forward([x])
            _, t = _gradients.gather_scores(logits, t)
            kernel = ops.cast(self.dense.kernel, "float32")
            w = ops.transpose(ops.take(kernel, t, axis=1))  # (N, K)
            raw = ops.einsum("nhwk,nk->nhw", features, w)
            return self._finish_maps(raw, tuple(x.shape[1:3])), _predicted(logits)

        self._fn = self._compile(fn)


@_gradients.no_distribution()  # built and trained on one device, whatever the distribution
def gap_head(
    model: keras.Model,
    layer: str | int | keras.layers.Layer | None = None,
    data: tuple[ArrayLike, ArrayLike] | None = None,
    epochs: int = 5,
    *,
    validation_data: tuple[ArrayLike, ArrayLike] | None = None,
    batch_size: int = 64,
    learning_rate: float = 0.01,
    seed: int = 0,
    verbose: int | Literal["auto"] = "auto",
    output: str | int | None = None,
    bias: bool = False,
) -> keras.Model:
    """Swaps a classifier's head for global average pooling and a trained Dense layer.

    The new model is a frozen copy of `model` up to `layer`, then
    ``GlobalAveragePooling2D`` and a softmax ``Dense`` layer trained on
    `data` (the only trainable weights). The caller's model, its weights and
    its layers' `trainable` flags stay exactly as they were. Because the base
    is frozen and runs in inference mode, the pooled features are computed
    once and the head is fitted on them: an epoch costs almost nothing.

    The head's accuracy and the original model's, on `validation_data` (or
    on a held-out tenth of `data`), are printed when `verbose` and kept in
    the returned model's ``head_report`` dict.

    Zhou et al. (2016), "Learning deep features for discriminative
    localization", section 2.

    Args:
        model: a Keras image classifier (Sequential, Functional or nested).
        layer: the spatial layer to pool (see `keras_fer_viz.resolve_layer`);
            None for the last conv layer. Defaults to `None`.
        data: ``(x, y)``: images as the model takes them and integer labels.
        epochs: epochs of head training. Defaults to `5`.
        validation_data: ``(x_val, y_val)`` for the reported accuracies; if
            None, a tenth of `data` is held out. Defaults to `None`.
        batch_size: batch size, for the features and the head. Defaults to
            `64`.
        learning_rate: Adam's learning rate for the head. Defaults to `0.01`.
        seed: seed of the head's initialisation and the split. Defaults to `0`.
        verbose: 0 silent; "auto" or 1 print the accuracies. Defaults to
            `"auto"`.
        output: a multi-output model's classifier output (name or index)
            whose classes the head learns. Defaults to `None`.
        bias: give the new Dense layer a bias. Zhou et al. set it to zero:
            then a class's CAM averages to its logit, and the map of the
            predicted class cannot be pushed below zero everywhere by a
            large bias (blank after the ReLU), as happens on models whose
            pooled features sit far from zero. True fits a bias too (a task
            that is a threshold on the features needs one). Defaults to
            `False`.

    Returns:
        A new `keras.Model` (``<name>_gap_head``) ending in GAP and Dense,
        ready for `CAM`.

    Raises:
        ValueError: if the layer is not spatial or the data do not fit.

    Example:

    >>> import keras_fer_viz as kfv
    >>> faces = kfv.synthetic_faces(140)
    >>> model = kfv.fer_cnn(width=0.25)
    >>> cam_model = kfv.gap_head(model, data=(faces.images, faces.labels), epochs=1, verbose=0)
    >>> [layer.name for layer in cam_model.layers[-2:]]
    ['gap', 'gap_head']
    >>> kfv.CAM(cam_model).explain(faces.images[:2]).shape
    (2, 48, 48)
    """
    x, y = _check_arguments(model, data)
    target, probe, layer_shape, num_classes = _feature_layer(model, layer, output)
    x, y, x_val, y_val, epochs = _training_data(
        model, x, y, validation_data, epochs, seed, num_classes
    )
    _check_spatial(model, target, layer_shape)
    base = _frozen_base(model, probe)
    features, features_val = _pooled_features(model, base, x, x_val)
    head = _train_head(
        features,
        y,
        num_classes,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        bias=bias,
    )
    cam_model = _cam_model(model, base, head)
    cam_model.head_report = _head_report(model, probe, target, head, features_val, x_val, y_val)
    if verbose:
        _print_head_report(cam_model.head_report)
    return cam_model


def _check_arguments(model, data):
    """The ``(x, y)`` of `data`, for a model whose base can be copied (Sequential, Functional)."""
    if not is_graph(model):
        raise ValueError(
            f"gap_head copies the model's convolutional base, which needs a Sequential or "
            f"Functional model. Received: subclassed model {model.name!r} "
            f"({type(model).__name__}). Use GradCAM (it works on subclassed models), or "
            "rebuild the model with the Functional API."
        )
    if data is None:
        raise ValueError("Expected `data=(x, y)` to train the new head. Received: data=None")
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ValueError(
            f"Expected `data` to be a pair (x, y). Received: {type(data).__name__}"
        ) from None
    return x, y


def _feature_layer(model, layer, output):
    """The layer to pool, a probe of it and of the classifier, its output shape, the classes."""
    target = resolve_layer(model, layer)
    probe, shapes = build_probe(model, [target], score="probability", output=output)
    return target, probe, shapes[0], int(probe.outputs[-1].shape[-1])


def _training_data(
    model, x, y, validation_data: tuple[ArrayLike, ArrayLike] | None, epochs, seed, num_classes
):
    """Checked ``(x, y, x_val, y_val, epochs)``; without validation data, a held-out tenth."""
    from sklearn.model_selection import train_test_split

    from keras_fer_viz.training import check_data

    x, y = check_data(model, x, y, name="data x", num_classes=num_classes)
    epochs = check_positive_int(epochs, "epochs")
    if validation_data is None:
        stratify = y if np.bincount(y).min(initial=0) >= 2 and len(np.unique(y)) > 1 else None
        x, x_val, y, y_val = train_test_split(
            x, y, test_size=0.1, random_state=seed, stratify=stratify
        )
    else:
        x_val, y_val = check_data(
            model, *validation_data, name="validation x", num_classes=num_classes
        )
    return x, y, x_val, y_val, epochs


def _check_spatial(model, target, layer_shape):
    """Refuses a layer without a spatial output (N, h, w, C), listing the spatial ones."""
    if len(layer_shape) != 4:
        raise ValueError(
            f"gap_head needs a spatial layer with output (N, h, w, C). Received: layer "
            f"{target.name!r} with output shape {layer_shape}. Spatial layers: "
            f"{[la.name for la in spatial_layers(model)]}"
        )


def _frozen_base(model, probe):
    """A frozen copy of the model up to the probed layer (the caller's flags stay as they are)."""
    base_source = keras.Model(probe.inputs, probe.outputs[0])
    base = keras.models.clone_model(base_source)
    base.set_weights(base_source.get_weights())
    base.trainable = False
    base.name = f"{model.name}_base"
    return base


def _batched(fn, images, model):
    """`fn` over `images` in calls bounded by image size (inference only), concatenated."""
    images = as_images(images, input_shape(model), model.name)
    step = inputs_per_call(images.shape[1:3])
    return np.concatenate([fn(images[i : i + step]) for i in range(0, len(images), step)])


def _pooled_features(model, base, *image_sets):
    """The base's globally averaged features (N, K) of each set of images, in batches."""
    pool = _gradients.compile(
        lambda im: ops.mean(base(im, training=False), axis=(1, 2)),
        base,
        [((None, *input_shape(model)), "float32")],
        batch=(0,),
    )
    return [_batched(pool, images, model) for images in image_sets]


def _feature_scale(features):
    """The root mean square of each feature (1 where it is zero): the head's input scale."""
    # The head is fitted on features divided by their root mean square (so
    # its training does not depend on the scale of the layer's activations),
    # then the scaling is folded into its weights: W = W' / s, b = b'. The
    # features are not centred: centring would fold -(m / s) W' into the
    # bias, which CAM leaves out (with bias=True, a 'predicted' map negative
    # everywhere was seen on ResNet50V2, Xception and mini-Xception). The
    # CAM identity holds for the raw features.
    scale = np.sqrt(np.mean(np.square(features), axis=0))
    return np.where(scale > 1e-8, scale, 1.0)


def _train_head(features, y, num_classes, *, epochs, batch_size, learning_rate, seed, bias):
    """The softmax Dense head, fitted on the scaled features, its weights in raw-feature units."""
    scale = _feature_scale(features)
    keras.utils.set_random_seed(seed)
    trainer = keras.Sequential(
        [
            keras.Input((features.shape[1],)),
            keras.layers.Dense(num_classes, activation="softmax", use_bias=bool(bias)),
        ]
    )
    trainer.compile(
        keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    trainer.fit(features / scale, y, epochs=epochs, batch_size=batch_size, verbose=0)
    w_scaled, *fitted_bias = trainer.layers[-1].get_weights()
    head = keras.layers.Dense(
        num_classes, activation="softmax", use_bias=bool(bias), name="gap_head"
    )
    head.build((None, features.shape[1]))
    head.set_weights([w_scaled / scale[:, None], *fitted_bias])
    return head


def _cam_model(model, base, head):
    """The CAM model: image -> frozen base -> GlobalAveragePooling2D -> head."""
    image = keras.Input(input_shape(model), name="image")
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(base(image))
    return keras.Model(image, head(pooled), name=f"{model.name}_gap_head")


def _head_report(model, probe, target, head, features_val, x_val, y_val):
    """The head's and the original model's accuracies on the validation images."""
    forward = _gradients.compile(
        lambda im: probe(im, training=False)[-1],
        probe,
        [((None, *input_shape(model)), "float32")],
        batch=(0,),
    )
    head_logits = features_val @ head.get_weights()[0] + sum(head.get_weights()[1:])
    head_acc = float((head_logits.argmax(1) == y_val).mean())
    model_acc = float((_batched(forward, x_val, model).argmax(1) == y_val).mean())
    return dict(
        layer=target.name,
        head_accuracy=head_acc,
        model_accuracy=model_acc,
        validation_images=int(len(y_val)),
    )


def _print_head_report(report):
    """Prints the head report in one line (when gap_head is verbose)."""
    print(
        f"GAP head on {report['layer']!r}: accuracy {report['head_accuracy']:.3f} "
        f"(original model {report['model_accuracy']:.3f}) on "
        f"{report['validation_images']} validation images"
    )
