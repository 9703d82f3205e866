"""What a report's figures are computed from, and which faces each entry explains.

`ReportContext` holds the model, the held-out data and what else the report
was given (a history, a CAM head, per-epoch maps, evidence masks), with a
cache shared by the entries; `ReportResult` is what `write_report` wrote.
The entry helpers pick an entry's faces (`keras_fer_viz.data.pick_faces`)
and predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from numpy.typing import ArrayLike

from keras_fer_viz.data.fer2013 import EMOTIONS
from keras_fer_viz.data.pick import class_index, pick_faces

if TYPE_CHECKING:
    from keras_fer_viz.datasets import DatasetExplanation
    from keras_fer_viz.report.explorer import Explorer
    from keras_fer_viz.spec import FigureSpec

__all__ = ["CAM_IMAGES", "ReportContext", "ReportResult", "SkipFigure"]

#: Images of `train_data` that train a report's CAM head, at most.
CAM_IMAGES = 7000


class SkipFigure(Exception):
    """A figure that cannot be drawn from what the report was given (not an error)."""


@dataclass
class ReportContext:
    """What the figures are computed from.

    Attributes:
        model: the classifier.
        x: held-out images (N, H, W, C), as the model takes them.
        y: their integer labels (N,).
        class_names: names of the classes. Defaults to `EMOTIONS`.
        history: a Keras ``History.history`` dict, for the training curves.
        train_data: ``(x, y)`` to train a CAM head on; None uses `x, y`.
        cam_model: a ready GAP-head model for CAM (skips `gap_head`).
        evidence: (N, H, W) bool masks of the class-bearing pixels of `x`
            (synthetic faces have them), for the "evidence" entries, or None.
        epoch_maps: ``{callback name: callback.epoch_maps()}`` from the
            training callbacks (`GradCAMCallback`, `SaliencyCallback`), for
            "epochs" entries.
        output: a multi-output model's classifier output (name or index),
            explained by every figure; None for a model with one output.
    """

    model: keras.Model
    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...] = EMOTIONS
    history: dict[str, Any] | None = None
    train_data: tuple[np.ndarray, np.ndarray] | None = None
    cam_model: keras.Model | None = None
    epoch_maps: dict[str, dict[str, Any]] = field(default_factory=dict)
    evidence: np.ndarray | None = None
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)
    #: method -> {metric: value}, filled by the trust entries for the index.
    trust: dict[str, dict[str, float]] = field(default_factory=dict)
    output: int | str | None = None

    def probabilities(self) -> np.ndarray:
        """The model's class probabilities for all of `x` (computed once)."""
        if "probs" not in self._cache:
            self._cache["probs"] = self.predict(self.x)
        return self._cache["probs"]

    def dataset_explanation(
        self, method: str, model: keras.Model | None = None, **options: Any
    ) -> DatasetExplanation:
        """`kfv.explain_dataset` of `method` over all of `x`, `y` (computed once).

        Each image is explained for its true class; the result is cached per
        method, model and options, for every entry that needs it.

        Args:
            method: a registered method (``kfv.EXPLAINERS``).
            model: the model to explain: None for `model`, explained at
                `output`; or another one (CAM's GAP-head model), explained
                at the output given in `options`. Defaults to `None`.
            **options: the method's constructor options (``layer=``, ...).

        Returns:
            A `keras_fer_viz.datasets.DatasetExplanation`.
        """
        import inspect

        from keras_fer_viz.datasets import explain_dataset
        from keras_fer_viz.registry import EXPLAINERS

        if model is None:
            model, options = self.model, {"output": self.output, **options}
        if "verbose" in inspect.signature(EXPLAINERS[method].__init__).parameters:
            options["verbose"] = 0
        # A layer option is a layer object: its name stands for it in the key. None is
        # an option's default (layer, output): given or left out, the same result.
        named = tuple(
            (k, getattr(v, "name", v)) for k, v in sorted(options.items()) if v is not None
        )
        key = ("dataset", method, id(model), named)
        if key not in self._cache:
            self._cache[key] = explain_dataset(
                method, model, (self.x, self.y), verbose=False, **options
            )
        return self._cache[key]

    def predict(self, images: ArrayLike) -> np.ndarray:
        """The explained output's probabilities, in memory-bounded compiled batches."""
        from keras_fer_viz import _gradients

        return _gradients.predict(self.model, images, output=self.output)


@dataclass
class ReportResult:
    """What `write_report` wrote."""

    out_dir: Path
    index: Path
    figures: dict[str, Path]  # id -> Path of the PNG
    failed: dict[str, str]  # id -> message
    skipped: dict[str, str]  # id -> reason
    #: what was done to fit the images to the model (`adapt_images`' steps)
    adapted: list[str] = field(default_factory=list)
    #: the page's explorer (`keras_fer_viz.report.explorer.Explorer`), or None
    explorer: Explorer | None = None


def face_index(entry: FigureSpec, ctx: ReportContext) -> np.ndarray:
    """Indices of the faces an entry explains (its classes, images_per_class, seed)."""
    return pick_faces(
        ctx.y,
        entry.get("classes", "all"),
        entry.get("images_per_class", 1),
        entry.get("seed", 0),
        ctx.class_names,
    )


def faces(
    entry: FigureSpec, ctx: ReportContext
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An entry's faces: ``(index, images, labels, predicted classes, confidences)``."""
    index = face_index(entry, ctx)
    probs = ctx.probabilities()[index]
    return index, ctx.x[index], ctx.y[index], probs.argmax(axis=1), probs.max(axis=1)


def face_of_class(
    entry: FigureSpec, ctx: ReportContext, default: str | None = None
) -> tuple[int, str, str | None]:
    """One image of the entry's ``face_class`` (or `default`), with its class name.

    When the data have no such class (an image folder of other classes) or
    no image of it, the first class with images stands in.

    Returns:
        ``(index, name, wanted)``: the image's index in ``ctx.x``, its class
        name, and the class asked for when another stood in (else None).
    """
    wanted = entry.get("face_class", default)
    seed = entry.get("seed", 0)
    if wanted is not None:
        try:
            label = class_index(wanted, ctx.class_names)
        except ValueError:
            label = None
        if label is not None and np.any(ctx.y == label):
            index = pick_faces(ctx.y, [label], 1, seed, ctx.class_names)[0]
            return index, ctx.class_names[label], None
    index = pick_faces(ctx.y, "all", 1, seed, ctx.class_names)[0]
    return index, ctx.class_names[int(ctx.y[index])], wanted
