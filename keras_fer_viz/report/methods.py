"""Explainers for spec entries, built from the registry (``kfv.EXPLAINERS``).

Any registered method is built the same way: ``cls(model, output=...,
**options)``, its options those of the entry that its constructor takes
(`keras_fer_viz.registry.spec_options`), its layer resolved from the
entry's ``layer`` (a name) or ``conv_layer`` (the n-th conv layer). CAM
explains a GAP-head model (`keras_fer_viz.cam.gap_head`), trained once per
report and layer unless the report was given one.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from keras_fer_viz.registry import EXPLAINERS, spec_options

if TYPE_CHECKING:
    import keras

    from keras_fer_viz._explainer import Explainer
    from keras_fer_viz.report.context import ReportContext
    from keras_fer_viz.spec import FigureSpec

__all__ = [
    "build_explainer",
    "cam_model",
    "entry_explainer",
    "entry_layer",
    "entry_options",
]


def entry_layer(entry: FigureSpec, model: keras.Model) -> keras.layers.Layer | None:
    """The layer an entry names (``layer`` or ``conv_layer``), or None for the default.

    Raises:
        ValueError: if the model has no such layer, or fewer conv layers.
    """
    from keras_fer_viz.layers import conv_layers, resolve_layer

    if "layer" in entry.parameters:
        return resolve_layer(model, entry.parameters["layer"])
    if "conv_layer" in entry.parameters:
        convs = conv_layers(model)
        n = entry.parameters["conv_layer"]
        if n > len(convs):
            raise ValueError(
                f"Figure {entry.id!r} asks for conv layer {n}, but model {model.name!r} has "
                f"{len(convs)}: {[la.name for la in convs]}"
            )
        return convs[n - 1]
    return None


def build_explainer(
    name: str,
    model: keras.Model,
    options: Mapping[str, Any] | None = None,
    output: str | int | None = None,
) -> Explainer:
    """``EXPLAINERS[name](model, output=output, **options)``, without a progress bar.

    Args:
        name: a registered method.
        model: the model to explain (for "cam", a GAP-head model).
        options: constructor options. Defaults to `None` (the method's defaults).
        output: the explained output of a multi-output model. Defaults to `None`.
    """
    cls = EXPLAINERS[name]
    kwargs = dict(options or {})
    if "verbose" in inspect.signature(cls.__init__).parameters:
        kwargs["verbose"] = 0
    return cls(model, output=output, **kwargs)


def entry_options(entry: FigureSpec, name: str, model: keras.Model) -> dict[str, Any]:
    """The options an entry gives method `name`: the parameters its constructor takes,
    with the entry's ``layer`` or ``conv_layer`` resolved in `model`."""
    allowed = spec_options(EXPLAINERS[name])
    options = {k: v for k, v in entry.parameters.items() if k in allowed and k != "layer"}
    if "layer" in allowed:
        options["layer"] = entry_layer(entry, model)
    return options


def entry_explainer(
    entry: FigureSpec, model: keras.Model, output: str | int | None = None
) -> Explainer:
    """The explainer of a map entry: its method with the entry's options and layer."""
    return build_explainer(entry.method, model, entry_options(entry, entry.method, model), output)


def cam_model(entry: FigureSpec, ctx: ReportContext) -> keras.Model:
    """The GAP-head model CAM explains: the context's, or one trained on its data (cached)."""
    from keras_fer_viz.cam import gap_head

    if ctx.cam_model is not None:
        return ctx.cam_model
    key = ("cam", entry.get("layer"), entry.get("conv_layer"), entry.get("epochs", 5))
    if key not in ctx._cache:
        x, y = ctx.train_data if ctx.train_data is not None else (ctx.x, ctx.y)
        ctx._cache[key] = gap_head(
            ctx.model,
            entry_layer(entry, ctx.model),
            data=(x, y),
            epochs=entry.get("epochs", 5),
            verbose=0,
            output=ctx.output,
        )
    return ctx._cache[key]
