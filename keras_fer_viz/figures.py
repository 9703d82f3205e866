"""Matplotlib figures of the explanations: computed data in, `Figure` out.

Every function takes arrays that were computed elsewhere (by the
explainers, `maximize_activation`, `feature_maps`, scikit-learn) and draws
them; nothing here runs a model, so drawing is testable on its own (the
split of scikit-learn's ``ConfusionMatrixDisplay``). Figures are built with
`matplotlib.figure.Figure`, never pyplot, so they hold no global state and
are safe in callbacks and threads; functions that draw one panel take
``ax=None``. Sizes suit 100 dpi.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast, overload

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from keras_fer_viz.data.fer2013 import EMOTIONS

if TYPE_CHECKING:
    import keras
    from matplotlib.axes import Axes
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import SubFigure
    from matplotlib.ticker import MaxNLocator

    from keras_fer_viz.metrics import Curve, EvidenceScores, RandomizationResult

__all__ = [
    "saliency_grid",
    "overlay_grid",
    "filter_grid",
    "class_image_grid",
    "feature_map_grid",
    "lime_grid",
    "confusion_matrix",
    "training_curves",
    "epoch_grid",
    "trust_curves",
    "randomization_grid",
    "evidence_bars",
    "method_styles",
    "class_mean_grid",
    "caption",
    "blank_maps",
]

_MAP_CMAP = "inferno"
_OVERLAY_CMAP = "jet"


def _gray(image):
    """(H, W) or (H, W, 1) -> (H, W); RGB stays (H, W, 3), scaled to [0, 1]."""
    image = np.asarray(image, dtype=float)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    lo, hi = image.min(), image.max()
    return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def _show_image(ax, image):
    image = _gray(image)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    _bare(ax)


def _bare(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def blank_maps(maps: ArrayLike) -> np.ndarray:
    """Which maps are blank: the same value at every pixel (all zero, say), or not finite.

    A blank map shows nothing, and on its own a reader cannot tell it from a
    broken one; figures and the report's explorer mark such maps and say why
    the method can give one (``Explainer.blank_reason``).

    Args:
        maps: (N, H, W) maps.

    Returns:
        (N,) bool.

    Example:

    >>> import numpy as np
    >>> maps = np.zeros((3, 4, 4)); maps[1, 0, 0] = 0.5; maps[2] = 1.0
    >>> blank_maps(maps).tolist()
    [True, False, True]
    """
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(len(maps), -1)
    finite = np.isfinite(flat).all(axis=1)
    safe = np.where(np.isfinite(flat), flat, 0.0)
    return ~finite | (safe.max(axis=1) == safe.min(axis=1))


def _mark_blank(ax, reason):
    """Says on a panel that its map is blank, and why."""
    import textwrap

    text = "blank map:\n" + textwrap.fill(reason or "zero everywhere", 22)
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=5.5,
        color="white",
        bbox=dict(boxstyle="round,pad=0.3", facecolor="black", alpha=0.65, linewidth=0),
    )


def caption(
    name: str | None,
    label: int | None = None,
    prediction: int | None = None,
    confidence: float | None = None,
    class_names: Sequence[str] = EMOTIONS,
) -> str:
    """A panel title: the true class, then the prediction and its confidence."""
    lines = [] if name is None else [str(name)]
    if label is not None:
        lines.append(f"true: {class_names[int(label)]}")
    if prediction is not None:
        text = f"pred: {class_names[int(prediction)]}"
        if confidence is not None:
            text += f" ({float(confidence):.2f})"
        lines.append(text)
    return "\n".join(lines)


def _check_pairs(images: ArrayLike, maps: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    images, maps = np.asarray(images), np.asarray(maps)
    if images.ndim not in (3, 4) or maps.ndim != 3 or len(images) != len(maps) or not len(maps):
        raise ValueError(
            "Expected images (N, H, W[, C]) and maps (N, H, W) with the same N >= 1. Received: "
            f"images shape={images.shape}, maps shape={maps.shape}"
        )
    return images, maps


def _titles(n, labels, predictions, confidences, class_names, names=None):
    def pick(values, i):
        return None if values is None else values[i]

    return [
        caption(
            pick(names, i), pick(labels, i), pick(predictions, i), pick(confidences, i), class_names
        )
        for i in range(n)
    ]


def saliency_grid(
    images: ArrayLike,
    maps: ArrayLike,
    labels: Sequence[int] | np.ndarray | None = None,
    predictions: Sequence[int] | np.ndarray | None = None,
    confidences: Sequence[float] | np.ndarray | None = None,
    class_names: Sequence[str] = EMOTIONS,
    title: str = "Saliency maps",
    cmap: str = _MAP_CMAP,
    blank_reason: str | None = None,
) -> Figure:
    """Faces above their maps, one column per image (e.g. one per emotion).

    A blank map (`blank_maps`: the same value everywhere) is marked on its
    panel, with `blank_reason`.

    Args:
        images: (N, H, W[, C]) images, any value range.
        maps: (N, H, W) maps in [0, 1] (e.g. from `Saliency.explain`).
        labels: true classes (N,), or None. Defaults to `None`.
        predictions: predicted classes (N,), or None. Defaults to `None`.
        confidences: probability of each prediction (N,), or None.
            Defaults to `None`.
        class_names: names of the classes. Defaults to `EMOTIONS`.
        title: the figure's title. Defaults to `"Saliency maps"`.
        cmap: colour map of the maps. Defaults to `"inferno"`.
        blank_reason: why the method can give a blank map, written on such
            a panel (``type(explainer).blank_reason``); None says only that
            it is blank. Defaults to `None`.

    Returns:
        A `matplotlib.figure.Figure` with a colour bar for the maps.

    Example:

    >>> import numpy as np
    >>> fig = saliency_grid(np.zeros((7, 48, 48, 1)), np.zeros((7, 48, 48)), labels=range(7))
    >>> len(fig.axes)  # 7 faces, 7 maps, 1 colour bar
    15
    """
    images, maps = _check_pairs(images, maps)
    n = len(images)
    fig = Figure(figsize=(1.6 * n + 0.8, 3.9), dpi=100, layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    titles = _titles(n, labels, predictions, confidences, class_names)
    shown = None
    blank = blank_maps(maps)
    for i in range(n):
        _show_image(axes[0, i], images[i])
        axes[0, i].set_title(titles[i], fontsize=8)
        shown = axes[1, i].imshow(maps[i], cmap=cmap, vmin=0, vmax=1)
        _bare(axes[1, i])
        if blank[i]:
            _mark_blank(axes[1, i], blank_reason)
    axes[0, 0].set_ylabel("face", fontsize=8)
    axes[1, 0].set_ylabel("map", fontsize=8)
    assert shown is not None  # n >= 1 (_check_pairs)
    fig.colorbar(shown, ax=axes[1, :].tolist(), shrink=0.9, label="relevance")
    fig.suptitle(title, fontsize=10)
    return fig


def overlay_grid(
    images: ArrayLike,
    maps: ArrayLike,
    labels: Sequence[int] | np.ndarray | None = None,
    predictions: Sequence[int] | np.ndarray | None = None,
    confidences: Sequence[float] | np.ndarray | None = None,
    class_names: Sequence[str] = EMOTIONS,
    title: str = "Grad-CAM",
    alpha: float = 0.45,
    cmap: str = _OVERLAY_CMAP,
    blank_reason: str | None = None,
) -> Figure:
    """Maps laid over their faces, one panel per image (Grad-CAM, CAM).

    A blank map (`blank_maps`) is marked on its panel, with `blank_reason`.

    Args:
        images: (N, H, W[, C]) images.
        maps: (N, H, W) maps in [0, 1], at the images' resolution.
        labels: true classes (N,), or None. Defaults to `None`.
        predictions: predicted classes (N,), or None. Defaults to `None`.
        confidences: probability of each prediction (N,), or None.
            Defaults to `None`.
        class_names: names of the classes. Defaults to `EMOTIONS`.
        title: the figure's title. Defaults to `"Grad-CAM"`.
        alpha: opacity of the map. Defaults to `0.45`.
        cmap: colour map. Defaults to `"jet"`.
        blank_reason: as in `saliency_grid`. Defaults to `None`.

    Returns:
        A `matplotlib.figure.Figure` with a colour bar.
    """
    images, maps = _check_pairs(images, maps)
    n = len(images)
    fig = Figure(figsize=(1.6 * n + 0.8, 2.3), dpi=100, layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    titles = _titles(n, labels, predictions, confidences, class_names)
    shown = None
    blank = blank_maps(maps)
    for i in range(n):
        _show_image(axes[i], images[i])
        shown = axes[i].imshow(maps[i], cmap=cmap, vmin=0, vmax=1, alpha=alpha)
        axes[i].set_title(titles[i], fontsize=8)
        if blank[i]:
            _mark_blank(axes[i], blank_reason)
    assert shown is not None  # n >= 1 (_check_pairs)
    fig.colorbar(shown, ax=axes.tolist(), shrink=0.9, label="relevance")
    fig.suptitle(title, fontsize=10)
    return fig


def _grid_shape(count, columns):
    columns = max(1, min(columns, count))
    return int(np.ceil(count / columns)), columns


def filter_grid(
    images: ArrayLike,
    filters: ArrayLike | None = None,
    columns: int = 8,
    title: str = "Filters",
) -> Figure:
    """Gradient-ascent images of a layer's filters, labelled with their indices.

    Args:
        images: (F, H, W[, C]) images, e.g. from `maximize_activation`.
        filters: the filter index of each image; None for 0..F-1.
            Defaults to `None`.
        columns: panels per row. Defaults to `8`.
        title: the figure's title. Defaults to `"Filters"`.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4) or not len(images):
        raise ValueError(f"Expected images (F, H, W[, C]). Received: shape={images.shape}")
    filters = np.arange(len(images)) if filters is None else np.atleast_1d(filters)
    rows, columns = _grid_shape(len(images), columns)
    fig = Figure(figsize=(1.05 * columns, 1.15 * rows + 0.4), dpi=100, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < len(images):
            _show_image(ax, images[k])
            ax.set_title(f"#{int(filters[k])}", fontsize=7, pad=2)
        else:
            ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    return fig


def class_image_grid(
    images: ArrayLike,
    probabilities: Sequence[float] | np.ndarray | None = None,
    class_names: Sequence[str] = EMOTIONS,
    title: str = "Class images",
) -> Figure:
    """The image each class wants most (gradient ascent on the output), one per class.

    Args:
        images: (K, H, W[, C]) images, one per class.
        probabilities: the model's probability of each image's own class
            (K,), or None. Defaults to `None`.
        class_names: names of the classes. Defaults to `EMOTIONS`.
        title: the figure's title. Defaults to `"Class images"`.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    images = np.asarray(images)
    n = len(images)
    fig = Figure(figsize=(1.6 * n, 2.1), dpi=100, layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for i, ax in enumerate(axes):
        _show_image(ax, images[i])
        text = class_names[i]
        if probabilities is not None:
            text += f"\np = {float(probabilities[i]):.2f}"
        ax.set_title(text, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def feature_map_grid(
    maps: ArrayLike,
    image: ArrayLike | None = None,
    top: int = 8,
    columns: int = 8,
    label: str | None = None,
    title: str = "Feature maps",
) -> Figure:
    """Every filter's output for one face, with the filters it activates most outlined.

    Filters are ranked by their mean activation on the face; the `top` ones
    get a red frame and their rank, as report B of the study marked the
    filters an angry face activates most.

    Args:
        maps: (h, w, F) activations of one image (from `feature_maps`).
        image: the face itself, shown first, or None. Defaults to `None`.
        top: filters to mark. Defaults to `8`.
        columns: panels per row. Defaults to `8`.
        label: the face's class name for the title, or None. Defaults to `None`.
        title: the figure's title. Defaults to `"Feature maps"`.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"Expected the maps of one image, (h, w, F). Received: shape={maps.shape}")
    count = maps.shape[-1]
    means = maps.mean(axis=(0, 1))
    ranked = np.argsort(-means, kind="stable")[: max(0, min(top, count))]
    rank_of = {int(f): r + 1 for r, f in enumerate(ranked)}
    panels = count + (image is not None)
    rows, columns = _grid_shape(panels, columns)
    fig = Figure(figsize=(1.05 * columns, 1.15 * rows + 0.5), dpi=100, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).flat
    offset = 0
    if image is not None:
        _show_image(axes[0], image)
        axes[0].set_title(label or "face", fontsize=7, pad=2)
        offset = 1
    peak = float(maps.max()) if maps.max() > 0 else 1.0
    for f in range(count):
        ax = axes[offset + f]
        ax.imshow(maps[..., f], cmap="viridis", vmin=0, vmax=peak)
        _bare(ax)
        if f in rank_of:
            ax.set_title(f"#{f} (top {rank_of[f]})", fontsize=6, pad=2, color="red")
            for spine in ax.spines.values():
                spine.set_edgecolor("red")
                spine.set_linewidth(2.5)
        else:
            ax.set_title(f"#{f}", fontsize=6, pad=2)
    for ax in list(axes)[offset + count :]:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    return fig


def lime_grid(
    images: ArrayLike,
    segments: Sequence[ArrayLike] | np.ndarray,
    weights: Sequence[ArrayLike],
    labels: Sequence[int] | np.ndarray | None = None,
    predictions: Sequence[int] | np.ndarray | None = None,
    confidences: Sequence[float] | np.ndarray | None = None,
    class_names: Sequence[str] = EMOTIONS,
    num_features: int = 5,
    title: str = "LIME",
) -> Figure:
    """Faces with the superpixels for (green) and against (red) the explained class.

    Args:
        images: (N, H, W[, C]) images.
        segments: (N, H, W) superpixel labels (`LimeExplanation.segments`).
        weights: a list of N arrays of signed superpixel weights.
        labels: true classes (N,), or None. Defaults to `None`.
        predictions: predicted classes (N,), or None. Defaults to `None`.
        confidences: probability of each prediction (N,), or None.
            Defaults to `None`.
        class_names: names of the classes. Defaults to `EMOTIONS`.
        num_features: superpixels shown on each side. Defaults to `5`.
        title: the figure's title. Defaults to `"LIME"`.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    from skimage.segmentation import find_boundaries

    images = np.asarray(images)
    n = len(images)
    fig = Figure(figsize=(1.6 * n + 0.2, 2.5), dpi=100, layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    titles = _titles(n, labels, predictions, confidences, class_names)
    for i, ax in enumerate(axes):
        base = _gray(images[i])
        rgb = np.dstack([base] * 3) if base.ndim == 2 else base.copy()
        w = np.asarray(weights[i])
        seg = np.asarray(segments[i])
        order = np.argsort(-np.abs(w), kind="stable")
        positive = [s for s in order if w[s] > 0][:num_features]
        negative = [s for s in order if w[s] < 0][:num_features]
        for chosen, colour in ((positive, (0.1, 0.8, 0.1)), (negative, (0.9, 0.1, 0.1))):
            region = np.isin(seg, chosen)
            rgb[region] = 0.6 * rgb[region] + 0.4 * np.array(colour)
            edge = find_boundaries(np.where(region, seg, -1), mode="inner") & region
            rgb[edge] = colour
        ax.imshow(np.clip(rgb, 0, 1))
        _bare(ax)
        ax.set_title(titles[i], fontsize=8)
    fig.suptitle(
        f"{title} (green: for the class, red: against; top {num_features} each)", fontsize=10
    )
    return fig


@overload
def confusion_matrix(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    class_names: Sequence[str] = EMOTIONS,
    title: str = "Confusion matrix",
    ax: None = None,
) -> Figure: ...
@overload
def confusion_matrix(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    class_names: Sequence[str] = EMOTIONS,
    title: str = "Confusion matrix",
    ax: Axes | None = None,
) -> Figure | SubFigure: ...
def confusion_matrix(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    class_names: Sequence[str] = EMOTIONS,
    title: str = "Confusion matrix",
    ax: Axes | None = None,
) -> Figure | SubFigure:
    """The row-normalised confusion matrix, with counts, from scikit-learn.

    Each row is a true class; a cell holds the share of that class
    predicted as the column's class, and the count below it.

    Args:
        y_true: true classes (N,).
        y_pred: predicted classes (N,).
        class_names: names of the classes. Defaults to `EMOTIONS`.
        title: the panel's title (the overall accuracy is added).
            Defaults to `"Confusion matrix"`.
        ax: an Axes to draw into, or None for a new figure. Defaults to `None`.

    Returns:
        The `matplotlib.figure.Figure` drawn into (the
        `matplotlib.figure.SubFigure`, when `ax` is in one).

    Example:

    >>> fig = confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], class_names=["a", "b", "c"])
    >>> fig.axes[0].get_title()
    'Confusion matrix (accuracy 0.75, n = 4)'
    """
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or not len(y_true):
        raise ValueError(
            "Expected y_true and y_pred of the same shape (N,), N >= 1. Received: "
            f"{y_true.shape} and {y_pred.shape}"
        )
    k = len(class_names)
    counts = sk_confusion_matrix(y_true, y_pred, labels=np.arange(k))
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    if ax is None:
        fig: Figure | SubFigure = Figure(
            figsize=(0.75 * k + 2.2, 0.7 * k + 1.4), dpi=100, layout="constrained"
        )
        ax = fig.subplots()
    fig = ax.figure
    shown = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for r in range(k):
        for c in range(k):
            colour = "white" if shares[r, c] > 0.55 else "black"
            ax.text(
                c,
                r,
                f"{shares[r, c]:.2f}\n({counts[r, c]})",
                ha="center",
                va="center",
                fontsize=7,
                color=colour,
            )
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = float((y_true == y_pred).mean())
    ax.set_title(f"{title} (accuracy {accuracy:.2f}, n = {len(y_true)})", fontsize=10)
    fig.colorbar(shown, ax=ax, shrink=0.8, label="share of the true class")
    return fig


def training_curves(
    history: keras.callbacks.History | dict[str, Any],
    title: str = "Training curves",
    epochs: Sequence[int] | None = None,
) -> Figure:
    """Loss and accuracy per epoch, training and validation.

    Args:
        history: a `keras.callbacks.History` or its ``.history`` dict
            (``loss``, ``val_loss``, ``accuracy``, ``val_accuracy``; missing
            ones are left out).
        title: the figure's title. Defaults to `"Training curves"`.
        epochs: the 1-based epoch number of each logged value, for the x
            axis; None numbers them from 1. A `fit` resumed with
            ``initial_epoch=5`` logs epochs 6, 7, ... Defaults to `None`.

    Returns:
        A `matplotlib.figure.Figure` with two panels.
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or not logs.get("loss"):
        raise ValueError(
            "Expected a Keras History or its .history dict with a 'loss' list. Received: "
            f"{type(history).__name__}"
        )
    x = np.arange(1, len(logs["loss"]) + 1) if epochs is None else np.asarray(epochs)
    if x.shape != (len(logs["loss"]),):
        raise ValueError(
            f"Expected one epoch number per logged value ({len(logs['loss'])}). Received "
            f"epochs of shape {x.shape}"
        )
    fig = Figure(figsize=(8, 3.2), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, style, name in (
            (metric, "o-", "training"),
            (f"val_{metric}", "s--", "validation"),
        ):
            values = logs.get(key)
            if values:
                # A value per epoch; NaN where the key was not logged (validation_freq).
                y = np.asarray(values, dtype=float)
                at = x[: len(y)]
                logged = np.isfinite(y)
                ax.plot(at[logged], y[logged], style, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
            cast("MaxNLocator", ax.xaxis.get_major_locator()).set_params(integer=True)
    fig.suptitle(title, fontsize=10)
    return fig


def epoch_grid(
    images: ArrayLike,
    maps_by_epoch: ArrayLike,
    epochs: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray | None = None,
    class_names: Sequence[str] = EMOTIONS,
    title: str = "Attention across epochs",
    alpha: float = 0.45,
    cmap: str = _OVERLAY_CMAP,
    blank_reason: str | None = None,
) -> Figure:
    """The same faces' maps at successive epochs: rows are epochs, columns faces.

    Args:
        images: (N, H, W[, C]) the probe faces.
        maps_by_epoch: (E, N, H, W) maps in [0, 1].
        epochs: the E epoch numbers (1-based), for the row labels.
        labels: true classes of the faces, or None. Defaults to `None`.
        class_names: names of the classes. Defaults to `EMOTIONS`.
        title: the figure's title. Defaults to `"Attention across epochs"`.
        alpha: opacity of the maps. Defaults to `0.45`.
        cmap: colour map. Defaults to `"jet"`.
        blank_reason: said on a blank map's panel, as in `saliency_grid`.
            Defaults to `None`.

    Returns:
        A `matplotlib.figure.Figure` with a colour bar.
    """
    images, stack = np.asarray(images), np.asarray(maps_by_epoch)
    if stack.ndim != 4 or stack.shape[1] != len(images) or len(epochs) != len(stack):
        raise ValueError(
            f"Expected maps (E, N, H, W) for N = {len(images)} images and E = {len(epochs)} "
            f"epochs. Received: shape={stack.shape}"
        )
    rows, n = stack.shape[:2]
    fig = Figure(figsize=(1.1 * n + 1.2, 1.1 * rows + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(rows, n, squeeze=False)
    shown = None
    for r in range(rows):
        for i in range(n):
            _show_image(axes[r, i], images[i])
            shown = axes[r, i].imshow(stack[r, i], cmap=cmap, vmin=0, vmax=1, alpha=alpha)
            if blank_maps(stack[r, i][None])[0]:
                _mark_blank(axes[r, i], blank_reason)
            if r == 0 and labels is not None:
                axes[r, i].set_title(class_names[int(labels[i])], fontsize=8)
        axes[r, 0].set_ylabel(f"epoch {int(epochs[r])}", fontsize=8)
    assert shown is not None  # rows, n >= 1 (Figure.subplots refuses 0)
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8, label="relevance")
    fig.suptitle(title, fontsize=10)
    return fig


_LINESTYLES = ("-", "--", ":")
_MARKERS = ("o", "s", "^")


def method_styles(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """A distinct line style per method: ten colours, then the same with new dashes and marks.

    Args:
        names: method names in the order they are drawn (``"random"`` is
            the random order: grey and dashed, whatever its place).

    Returns:
        ``{name: dict(color=, linestyle=, marker=)}`` for `Axes.plot`; the
        same name at the same place gets the same style in every figure.

    Example:

    >>> from keras_fer_viz.figures import method_styles
    >>> styles = method_styles([f"m{i}" for i in range(12)] + ["random"])
    >>> styles["m0"]["color"] == styles["m10"]["color"], styles["m10"]["linestyle"]
    (True, '--')
    >>> len({(s["color"], s["linestyle"]) for s in styles.values()})
    13
    """
    tab10 = cast("ListedColormap", matplotlib.colormaps["tab10"])
    colours = cast("Sequence[tuple[float, float, float]]", tab10.colors)  # ten RGB triples
    styles: dict[str, dict[str, Any]] = {}
    i = 0
    for name in names:
        if name == "random":
            styles[name] = dict(color="0.5", linestyle="--", marker="")
            continue
        cycle = i // len(colours)
        styles[name] = dict(
            color=colours[i % len(colours)],
            linestyle=_LINESTYLES[cycle % len(_LINESTYLES)] if cycle else "-",
            marker=_MARKERS[cycle % len(_MARKERS)] if cycle else "",
        )
        i += 1
    return styles


def trust_curves(
    deletion: Mapping[str, Curve],
    insertion: Mapping[str, Curve],
    title: str = "Deletion and insertion curves",
) -> Figure:
    """Mean deletion and insertion curves of several methods, random order beside them.

    Args:
        deletion: ``{method name: Curve}`` from `metrics.deletion_curve`;
            a method named ``"random"`` is drawn dashed grey.
        insertion: the same for `metrics.insertion_curve`.
        title: the figure's title. Defaults to `"Deletion and insertion curves"`.

    Returns:
        A `matplotlib.figure.Figure` with two panels; the legends, below the
        panels so that no curve is hidden, give each method's mean area
        under the curve. Past ten methods, colours repeat with other dashes
        and markers (`method_styles`).
    """
    names = list(dict.fromkeys([*deletion, *insertion]))
    styles = method_styles(names)
    rows = -(-len(names) // 2)  # legend rows, two columns
    fig = Figure(figsize=(10, 3.6 + 0.16 * rows), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, curves, better in ((axes[0], deletion, "lower"), (axes[1], insertion, "higher")):
        if not curves:
            raise ValueError("Expected at least one curve per panel. Received: none")
        kind = next(iter(curves.values())).kind
        for name, curve in curves.items():
            ax.plot(
                curve.fractions,
                curve.scores.mean(axis=0),
                label=f"{name} (AUC {curve.mean_auc:.3f})",
                markersize=3,
                **styles[name],
            )
        ax.set_xlabel(f"share of pixels {'removed' if kind == 'deletion' else 'revealed'}")
        ax.set_ylabel("probability of the target")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{kind} ({better} area is better)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(
            fontsize=7, ncols=2, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False
        )
    fig.suptitle(title, fontsize=10)
    return fig


def randomization_grid(
    image: ArrayLike,
    results: Mapping[str, RandomizationResult],
    title: str = "Cascading randomisation",
) -> Figure:
    """Maps of one face as a model's layers are re-initialised from the top.

    As in Adebayo et al. (2018): one row per method, the original map first,
    then the map after each cumulative randomisation step; a right-hand
    panel gives each method's mean rank correlation to its original map.

    Args:
        image: the face (H, W[, C]), image 0 of the results.
        results: ``{method name: RandomizationResult}``, all with the same
            layers.
        title: the figure's title. Defaults to `"Cascading randomisation"`.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    if not results:
        raise ValueError("Expected at least one RandomizationResult. Received: none")
    names = list(results)
    styles = method_styles(names)
    longest = max(len(results[n].layers) for n in names)
    columns = longest + 2
    fig = Figure(
        figsize=(0.6 * columns + 5.4, 0.8 * len(names) + 1.1), dpi=100, layout="constrained"
    )
    grid = fig.add_gridspec(len(names), columns + 5)
    for r, name in enumerate(names):
        result = results[name]
        ax = fig.add_subplot(grid[r, 0])
        _show_image(ax, image)
        # Horizontal, beside the face: a long name does not run into the next row's.
        ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
        for c, maps in enumerate(result.maps):
            ax = fig.add_subplot(grid[r, c + 1])
            ax.imshow(maps[0], cmap=_MAP_CMAP, vmin=0, vmax=1)
            _bare(ax)
            # Each model has its own layers (CAM's GAP head is not the dense head).
            label = "original" if c == 0 else f"+ {result.layers[c - 1]}"
            ax.set_title(label, fontsize=5, pad=2)
    ax = fig.add_subplot(grid[:, columns:])
    for name in names:
        correlation = results[name].spearman.mean(axis=1)
        style = {**styles[name], "marker": styles[name]["marker"] or "o"}
        ax.plot(np.arange(1, len(correlation) + 1), correlation, ms=3, label=name, **style)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xlabel("layers randomised (top first)")
    cast("MaxNLocator", ax.xaxis.get_major_locator()).set_params(integer=True)
    ax.set_ylabel("rank correlation to the original map")
    ax.set_ylim(-0.5, 1.05)
    # Below zero, where a map that lost its model's trace would sit: the
    # curves above stay visible.
    ax.legend(fontsize=7, ncols=2, loc="lower center")
    ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return fig


def evidence_bars(
    scores: Mapping[str, EvidenceScores], title: str = "Maps against the ground truth"
) -> Figure:
    """Pointing game and evidence mass per method, with their chance levels.

    Args:
        scores: ``{method name: EvidenceScores}`` from `metrics.evidence_scores`.
        title: the figure's title. Defaults to `"Maps against the ground truth"`.

    Returns:
        A `matplotlib.figure.Figure` with two panels of horizontal bars, one
        bar per method (first at the top); its height grows with the number
        of methods, its width does not.
    """
    if not scores:
        raise ValueError("Expected at least one method's scores. Received: none")
    names = list(scores)
    means = [scores[n].mean() for n in names]
    fig = Figure(figsize=(9, 0.26 * len(names) + 1.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, label in (
        (axes[0], "pointing", "pointing game (max inside)"),
        (axes[1], "mass", "share of map mass inside"),
    ):
        values = [m[key] for m in means]
        bars = ax.barh(range(len(names)), values, color="tab:blue", height=0.7)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax.axvline(means[0]["chance"], color="tab:red", linestyle="--", label="chance")
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xlim(0, 1.1)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].invert_yaxis()  # shared: the first method at the top of both
    fig.suptitle(title, fontsize=10)
    return fig


def class_mean_grid(
    class_means: ArrayLike,
    counts: ArrayLike,
    class_names: Sequence[str] = EMOTIONS,
    title: str = "Mean maps",
    blank_reason: str | None = None,
) -> Figure:
    """The mean map of each cell of the confusion matrix: rows true class, columns predicted.

    A cell with images whose mean map is blank (`blank_maps`: every map
    averaged there is blank) is marked "blank", and the figure says why
    under the grid (`blank_reason`).

    Args:
        class_means: (C, C, H, W) mean maps (`DatasetExplanation.class_means`).
        counts: (C, C) images per cell (`DatasetExplanation.counts`); an
            empty cell is left blank.
        class_names: the C class names. Defaults to `EMOTIONS`.
        title: the figure's title. Defaults to `"Mean maps"`.
        blank_reason: why the method can give a blank map
            (``type(explainer).blank_reason``); None says only that the
            maps are blank. Defaults to `None`.

    Returns:
        A `matplotlib.figure.Figure`: one panel per cell, titled with its
        count, the correct predictions (the diagonal) framed; one colour
        scale for all (0 to the largest mean), so cells compare.

    Example:

    >>> import numpy as np
    >>> from keras_fer_viz.figures import class_mean_grid
    >>> fig = class_mean_grid(np.random.rand(3, 3, 8, 8), np.eye(3, dtype=int) * 5, "abc")
    >>> len(fig.axes) - 1, fig.axes[0].get_title()  # 9 panels and the colour bar
    (9, 'n=5')
    """
    means = np.asarray(class_means, np.float32)
    counts = np.asarray(counts)
    c = len(counts)
    if means.ndim != 4 or means.shape[:2] != (c, c) or counts.shape != (c, c):
        raise ValueError(
            f"Expected class_means (C, C, H, W) and counts (C, C) with the same C. Received: "
            f"shapes {means.shape} and {counts.shape}"
        )
    if len(class_names) != c:
        raise ValueError(f"Expected {c} class names. Received: {len(class_names)}")
    top = float(means.max()) if means.size and means.max() > 0 else 1.0
    fig = Figure(figsize=(1.15 * c + 1.6, 1.15 * c + 0.9), dpi=100, layout="constrained")
    axes = fig.subplots(c, c, squeeze=False)
    shown = None
    blank = blank_maps(means.reshape(c * c, *means.shape[2:])).reshape(c, c) & (counts > 0)
    for i in range(c):
        for j in range(c):
            ax = axes[i, j]
            _bare(ax)
            n = int(counts[i, j])
            if n:
                shown = ax.imshow(means[i, j], cmap=_MAP_CMAP, vmin=0, vmax=top)
            if blank[i, j]:
                ax.text(0.5, 0.5, "blank", transform=ax.transAxes, ha="center", va="center",
                        fontsize=6, color="white")  # fmt: skip
            ax.set_title(f"n={n}", fontsize=6, pad=2)
            if i == j:
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_edgecolor("tab:green")
                    spine.set_linewidth(2)
        axes[i, 0].set_ylabel(class_names[i], fontsize=7)
        axes[-1, i].set_xlabel(class_names[i], fontsize=7)
    fig.supylabel("true class", fontsize=8)
    xlabel = "predicted class"
    if blank.any():
        import textwrap

        why = (
            f"every map of the cell is blank: {blank_reason}"
            if blank_reason
            else ("every map of the cell is blank")
        )
        xlabel += "\n" + textwrap.fill(f"blank: {why}", 110)
    fig.supxlabel(xlabel, fontsize=8)
    if shown is not None:
        fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.6, label="mean relevance")
    fig.suptitle(title, fontsize=10)
    return fig
