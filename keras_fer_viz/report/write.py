"""`write_report`: every entry of a spec rendered into a folder, with its index.html.

The images are fitted to the model first (`keras_fer_viz.data.adapt_images`),
each figure is written atomically, a failing figure is reported and the
others go on, and nothing is written outside the output folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
from numpy.typing import ArrayLike

from keras_fer_viz import _io
from keras_fer_viz.data.adapt import PIXEL_RANGE, adapt_images, adapt_masks
from keras_fer_viz.data.fer2013 import EMOTIONS
from keras_fer_viz.report import page
from keras_fer_viz.report.context import CAM_IMAGES, ReportContext, ReportResult, SkipFigure
from keras_fer_viz.report.explorer import FACES_PER_CELL, build_explorer
from keras_fer_viz.report.render import render_figure
from keras_fer_viz.spec import FigureSpec, load_spec

__all__ = ["write_report"]


def write_report(
    model: keras.Model,
    x: ArrayLike,
    y: ArrayLike,
    out_dir: str | os.PathLike[str],
    spec: str | os.PathLike[str] | list[FigureSpec] | None = None,
    *,
    history: keras.callbacks.History | dict[str, Any] | None = None,
    train_data: tuple[ArrayLike, ArrayLike] | None = None,
    class_names: Iterable[str] = EMOTIONS,
    epoch_maps: Mapping[str, dict[str, Any]] | None = None,
    cam_model: keras.Model | None = None,
    evidence: ArrayLike | None = None,
    title: str = "keras-fer-viz report",
    input_range: Sequence[float] = PIXEL_RANGE,
    source: str | None = None,
    output: str | int | None = None,
    cam_images: int = CAM_IMAGES,
    explorer_faces: int = FACES_PER_CELL,
    verbose: int | Literal["auto"] = "auto",
) -> ReportResult:
    """Renders every entry of a figure spec into `out_dir`, with an index.html.

    Each figure is written atomically as ``out_dir/<file>``; a figure that
    fails is reported (in the return value, on stderr and in the index) and
    the others go on. Nothing is written outside `out_dir`.

    The index is an explorer (`keras_fer_viz.report.explorer`): the study's
    four questions as sections, the confusion matrix as a table whose cells
    open their faces with their maps for every registered method (images in
    ``out_dir/explorer/``), the class-average maps and the trust ranking. It
    opens from file://, with no server and no network request.

    The images are first fitted to the model's input with
    `keras_fer_viz.data.adapt_images` (resized to its height and width,
    gray <-> RGB, 0-255 pixels scaled to `input_range`); the index says
    what was done. Images that already fit, with the default range, are
    used as they are.

    Args:
        model: the classifier to explain.
        x: held-out images (N, H, W, C), pixels in [0, 255], at any size.
        y: their integer labels.
        out_dir: the folder to write (created if needed).
        spec: a spec file, a list of `FigureSpec`, or None for the packaged
            spec/figures.toml. Defaults to `None`.
        history: a Keras History or its dict, for the training curves.
            Defaults to `None`.
        train_data: ``(x, y)`` to train the CAM head on (adapted as `x`);
            None uses the held-out data. Defaults to `None`.
        class_names: names of the classes, one per model output, in label
            order (any number). Defaults to `EMOTIONS`.
        epoch_maps: per-epoch maps of the training callbacks,
            ``{name: callback.epoch_maps()}``. Defaults to `None`.
        cam_model: a ready GAP-head model for CAM entries. Defaults to `None`.
        evidence: (N, H, W) ground-truth masks of `x` (synthetic faces), for
            the "evidence" entries and the trust ranking. Defaults to `None`.
        title: the page title. Defaults to `"keras-fer-viz report"`.
        input_range: (low, high), the values the model takes for black and
            white pixels, e.g. (-1, 1). Defaults to `(0, 255)` (raw pixels,
            as `fer_cnn` takes them).
        source: where the images come from, for the index (e.g.
            "fer2013.csv (PrivateTest rows)"). Defaults to `None`.
        output: a multi-output model's classifier output (name or index)
            that every figure explains. Defaults to `None`.
        cam_images: at most this many images of `train_data` (a stratified,
            seeded sample) train the CAM head, so memory stays bounded for
            any data set and image size. Defaults to `CAM_IMAGES` (7,000).
        explorer_faces: faces the explorer shows per cell of the confusion
            matrix, each explained by every registered method; 0 leaves the
            explorer out (the figures and the rest of the page stay).
            Defaults to `FACES_PER_CELL` (4).
        verbose: "auto"/1 for a progress bar over figures, 0 for none.
            Defaults to `"auto"`.

    Returns:
        A `ReportResult`.

    Raises:
        ValueError: if the model's number of outputs is not the number of
            classes, or the images or labels do not fit it; nothing is
            written then.
    """
    from keras_fer_viz._gradients import predict
    from keras_fer_viz.layers import input_shape
    from keras_fer_viz.training import check_data

    class_names = tuple(str(c) for c in class_names)
    model_shape = (None, *input_shape(model))
    x, steps = adapt_images(x, model_shape, input_range)
    num_classes = int(predict(model, x[:1], output=output).shape[-1])
    _check_classes(model, class_names, num_classes)
    x, y = check_data(model, x, y, num_classes=num_classes)
    if train_data is not None:
        train_x, train_y = _sample(*train_data, cam_images)
        train_data = (adapt_images(train_x, model_shape, input_range)[0], train_y)
    if evidence is not None:
        evidence = adapt_masks(evidence, model_shape)
    entries = spec if isinstance(spec, list) else load_spec(spec)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = ReportContext(
        model,
        x,
        y,
        class_names,
        getattr(history, "history", history),
        train_data,
        cam_model,
        dict(epoch_maps or {}),
        evidence,
        output=output,
    )
    written, failed, skipped = _render_all(entries, ctx, out_dir, verbose)
    explorer, explorer_failed = None, "explorer_faces=0"
    if explorer_faces:
        try:
            explorer = build_explorer(ctx, entries, out_dir, per_cell=int(explorer_faces))
        except Exception as err:  # the page goes on without it, and says why
            explorer_failed = f"{type(err).__name__}: {err}"
            if verbose:
                print(f"\nthe explorer failed: {explorer_failed}")
    index = out_dir / "index.html"
    data = page.data_html(ctx, steps, input_range, source)
    _io.write_text(
        index,
        page.index_html(
            title, entries, written, failed, skipped, ctx, data, explorer, explorer_failed
        ),
    )
    return ReportResult(out_dir, index, written, failed, skipped, steps, explorer)


def _render_all(entries, ctx, out_dir, verbose):
    """Renders and writes each entry: ``(written, failed, skipped)``, by entry id."""
    verbose = 1 if verbose == "auto" else int(verbose)
    bar = keras.utils.Progbar(len(entries), unit_name="figure") if verbose else None
    written, failed, skipped = {}, {}, {}
    for k, entry in enumerate(entries):
        try:
            fig = render_figure(entry, ctx)
            with _io.atomic_path(out_dir / entry.file) as tmp:
                fig.savefig(tmp, dpi=100, format="png")
            written[entry.id] = out_dir / entry.file
        except SkipFigure as why:
            skipped[entry.id] = str(why)
        except Exception as err:  # a failing figure must not stop the report
            failed[entry.id] = f"{type(err).__name__}: {err}"
            if verbose:
                print(f"\nfigure {entry.id!r} failed: {failed[entry.id]}")
        if bar is not None:
            bar.update(k + 1)
    return written, failed, skipped


def _sample(x: Any, y: ArrayLike, limit: int) -> tuple[Any, np.ndarray]:
    """At most `limit` of (x, y): a stratified sample, seeded, in the original order."""
    y = np.asarray(y)
    if len(y) <= limit:
        return x, y
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    keep, _ = train_test_split(
        np.arange(len(y)), train_size=limit, random_state=0, stratify=stratify
    )
    keep = np.sort(keep)
    return x[keep], y[keep]


def _check_classes(model, class_names, num_classes) -> None:
    if num_classes != len(class_names):
        raise ValueError(
            f"Model {model.name!r} has {num_classes} outputs, but {len(class_names)} class "
            f"names were given: {list(class_names)}. Expected one class per output, in the "
            "order of the labels the model was trained with. Explain the model with data of "
            "its classes (for an image folder: one sub-folder per class)."
        )
