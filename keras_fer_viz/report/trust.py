"""The trust figures and the ranking of methods on them.

Three checks of how far to trust a method's maps on this model, each one
figure of the spec, each filling ``ReportContext.trust`` (method -> metric
-> value) for the index's ranking (`trust_ranking`):

- deletion and insertion curves (Petsiuk, Das and Saenko 2018, "RISE"),
- cascading randomisation of the model's layers (Adebayo et al. 2018,
  "Sanity checks for saliency maps"),
- on synthetic faces, the pointing game and evidence mass against the
  pixels known to carry the class.

A trust entry compares the methods it lists (``methods``), ``"all"`` the
registered methods (``kfv.EXPLAINERS``), and by default every registered
method but LIME, whose thousand model calls per face make it the slow one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from keras_fer_viz import figures
from keras_fer_viz.registry import EXPLAINERS, spec_options
from keras_fer_viz.report.context import SkipFigure, face_index, face_of_class
from keras_fer_viz.report.methods import build_explainer, cam_model

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from keras_fer_viz.report.context import ReportContext
    from keras_fer_viz.spec import FigureSpec

__all__ = [
    "TRUST_COLUMNS",
    "deletion_insertion_figure",
    "evidence_figure",
    "randomization_figure",
    "trust_methods",
    "trust_ranking",
]

# Left out of a trust entry that lists no methods: too slow to run by default.
_SLOW = frozenset({"lime"})

#: metric -> (label, True when higher is better)
TRUST_COLUMNS = {
    "deletion": ("deletion AUC", False),
    "insertion": ("insertion AUC", True),
    "randomization": ("rank corr. after full randomisation", False),
    "pointing": ("pointing game", True),
    "mass": ("evidence mass", True),
}


def trust_methods(entry: FigureSpec) -> list[str]:
    """The methods a trust entry compares: its ``methods``, ``"all"`` registered
    ones, or by default every registered method but the slow ones (LIME)."""
    methods = entry.get("methods")
    if methods == "all":
        return list(EXPLAINERS)
    if methods is None:
        return [m for m in EXPLAINERS if m not in _SLOW]
    return list(methods)


def _options(name, entry) -> dict:
    """What a trust entry passes on to a method: its seed, and to LIME its `samples`.

    The other methods keep their defaults (SmoothGrad's noise samples are
    not LIME's perturbations; the curves' `steps` are not IG's).
    """
    allowed = spec_options(EXPLAINERS[name])
    options = {"seed": entry.get("seed", 0)} if "seed" in allowed else {}
    if name == "lime" and "samples" in entry.parameters:
        options["samples"] = entry.get("samples")
    return options


def _model_of(name, entry, ctx):
    """The model a method explains (CAM: the GAP-head model) and its explained output."""
    if name == "cam":
        return cam_model(entry, ctx), None  # the GAP-head model has the explained output only
    return ctx.model, ctx.output


def _maps(name, entry, ctx, index):
    """A method's maps of the faces `index` for their true class (cached across entries)."""
    options = _options(name, entry)
    key = ("maps", name, tuple(index), tuple(sorted(options.items())))
    if key not in ctx._cache:
        model, output = _model_of(name, entry, ctx)
        explainer = build_explainer(name, model, options, output)
        ctx._cache[key] = explainer.explain(ctx.x[index], target=ctx.y[index])
    return ctx._cache[key]


def deletion_insertion_figure(entry: FigureSpec, ctx: ReportContext) -> Figure:
    """Deletion and insertion curves of each method, with the random order's."""
    from keras_fer_viz import metrics

    index = face_index(entry, ctx)
    x, y = ctx.x[index], ctx.y[index]
    steps = entry.get("steps", 20)
    deletion, insertion = {}, {}
    for name in [*trust_methods(entry), "random"]:
        maps = (
            metrics.random_maps(x, entry.get("seed", 0))
            if name == "random"
            else _maps(name, entry, ctx, index)
        )
        deletion[name] = metrics.deletion_curve(
            ctx.model, x, maps, y, steps=steps, output=ctx.output
        )
        insertion[name] = metrics.insertion_curve(
            ctx.model, x, maps, y, steps=steps, output=ctx.output
        )
        ctx.trust.setdefault(name, {}).update(
            deletion=deletion[name].mean_auc, insertion=insertion[name].mean_auc
        )
    return figures.trust_curves(deletion, insertion, title=entry.title)


def randomization_figure(entry: FigureSpec, ctx: ReportContext) -> Figure:
    """Each method's maps as the model's layers are re-initialised from the top."""
    from keras_fer_viz import metrics

    index = face_index(entry, ctx)
    if entry.get("face_class") is not None:  # the face shown goes first
        first, _, _ = face_of_class(entry, ctx)
        index = np.concatenate([[first], index[index != first]])
    x, y = ctx.x[index], ctx.y[index]
    results = {}
    for name in trust_methods(entry):
        model, output = _model_of(name, entry, ctx)
        options = _options(name, entry)
        results[name] = metrics.randomization_check(
            lambda m, name=name, options=options, output=output: build_explainer(
                name, m, options, output
            ),
            model,
            x,
            y,
            seed=entry.get("seed", 0),
            output=output,
        )
        ctx.trust.setdefault(name, {})["randomization"] = results[name].final_spearman
    return figures.randomization_grid(x[0], results, title=entry.title)


def evidence_figure(entry: FigureSpec, ctx: ReportContext) -> Figure:
    """Pointing game and evidence mass of each method against the known evidence."""
    from keras_fer_viz import metrics

    if ctx.evidence is None:
        raise SkipFigure("the data have no evidence masks (only synthetic faces do)")
    index = face_index(entry, ctx)
    scores = {}
    for name in trust_methods(entry):
        scores[name] = metrics.evidence_scores(_maps(name, entry, ctx, index), ctx.evidence[index])
        mean = scores[name].mean()
        ctx.trust.setdefault(name, {}).update(pointing=mean["pointing"], mass=mean["mass"])
    return figures.evidence_bars(scores, title=entry.title)


def trust_ranking(
    trust: Mapping[str, Mapping[str, float]],
) -> list[tuple[str, float, Mapping[str, float]]]:
    """Methods ranked by their mean rank over the trust metrics they have.

    Args:
        trust: ``{method: {metric: value}}`` (`ReportContext.trust`); the
            "random" row is a reference and is not ranked.

    Returns:
        ``[(method, mean rank, metrics), ...]``, best first.

    Example:

    >>> trust_ranking({"a": {"deletion": 0.2}, "b": {"deletion": 0.1}, "random": {}})
    [('b', 1.0, {'deletion': 0.1}), ('a', 2.0, {'deletion': 0.2})]
    """
    methods = [m for m in trust if m != "random"]
    ranks: dict[str, list[int]] = {m: [] for m in methods}
    for metric, (_, higher) in TRUST_COLUMNS.items():
        have = [m for m in methods if metric in trust[m]]
        ordered = sorted(have, key=lambda m: trust[m][metric], reverse=higher)
        for position, m in enumerate(ordered, start=1):
            ranks[m].append(position)
    rows = [(m, float(np.mean(ranks[m])) if ranks[m] else float("inf"), trust[m]) for m in methods]
    return sorted(rows, key=lambda row: row[1])
