"""Training and evaluating an image classifier the way the study did.

`train` fits a Keras classifier with a stratified validation split, class
weights for imbalanced data (FER2013's Disgust class is 1.5% of the file),
early stopping that restores the best weights, and a best-model checkpoint
that is always a complete file (written to a temporary file, then renamed).
`per_class_accuracy`, `accuracy_table` and `summarize` summarise a held-out
set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import keras
import numpy as np
from numpy.typing import ArrayLike
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from keras_fer_viz._io import save_model
from keras_fer_viz.data.fer2013 import EMOTIONS
from keras_fer_viz.models import compile_augmentation_on_jax

__all__ = [
    "train",
    "BestModelCheckpoint",
    "per_class_accuracy",
    "accuracy_table",
    "check_data",
    "summarize",
]


@overload
def check_data(
    model: keras.Model,
    x: ArrayLike,
    y: None = None,
    name: str = "x",
    num_classes: int | None = None,
) -> tuple[np.ndarray, None]: ...
@overload
def check_data(
    model: keras.Model,
    x: ArrayLike,
    y: ArrayLike,
    name: str = "x",
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]: ...
def check_data(
    model: keras.Model,
    x: ArrayLike,
    y: ArrayLike | None = None,
    name: str = "x",
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validates images (and labels) against a classifier; returns numpy arrays.

    Args:
        model: the classifier, with an input shape (H, W, C) and one output of
            shape (num_classes,).
        x: images, (N, H, W, C).
        y: integer labels (N,) in ``[0, num_classes)``, or None. Defaults to `None`.
        name: what to call `x` in error messages. Defaults to `"x"`.
        num_classes: the number of classes (for a multi-output model, the
            explained output's); None reads the model's single output.
            Defaults to `None`.

    Returns:
        ``(x, y)`` as numpy arrays (`y` int64, or None).

    Raises:
        ValueError: if a shape, dtype or label does not fit the model.
    """
    from keras_fer_viz.layers import input_shape

    x = np.asarray(x)
    expected = tuple(input_shape(model))
    if (
        x.ndim != 4
        or x.shape[0] == 0
        or any(e is not None and e != g for e, g in zip(expected, x.shape[1:], strict=False))
    ):
        raise ValueError(
            f"Expected `{name}` to be a non-empty batch of images of shape (N, "
            f"{', '.join(str(d) for d in expected)}) for this model. Received: shape={x.shape}"
        )
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"Expected numeric images in `{name}`. Received: dtype={x.dtype}")
    if y is None:
        return x, None
    y = np.asarray(y)
    if num_classes is None:
        num_classes = model.output_shape[-1]
    if y.shape != (len(x),):
        raise ValueError(
            f"Expected one integer label per image: shape ({len(x)},). Received: shape={y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"Expected integer labels. Received: dtype={y.dtype}")
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        raise ValueError(
            f"Expected labels in [0, {num_classes}) for a model with {num_classes} outputs. "
            f"Received: label {y[bad][0]} at index {np.flatnonzero(bad)[0]}"
        )
    return x, y.astype(np.int64)


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the model whenever the monitored metric improves, atomically.

    Unlike `keras.callbacks.ModelCheckpoint`, the file at `filepath` is never
    half-written: the model is saved to a temporary file in the same folder,
    then renamed over `filepath` (an atomic rename on POSIX and Windows).

    Args:
        filepath: destination, ending in ``.keras``.
        monitor: the logged metric to watch. Defaults to `"val_accuracy"`.
        mode: "max" or "min": which direction is an improvement. Defaults
            to `"max"`.
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_accuracy",
        mode: Literal["max", "min"] = "max",
    ) -> None:
        super().__init__()
        self.filepath = Path(filepath)
        if self.filepath.suffix != ".keras":
            raise ValueError(f"Expected a path ending in '.keras'. Received: {str(filepath)!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"Expected mode 'max' or 'min'. Received: {mode!r}")
        self.monitor, self.mode = monitor, mode

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.best = -np.inf if self.mode == "max" else np.inf
        self.best_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(
                f"BestModelCheckpoint monitors {self.monitor!r}, which is not logged. "
                f"Logged: {sorted(logs or {})}"
            )
        if value > self.best if self.mode == "max" else value < self.best:
            self.best, self.best_epoch = float(value), epoch
            save_model(self.model, self.filepath)


def train(
    model: keras.Model,
    x: ArrayLike,
    y: ArrayLike,
    *,
    validation_data: tuple[ArrayLike, ArrayLike] | None = None,
    validation_split: float = 0.1,
    epochs: int = 30,
    batch_size: int = 32,
    learning_rate: float = 3e-3,
    schedule: Literal["cosine", "constant"] = "cosine",
    class_weight: Literal["balanced"] | dict[int, float] | None = "balanced",
    patience: int = 5,
    checkpoint: str | os.PathLike[str] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    seed: int = 0,
    verbose: int | Literal["auto"] = "auto",
) -> keras.callbacks.History:
    """Trains an image classifier with the study's recipe.

    Compiles the model with Adam and sparse categorical cross-entropy (unless
    it is compiled already), holds out a stratified validation split, weights
    the classes, stops early when validation loss stops improving and restores
    the best weights. The caller's model is trained in place, as with `fit`.

    Args:
        model: a classifier with a softmax output (e.g. `fer_cnn()`).
        x: training images (N, H, W, C), raw pixels as the model expects.
        y: integer labels (N,).
        validation_data: ``(x_val, y_val)``; if None, a stratified
            `validation_split` of `x` is held out. Defaults to `None`.
        validation_split: share of `x` held out when `validation_data` is
            None. Defaults to `0.1`.
        epochs: maximum number of epochs. Defaults to `30`.
        batch_size: batch size. Defaults to `32` (at 5 epochs on 7,000
            synthetic faces, 64 reaches 0.87 held-out accuracy where 32
            reaches 0.99: twice the steps).
        learning_rate: Adam's peak learning rate (when the model is not
            compiled). Defaults to `3e-3`.
        schedule: `"cosine"`: the learning rate rises linearly over the
            first tenth of the planned steps, then follows a cosine decay to
            zero at the last epoch (Loshchilov and Hutter 2017); with batch
            normalisation this trains the reference CNN in 5 epochs (0.97
            held-out accuracy on synthetic faces, against 0.83 with a constant
            1e-3). `"constant"`: `learning_rate` throughout. Used only when
            the model is not compiled. Defaults to `"cosine"`.
        class_weight: "balanced" (weights inversely proportional to class
            frequency, from scikit-learn), a dict, or None. Defaults to
            `"balanced"`.
        patience: epochs without improvement of the validation loss before
            stopping. Defaults to `5`.
        checkpoint: a ``.keras`` path where the best model (by validation
            accuracy) is saved atomically, or None. Defaults to `None`.
        callbacks: more Keras callbacks. Defaults to `()`.
        seed: seed of the validation split. Defaults to `0`.
        verbose: passed to `fit` ("auto", 0, 1 or 2). Defaults to `"auto"`.

    Returns:
        The `keras.callbacks.History` of the fit.

    Raises:
        ValueError: if the data do not fit the model or an option is invalid.

    Example:

    >>> import keras_fer_viz as kfv
    >>> faces = kfv.synthetic_faces(700)
    >>> model = kfv.fer_cnn(width=0.25)
    >>> history = kfv.train(model, faces.images, faces.labels, epochs=1, verbose=0)
    """
    # The checked arrays (the parameters keep what was passed).
    x_fit, y_fit = check_data(model, x, y)
    if validation_data is None:
        if not 0.0 < validation_split < 1.0:
            raise ValueError(f"Expected 0 < validation_split < 1. Received: {validation_split!r}")
        stratify = (
            y_fit if np.bincount(y_fit).min(initial=0) >= 2 and len(np.unique(y_fit)) > 1 else None
        )
        x_fit, x_val, y_fit, y_val = train_test_split(
            x_fit, y_fit, test_size=validation_split, random_state=seed, stratify=stratify
        )
    else:
        try:
            x_val, y_val = validation_data
        except (TypeError, ValueError):
            raise ValueError(
                "Expected `validation_data` to be a pair (x_val, y_val). "
                f"Received: {type(validation_data).__name__}"
            ) from None
        x_val, y_val = check_data(model, x_val, y_val, name="x_val")

    weights = _class_weights(class_weight, y_fit, model.output_shape[-1])
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"Expected schedule 'cosine' or 'constant'. Received: {schedule!r}")
    if not learning_rate > 0:
        raise ValueError(f"Expected learning_rate > 0. Received: {learning_rate!r}")
    if not model.compiled:
        compile_augmentation_on_jax(model)  # a loaded fer_cnn: jitted on JAX too
        if schedule == "cosine":
            steps = epochs * int(np.ceil(len(x_fit) / batch_size))
            warmup = max(1, steps // 10)
            rate = keras.optimizers.schedules.CosineDecay(
                0.0, max(1, steps - warmup), warmup_target=learning_rate, warmup_steps=warmup
            )
        else:
            rate = learning_rate
        model.compile(
            optimizer=keras.optimizers.Adam(rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    cbs = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True
        ),
        *callbacks,
    ]
    if checkpoint is not None:
        cbs.append(BestModelCheckpoint(checkpoint))
    return model.fit(
        x_fit,
        y_fit,
        validation_data=(x_val, y_val),
        epochs=epochs,
        batch_size=batch_size,
        class_weight=weights,
        callbacks=cbs,
        verbose=verbose,
    )


def _class_weights(class_weight, y, num_classes):
    if class_weight is None or isinstance(class_weight, dict):
        return class_weight
    if class_weight != "balanced":
        raise ValueError(
            f"Expected class_weight 'balanced', a dict or None. Received: {class_weight!r}"
        )
    present = np.unique(y)
    w = compute_class_weight("balanced", classes=present, y=y)
    weights = {int(c): 1.0 for c in range(num_classes)}
    weights.update({int(c): float(v) for c, v in zip(present, w, strict=True)})
    return weights


def per_class_accuracy(
    model: keras.Model, x: ArrayLike, y: ArrayLike, batch_size: int = 256
) -> np.ndarray:
    """Accuracy (recall) of each class on a labelled set.

    Returns:
        float64 (num_classes,); NaN for a class absent from `y`.
    """
    x, y = check_data(model, x, y)
    pred = np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1)
    num_classes = model.output_shape[-1]
    total = np.bincount(y, minlength=num_classes).astype(float)
    right = np.bincount(y[pred == y], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, right / total, np.nan)


def accuracy_table(
    per_class: np.ndarray, counts: np.ndarray, class_names: Sequence[str], overall: float
) -> str:
    """Formats per-class accuracies as a plain-text table."""
    width = max(len(str(c)) for c in class_names) + 2
    lines = [f"{'class':<{width}}{'n':>6}  accuracy"]
    for name, n, acc in zip(class_names, counts, per_class, strict=True):
        shown = "   -" if np.isnan(acc) else f"{acc:8.3f}"
        lines.append(f"{name:<{width}}{int(n):>6}  {shown}")
    lines.append(f"{'overall':<{width}}{int(np.sum(counts)):>6}  {overall:8.3f}")
    return "\n".join(lines)


def summarize(
    model: keras.Model, x: ArrayLike, y: ArrayLike, class_names: Iterable[str] | None = None
) -> dict[str, Any]:
    """Held-out accuracy per class, as a JSON-ready dict with a text table.

    Args:
        model: the classifier.
        x: held-out images (N, H, W, C).
        y: their integer labels (N,).
        class_names: names of the classes; None names them by the emotions
            for a 7-class model, else by number. Defaults to `None`.

    Returns:
        A dict: "overall_accuracy" (float), "per_class" ({name: accuracy,
        or None for a class without images}), "counts" ({name: images}) and
        "table" (`accuracy_table`'s text).
    """
    per_class = per_class_accuracy(model, x, y)
    counts = np.bincount(y, minlength=model.output_shape[-1])
    overall = float(np.nansum(per_class * counts) / counts.sum())
    names: Sequence[str]
    if class_names is not None:
        names = [str(c) for c in class_names]
    else:
        names = EMOTIONS if len(counts) == len(EMOTIONS) else [str(i) for i in range(len(counts))]
    return dict(
        overall_accuracy=overall,
        per_class={
            n: (None if np.isnan(a) else float(a)) for n, a in zip(names, per_class, strict=True)
        },
        counts={n: int(c) for n, c in zip(names, counts, strict=True)},
        table=accuracy_table(per_class, counts, names, overall),
    )
