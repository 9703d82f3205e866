"""Draws one spec entry: `render_figure`, one small function per kind of figure.

A kind of figure is found in `_FIGURES` (filters, class images, feature
maps, the confusion matrix, training curves, epoch maps, the trust
figures, a method's class means over all the held-out images); every other
method is a registered explainer (``kfv.EXPLAINERS``) whose maps are drawn
over the faces (`figures.overlay_grid`, for coarse CAM-family maps: the
class's ``overlay``) or beside them (`figures.saliency_grid`). CAM explains
a GAP-head model and LIME draws its superpixels (`figures.lime_grid`); a
new method needs nothing here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np

from keras_fer_viz import figures
from keras_fer_viz.registry import EXPLAINERS
from keras_fer_viz.report import trust
from keras_fer_viz.report.context import SkipFigure, face_of_class, faces
from keras_fer_viz.report.methods import (
    build_explainer,
    cam_model,
    entry_explainer,
    entry_layer,
    entry_options,
)
from keras_fer_viz.spec import FigureSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from keras_fer_viz.datasets import DatasetExplanation
    from keras_fer_viz.lime import Lime
    from keras_fer_viz.report.context import ReportContext

__all__ = ["class_means_result", "render_figure"]


def render_figure(entry: FigureSpec, ctx: ReportContext) -> Figure:
    """Computes and draws one spec entry.

    Args:
        entry: the spec entry (`keras_fer_viz.spec.FigureSpec`).
        ctx: the `ReportContext` it is computed from.

    Returns:
        A `matplotlib.figure.Figure`.

    Raises:
        SkipFigure: if the entry needs something the context lacks (a
            training history, epoch figures, evidence masks).
        ValueError: if its method is neither a figure kind nor registered.
    """
    draw = _FIGURES.get(entry.method)
    if draw is None and entry.method in EXPLAINERS:
        draw = _MAP_FIGURES.get(entry.method, _map_figure)
    if draw is None:  # spec.py refuses unknown methods first
        raise ValueError(f"Figure {entry.id!r}: unknown method {entry.method!r}")
    return draw(entry, ctx)


def _draw_maps(entry, ctx, explainer, draw, title=None):
    """Explains the entry's faces (for their true class) and draws them with their maps."""
    _, images, labels, predicted, confidence = faces(entry, ctx)
    return draw(
        images,
        explainer.explain(images, target=labels),
        labels=labels,
        predictions=predicted,
        confidences=confidence,
        class_names=ctx.class_names,
        title=entry.title if title is None else title,
        blank_reason=explainer.blank_reason,
    )


def _map_figure(entry, ctx):
    """Any registered method: its maps over the faces (CAM family) or beside them."""
    explainer = entry_explainer(entry, ctx.model, ctx.output)
    draw = figures.overlay_grid if type(explainer).overlay else figures.saliency_grid
    return _draw_maps(entry, ctx, explainer, draw)


def _cam_figure(entry, ctx):
    """CAM explains a GAP-head model; the title gives its head's accuracy."""
    model = cam_model(entry, ctx)
    report = getattr(model, "head_report", None)
    title = entry.title
    if report:
        title += (
            f" (head accuracy {report['head_accuracy']:.2f}, model {report['model_accuracy']:.2f})"
        )
    explainer = build_explainer("cam", model)  # the GAP-head model has the explained output only
    return _draw_maps(entry, ctx, explainer, figures.overlay_grid, title)


def _lime_figure(entry, ctx):
    """LIME: the superpixels for and against each face's class."""
    _, images, labels, predicted, confidence = faces(entry, ctx)
    lime = cast("Lime", entry_explainer(entry, ctx.model, ctx.output))  # the entry's method
    results = lime.explanations(images, target=labels)
    return figures.lime_grid(
        images,
        [r.segments for r in results],
        [r.weights for r in results],
        labels=labels,
        predictions=predicted,
        confidences=confidence,
        class_names=ctx.class_names,
        num_features=entry.get("num_features", 5),
        title=entry.title,
    )


def _layer_or_last_conv(entry, model):
    from keras_fer_viz.layers import last_conv_layer

    layer = entry_layer(entry, model)
    return last_conv_layer(model) if layer is None else layer


def _filters_figure(entry, ctx):
    from keras_fer_viz.filters import maximize_activation

    layer = _layer_or_last_conv(entry, ctx.model)
    chosen = entry.get("filters")
    if isinstance(chosen, int):
        chosen = list(range(chosen))
    images = maximize_activation(
        ctx.model,
        layer,
        chosen,
        steps=entry.get("steps", 100),
        seed=entry.get("seed", 0),
        verbose=0,
    )
    return figures.filter_grid(
        images, chosen, columns=entry.get("columns", 8), title=f"{entry.title} ({layer.name})"
    )


def _class_images_figure(entry, ctx):
    from keras_fer_viz.filters import maximize_activation
    from keras_fer_viz.layers import output_layer

    images = maximize_activation(
        ctx.model,
        output_layer(ctx.model, ctx.output),
        None,
        steps=entry.get("steps", 100),
        seed=entry.get("seed", 0),
        output="input",
        verbose=0,
        model_output=ctx.output,
    )
    probs = ctx.predict(images)
    own = probs[np.arange(len(images)), np.arange(len(images))]
    return figures.class_image_grid(images, own, class_names=ctx.class_names, title=entry.title)


def _feature_maps_figure(entry, ctx):
    from keras_fer_viz.filters import feature_maps

    layer = _layer_or_last_conv(entry, ctx.model)
    index, name, wanted = face_of_class(entry, ctx)
    maps = feature_maps(ctx.model, layer, ctx.x[index : index + 1])[0]
    note = "" if wanted is None else f"; no {wanted!r} image in these data: a {name!r} one"
    return figures.feature_map_grid(
        maps,
        image=ctx.x[index],
        top=entry.get("top", 8),
        label=name,
        title=f"{entry.title} ({layer.name}{note})",
    )


def _confusion_figure(entry, ctx):
    predicted = ctx.probabilities().argmax(axis=1)
    return figures.confusion_matrix(
        ctx.y, predicted, class_names=ctx.class_names, title=entry.title
    )


def _training_curves_figure(entry, ctx):
    if not ctx.history:
        raise SkipFigure("no training history was given (--history)")
    return figures.training_curves(ctx.history, title=entry.title)


def _epochs_figure(entry, ctx):
    name = entry.get("callback", "grad_cam")
    kept = ctx.epoch_maps.get(name)
    if not kept or kept.get("maps") is None or not len(kept["epochs"]):
        raise SkipFigure(
            f"no per-epoch maps from a {name!r} callback (they come with training: "
            "keras-fer-viz demo, or write_report(..., epoch_maps=...))"
        )
    return figures.epoch_grid(
        kept["images"],
        kept["maps"],
        kept["epochs"],
        labels=kept.get("labels"),
        class_names=ctx.class_names,
        title=entry.title,
        blank_reason=getattr(EXPLAINERS.get(name), "blank_reason", None),
    )


def class_means_result(
    entry: FigureSpec | None, ctx: ReportContext, name: str | None = None
) -> DatasetExplanation:
    """`explain_dataset` of a class-means entry's method over all the held-out images
    (each explained for its true class), cached in the context for the explorer.

    Args:
        entry: a ``class_means`` spec entry, or None for `name` with its defaults.
        ctx: the `ReportContext`.
        name: the method; None for the entry's ``explainer`` (default Grad-CAM).
    """
    from keras_fer_viz.spec import FigureSpec

    if entry is None:
        entry = FigureSpec("class_means", "", "", "class_means", "class_means.png")
    name = entry.get("explainer", "grad_cam") if name is None else name
    if name == "cam":  # the GAP-head model; its layer is the one the head was trained on
        return ctx.dataset_explanation(name, cam_model(entry, ctx))
    return ctx.dataset_explanation(name, **entry_options(entry, name, ctx.model))


def _class_means_figure(entry, ctx):
    """A method's mean map per true and predicted class over all the held-out images
    (`keras_fer_viz.datasets.explain_dataset`, each image explained for its true class)."""
    result = class_means_result(entry, ctx)
    name = entry.get("explainer", "grad_cam")
    return figures.class_mean_grid(
        result.class_means,
        result.counts,
        ctx.class_names,
        title=f"{entry.title} ({int(result.counts.sum())} images)",
        blank_reason=getattr(EXPLAINERS.get(name), "blank_reason", None),
    )


# Figure kind -> how it is drawn (the kinds of `keras_fer_viz.spec.FIGURE_KINDS`).
_FIGURES = {
    "filters": _filters_figure,
    "class_images": _class_images_figure,
    "feature_maps": _feature_maps_figure,
    "confusion_matrix": _confusion_figure,
    "training_curves": _training_curves_figure,
    "epochs": _epochs_figure,
    "deletion_insertion": trust.deletion_insertion_figure,
    "randomization": trust.randomization_figure,
    "evidence": trust.evidence_figure,
    "class_means": _class_means_figure,
}
# Registered methods whose figure is not their maps drawn generically.
_MAP_FIGURES = {"cam": _cam_figure, "lime": _lime_figure}
