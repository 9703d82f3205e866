"""Renders a figure spec into a folder of PNGs and an index.html.

`render_figure` computes what one spec entry asks for (with the explainers,
`maximize_activation`, `feature_maps`, LIME, scikit-learn) and draws it with
`keras_fer_viz.figures`; `write_report` does so for every entry, writes each
PNG atomically into the output folder, goes on when a figure fails (and
says why in the index), and writes ``index.html`` with the captions, the
model's summary and its accuracy per class. Images are fitted to the
model's input first (`keras_fer_viz.data.adapt_images`: size, channels,
value range), and the index says what was done. Any number of classes
works; the class names label every figure. The figure tests call the same
`render_figure` on the same spec.
"""

from __future__ import annotations

import html
import io
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_fer_viz import _io, figures
from keras_fer_viz.data.adapt import PIXEL_RANGE, adapt_images, adapt_masks, describe_range
from keras_fer_viz.data.fer2013 import EMOTIONS
from keras_fer_viz.spec import TRUST_METHODS, FigureSpec, load_spec

__all__ = [
    "ReportContext",
    "ReportResult",
    "SkipFigure",
    "render_figure",
    "trust_ranking",
    "write_report",
]


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
    class_names: tuple = EMOTIONS
    history: dict | None = None
    train_data: tuple | None = None
    cam_model: keras.Model | None = None
    epoch_maps: dict = field(default_factory=dict)
    evidence: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)
    #: method -> {metric: value}, filled by the trust entries for the index.
    trust: dict = field(default_factory=dict)
    output: int | str | None = None

    def probabilities(self) -> np.ndarray:
        """The model's class probabilities for all of `x` (computed once)."""
        if "probs" not in self._cache:
            self._cache["probs"] = self.predict(self.x)
        return self._cache["probs"]

    def predict(self, images) -> np.ndarray:
        """The explained output's probabilities, in memory-bounded compiled batches."""
        from keras_fer_viz import _gradients

        return _gradients.predict(self.model, images, output=self.output)


@dataclass
class ReportResult:
    """What `write_report` wrote."""

    out_dir: Path
    index: Path
    figures: dict  # id -> Path of the PNG
    failed: dict  # id -> message
    skipped: dict  # id -> reason
    #: what was done to fit the images to the model (`adapt_images`' steps)
    adapted: list = field(default_factory=list)


def class_index(name, class_names) -> int:
    """The label of class `name`: its position in `class_names`, matched exactly, else
    ignoring case (an image folder's ``angry/`` is the spec's "Angry").

    Raises:
        ValueError: if no class has that name.
    """
    names = [str(c) for c in class_names]
    if name in names:
        return names.index(name)
    folded = [n.casefold() for n in names]
    if str(name).casefold() in folded:
        return folded.index(str(name).casefold())
    raise ValueError(f"Expected a class name, one of {names}. Received: {name!r}")


def pick_faces(y, classes="all", images_per_class=1, seed=0, class_names=EMOTIONS) -> np.ndarray:
    """Indices of `images_per_class` images of each class, in class order, seeded.

    Args:
        y: integer labels (N,).
        classes: "all", or class names (matched as in `class_index`) and
            labels. Defaults to `"all"`.
        images_per_class: images picked per class. Defaults to `1`.
        seed: the random seed. Defaults to `0`.
        class_names: the names of the classes, any number. Defaults to
            `EMOTIONS`.

    A class without images is left out.

    Raises:
        ValueError: if no class has images, or a class name is unknown.
    """
    y = np.asarray(y)
    wanted = (
        range(len(class_names))
        if classes == "all"
        else [class_index(c, class_names) if isinstance(c, str) else int(c) for c in classes]
    )
    rng = np.random.default_rng(seed)
    chosen = []
    for c in wanted:  # a few classes: the loop is over classes, not images
        members = np.flatnonzero(y == c)
        if len(members):
            take = min(images_per_class, len(members))
            chosen.extend(sorted(rng.choice(members, take, replace=False).tolist()))
    if not chosen:
        raise ValueError(f"None of the classes {list(wanted)} has images in the data")
    return np.array(chosen)


def _layer(entry: FigureSpec, model):
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


def _face_index(entry, ctx):
    """Indices of the faces an entry explains (its classes, images_per_class, seed)."""
    return pick_faces(
        ctx.y,
        entry.get("classes", "all"),
        entry.get("images_per_class", 1),
        entry.get("seed", 0),
        ctx.class_names,
    )


def _face_of_class(entry, ctx, default=None):
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


def _faces(entry, ctx):
    index = _face_index(entry, ctx)
    probs = ctx.probabilities()[index]
    return index, ctx.x[index], ctx.y[index], probs.argmax(axis=1), probs.max(axis=1)


def _explained(entry, ctx, explainer, draw, **kwargs):
    _, images, labels, predicted, confidence = _faces(entry, ctx)
    maps = explainer.explain(images, target=labels)
    return draw(
        images,
        maps,
        labels=labels,
        predictions=predicted,
        confidences=confidence,
        class_names=ctx.class_names,
        title=entry.title,
        **kwargs,
    )


def _cam_model(entry, ctx):
    from keras_fer_viz.cam import gap_head

    if ctx.cam_model is not None:
        return ctx.cam_model
    key = ("cam", entry.get("layer"), entry.get("conv_layer"), entry.get("epochs", 5))
    if key not in ctx._cache:
        x, y = ctx.train_data if ctx.train_data is not None else (ctx.x, ctx.y)
        ctx._cache[key] = gap_head(
            ctx.model,
            _layer(entry, ctx.model),
            data=(x, y),
            epochs=entry.get("epochs", 5),
            verbose=0,
            output=ctx.output,
        )
    return ctx._cache[key]


def render_figure(entry: FigureSpec, ctx: ReportContext):
    """Computes and draws one spec entry.

    Returns:
        A `matplotlib.figure.Figure`.

    Raises:
        SkipFigure: if the entry needs something the context lacks (a
            training history, epoch figures).
    """
    from keras_fer_viz import cam, filters, grad_cam, lime, saliency
    from keras_fer_viz.layers import output_layer

    model, method = ctx.model, entry.method
    if method == "saliency":
        return _explained(
            entry,
            ctx,
            saliency.Saliency(model, reduce=entry.get("reduce", "max"), output=ctx.output),
            figures.saliency_grid,
        )
    if method == "smoothgrad":
        explainer = saliency.SmoothGrad(
            model,
            output=ctx.output,
            samples=entry.get("samples", 25),
            noise=entry.get("noise", 0.15),
            seed=entry.get("seed", 0),
        )
        return _explained(entry, ctx, explainer, figures.saliency_grid)
    if method == "integrated_gradients":
        explainer = saliency.IntegratedGradients(
            model, steps=entry.get("steps", 32), output=ctx.output
        )
        return _explained(entry, ctx, explainer, figures.saliency_grid)
    if method in ("grad_cam", "grad_cam_plus_plus"):
        cls = grad_cam.GradCAM if method == "grad_cam" else grad_cam.GradCAMPlusPlus
        explainer = cls(model, _layer(entry, model), output=ctx.output)
        return _explained(entry, ctx, explainer, figures.overlay_grid)
    if method == "cam":
        cam_model = _cam_model(entry, ctx)
        report = getattr(cam_model, "head_report", None)
        title = entry.title
        if report:
            title += (
                f" (head accuracy {report['head_accuracy']:.2f}, "
                f"model {report['model_accuracy']:.2f})"
            )
        _, images, labels, predicted, confidence = _faces(entry, ctx)
        maps = cam.CAM(cam_model).explain(images, target=labels)
        return figures.overlay_grid(
            images,
            maps,
            labels=labels,
            predictions=predicted,
            confidences=confidence,
            class_names=ctx.class_names,
            title=title,
        )
    if method == "lime":
        _, images, labels, predicted, confidence = _faces(entry, ctx)
        explainer = lime.Lime(
            model,
            output=ctx.output,
            segmentation=entry.get("segmentation", "slic"),
            samples=entry.get("samples", 1000),
            seed=entry.get("seed", 0),
            verbose=0,
        )
        results = explainer.explanations(images, target=labels)
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
    if method == "filters":
        layer = _layer(entry, model)
        if layer is None:
            from keras_fer_viz.layers import last_conv_layer

            layer = last_conv_layer(model)
        chosen = entry.get("filters")
        if isinstance(chosen, int):
            chosen = list(range(chosen))
        images = filters.maximize_activation(
            model,
            layer,
            chosen,
            steps=entry.get("steps", 100),
            seed=entry.get("seed", 0),
            verbose=0,
        )
        return figures.filter_grid(
            images, chosen, columns=entry.get("columns", 8), title=f"{entry.title} ({layer.name})"
        )
    if method == "class_images":
        images = filters.maximize_activation(
            model,
            output_layer(model, ctx.output),
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
    if method == "feature_maps":
        layer = _layer(entry, model)
        if layer is None:
            from keras_fer_viz.layers import last_conv_layer

            layer = last_conv_layer(model)
        index, name, wanted = _face_of_class(entry, ctx)
        maps = filters.feature_maps(model, layer, ctx.x[index : index + 1])[0]
        note = "" if wanted is None else f"; no {wanted!r} image in these data: a {name!r} one"
        return figures.feature_map_grid(
            maps,
            image=ctx.x[index],
            top=entry.get("top", 8),
            label=name,
            title=f"{entry.title} ({layer.name}{note})",
        )
    if method == "confusion_matrix":
        predicted = ctx.probabilities().argmax(axis=1)
        return figures.confusion_matrix(
            ctx.y, predicted, class_names=ctx.class_names, title=entry.title
        )
    if method == "training_curves":
        if not ctx.history:
            raise SkipFigure("no training history was given (--history)")
        return figures.training_curves(ctx.history, title=entry.title)
    if method == "epochs":
        return _epochs_figure(entry, ctx)
    if method in ("deletion_insertion", "randomization", "evidence"):
        return _trust_figure(entry, ctx)
    raise ValueError(f"Figure {entry.id!r}: unknown method {method!r}")  # spec.py checks first


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
    )


# Every method but LIME, whose 1,000 model calls per face make it the slow one.
_DEFAULT_TRUST = tuple(m for m in TRUST_METHODS if m != "lime")


def _explainer_for(name, model, entry, output=None):
    from keras_fer_viz import cam, grad_cam, lime, saliency

    if name == "cam":
        return cam.CAM(model)  # the GAP-head model has the explained output only
    if name == "saliency":
        return saliency.Saliency(model, output=output)
    if name == "smoothgrad":
        return saliency.SmoothGrad(model, seed=entry.get("seed", 0), output=output)
    if name == "integrated_gradients":
        return saliency.IntegratedGradients(model, output=output)
    if name == "grad_cam":
        return grad_cam.GradCAM(model, output=output)
    if name == "grad_cam_plus_plus":
        return grad_cam.GradCAMPlusPlus(model, output=output)
    return lime.Lime(
        model,
        samples=entry.get("samples", 1000),
        seed=entry.get("seed", 0),
        verbose=0,
        output=output,
    )


def _method_model(name, entry, ctx):
    return _cam_model(entry, ctx) if name == "cam" else ctx.model


def _trust_maps(name, entry, ctx, index):
    key = ("maps", name, tuple(index))
    if key not in ctx._cache:
        explainer = _explainer_for(name, _method_model(name, entry, ctx), entry, ctx.output)
        ctx._cache[key] = explainer.explain(ctx.x[index], target=ctx.y[index])
    return ctx._cache[key]


def _trust_figure(entry, ctx):
    from keras_fer_viz import metrics

    methods = entry.get("methods", list(_DEFAULT_TRUST))
    index = _face_index(entry, ctx)
    x, y = ctx.x[index], ctx.y[index]
    if entry.method == "deletion_insertion":
        steps = entry.get("steps", 20)
        deletion, insertion = {}, {}
        for name in [*methods, "random"]:
            maps = (
                metrics.random_maps(x, entry.get("seed", 0))
                if name == "random"
                else _trust_maps(name, entry, ctx, index)
            )
            deletion[name] = metrics.deletion_curve(
                ctx.model, x, maps, y, steps=steps, output=ctx.output
            )
            insertion[name] = metrics.insertion_curve(
                ctx.model, x, maps, y, steps=steps, output=ctx.output
            )
            if name != "random":
                ctx.trust.setdefault(name, {}).update(
                    deletion=deletion[name].mean_auc, insertion=insertion[name].mean_auc
                )
        ctx.trust.setdefault("random", {}).update(
            deletion=deletion["random"].mean_auc, insertion=insertion["random"].mean_auc
        )
        return figures.trust_curves(deletion, insertion, title=entry.title)
    if entry.method == "randomization":
        if entry.get("face_class") is not None:  # the face shown goes first
            first, _, _ = _face_of_class(entry, ctx)
            index = np.concatenate([[first], index[index != first]])
            x, y = ctx.x[index], ctx.y[index]
        results = {}
        for name in methods:
            model = _method_model(name, entry, ctx)
            output = None if name == "cam" else ctx.output
            results[name] = metrics.randomization_check(
                lambda m, name=name, output=output: _explainer_for(name, m, entry, output),
                model,
                x,
                y,
                seed=entry.get("seed", 0),
                output=output,
            )
            ctx.trust.setdefault(name, {})["randomization"] = results[name].final_spearman
        return figures.randomization_grid(x[0], results, title=entry.title)
    if ctx.evidence is None:
        raise SkipFigure("the data have no evidence masks (only synthetic faces do)")
    scores = {}
    for name in methods:
        scores[name] = metrics.evidence_scores(
            _trust_maps(name, entry, ctx, index), ctx.evidence[index]
        )
        mean = scores[name].mean()
        ctx.trust.setdefault(name, {}).update(pointing=mean["pointing"], mass=mean["mass"])
    return figures.evidence_bars(scores, title=entry.title)


# metric -> (label, True when higher is better)
_TRUST_COLUMNS = {
    "deletion": ("deletion AUC", False),
    "insertion": ("insertion AUC", True),
    "randomization": ("rank corr. after full randomisation", False),
    "pointing": ("pointing game", True),
    "mass": ("evidence mass", True),
}


def trust_ranking(trust: dict) -> list[tuple[str, float, dict]]:
    """Methods ranked by their mean rank over the trust metrics they have.

    Args:
        trust: ``{method: {metric: value}}`` (`ReportContext.trust`); the
            "random" row is a reference and is not ranked.

    Returns:
        ``[(method, mean rank, metrics), ...]``, best first.
    """
    methods = [m for m in trust if m != "random"]
    ranks = {m: [] for m in methods}
    for metric, (_, higher) in _TRUST_COLUMNS.items():
        have = [m for m in methods if metric in trust[m]]
        ordered = sorted(have, key=lambda m: trust[m][metric], reverse=higher)
        for position, m in enumerate(ordered, start=1):
            ranks[m].append(position)
    rows = [(m, float(np.mean(ranks[m])) if ranks[m] else float("inf"), trust[m]) for m in methods]
    return sorted(rows, key=lambda row: row[1])


def _trust_html(ctx) -> list[str]:
    if not ctx.trust:
        return []
    e = html.escape
    columns = [c for c in _TRUST_COLUMNS if any(c in v for v in ctx.trust.values())]
    head = "".join(
        f"<th>{e(_TRUST_COLUMNS[c][0])} ({'higher' if _TRUST_COLUMNS[c][1] else 'lower'}"
        " is better)</th>"
        for c in columns
    )
    lines = [
        '<section id="trust"><h2>How far to trust these maps</h2>',
        "<p>Methods ranked on this model by their mean rank over the checks below: "
        "deletion and insertion (Petsiuk et al. 2018: does removing the map's top pixels "
        "lower the score fast, does revealing them raise it fast?), cascading "
        "randomisation (Adebayo et al. 2018: a map that does not change when the model's "
        "weights are randomised does not explain the model) and, on synthetic faces, the "
        "ground truth.</p>",
        f"<table><tr><th>rank</th><th>method</th>{head}</tr>",
    ]
    for position, (name, _, values) in enumerate(trust_ranking(ctx.trust), start=1):
        cells = "".join(
            f"<td>{values[c]:.3f}</td>" if c in values else "<td>-</td>" for c in columns
        )
        lines.append(f"<tr><td>{position}</td><td>{e(name)}</td>{cells}</tr>")
    if "random" in ctx.trust:
        cells = "".join(
            f"<td>{ctx.trust['random'][c]:.3f}</td>" if c in ctx.trust["random"] else "<td>-</td>"
            for c in columns
        )
        lines.append(f"<tr><td></td><td>random order (reference)</td>{cells}</tr>")
    if ctx.evidence is not None and "pointing" in columns:
        chance = float(ctx.evidence.mean())
        lines.append(f"</table><p>Chance level of the ground-truth scores: {chance:.3f}.</p>")
    else:
        lines.append("</table>")
    lines.append("</section>")
    return lines


def _model_summary(model) -> str:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        model.summary(line_length=100)
    return buffer.getvalue()


def _accuracy_rows(ctx) -> tuple[list, float]:
    predicted = ctx.probabilities().argmax(axis=1)
    rows = []
    for c, name in enumerate(ctx.class_names):
        members = ctx.y == c
        n = int(members.sum())
        rows.append((name, n, float((predicted[members] == c).mean()) if n else None))
    return rows, float((predicted == ctx.y).mean())


def write_report(
    model,
    x,
    y,
    out_dir,
    spec=None,
    *,
    history=None,
    train_data=None,
    class_names=EMOTIONS,
    epoch_maps=None,
    cam_model=None,
    evidence=None,
    title="keras-fer-viz report",
    input_range=PIXEL_RANGE,
    source=None,
    output=None,
    cam_images=CAM_IMAGES,
    verbose="auto",
) -> ReportResult:
    """Renders every entry of a figure spec into `out_dir`, with an index.html.

    Each figure is written atomically as ``out_dir/<file>``; a figure that
    fails is reported (in the return value, on stderr and in the index) and
    the others go on. Nothing is written outside `out_dir`.

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
    index = out_dir / "index.html"
    data = _data_html(ctx, steps, input_range, source)
    _io.write_text(index, _index_html(title, entries, written, failed, skipped, ctx, data))
    return ReportResult(out_dir, index, written, failed, skipped, steps)


def _sample(x, y, limit):
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


def _data_html(ctx, steps, input_range, source) -> list[str]:
    """The index's "Data" section: where the images come from and what was done to them."""
    e = html.escape
    from keras_fer_viz.layers import input_shape

    shape = ", ".join("None" if d is None else str(d) for d in (None, *input_shape(ctx.model)))
    origin = f" from {e(source)}" if source else ""
    lines = [
        "<h2>Data</h2>",
        f"<p>{len(ctx.y)} held-out images{origin}; {len(ctx.class_names)} classes: "
        f"{e(', '.join(ctx.class_names))}.</p>",
    ]
    if steps:
        lines.append(
            f"<p>Images adapted to the model's input ({e(shape)}): {e(', '.join(steps))}.</p>"
        )
    else:
        lines.append(
            f"<p>Images fed to the model as given: they fit its input ({e(shape)}), "
            f"values {e(describe_range(input_range))}.</p>"
        )
    return lines


def _index_html(title, entries, written, failed, skipped, ctx, data=()) -> str:
    e = html.escape
    rows, overall = _accuracy_rows(ctx)
    table = "\n".join(
        f"<tr><td>{e(name)}</td><td>{n}</td><td>{'-' if acc is None else f'{acc:.3f}'}</td></tr>"
        for name, n, acc in rows
    )
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "figure{margin:2em 0}img{max-width:100%}figcaption{color:#333}"
        "td,th{padding:2px 10px;text-align:right}pre{background:#f4f4f4;padding:1em;"
        "overflow-x:auto}.failed{color:#a00}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>Model <code>{e(ctx.model.name)}</code>, {len(ctx.y)} held-out images.</p>",
        *data,
        "<h2>Accuracy per class</h2>",
        "<table><tr><th>class</th><th>n</th><th>accuracy</th></tr>",
        table,
        f"<tr><th>overall</th><th>{len(ctx.y)}</th><th>{overall:.3f}</th></tr></table>",
    ]
    for entry in entries:
        parts.append(f'<section id="{e(entry.id)}"><h2>{e(entry.title)}</h2>')
        parts.append(f"<p><em>{e(entry.question)}</em></p>")
        if entry.id in written:
            parts.append(
                f'<figure><img src="{e(entry.file)}" alt="{e(entry.title)}">'
                f"<figcaption>{e(entry.description)}</figcaption></figure>"
            )
        elif entry.id in skipped:
            parts.append(f"<p>Not drawn: {e(skipped[entry.id])}.</p>")
        else:
            parts.append(f'<p class="failed">This figure failed: {e(failed[entry.id])}</p>')
        parts.append("</section>")
    parts += _trust_html(ctx)
    parts += ["<h2>Model</h2>", f"<pre>{e(_model_summary(ctx.model))}</pre>", "</body></html>"]
    return "\n".join(parts) + "\n"
