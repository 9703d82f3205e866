"""The report's explorer page, index.html: data, accuracy, figures, trust, model.

Pure string building from what the figures left in the `ReportContext`
(nothing is computed here but the accuracy per class); every value from the
user (titles, class names, file names, error messages) is escaped.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING

from keras_fer_viz.data.adapt import describe_range
from keras_fer_viz.registry import EXPLAINERS
from keras_fer_viz.report.trust import TRUST_COLUMNS, trust_ranking

if TYPE_CHECKING:
    from keras_fer_viz.report.context import ReportContext
    from keras_fer_viz.report.explorer import Explorer
    from keras_fer_viz.spec import FigureSpec

__all__ = ["data_html", "index_html", "trust_html"]

_STYLE = (
    "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
    "figure{margin:2em 0}img{max-width:100%}figcaption{color:#333}"
    "td,th{padding:2px 10px;text-align:right}pre{background:#f4f4f4;padding:1em;"
    "overflow-x:auto}.failed{color:#a00}"
    "nav a{margin-right:1em}section.question{border-top:2px solid #ccc;margin-top:2em}"
)
_TRUST_INTRO = (
    "<p>Methods ranked on this model by their mean rank over the checks below: "
    "deletion and insertion (Petsiuk et al. 2018: does removing the map's top pixels "
    "lower the score fast, does revealing them raise it fast?), cascading "
    "randomisation (Adebayo et al. 2018: a map that does not change when the model's "
    "weights are randomised does not explain the model) and, on synthetic faces, the "
    "ground truth.</p>"
)


def _cells(values, columns) -> str:
    return "".join(f"<td>{values[c]:.3f}</td>" if c in values else "<td>-</td>" for c in columns)


def trust_html(ctx: ReportContext, figures: Iterable[Iterable[str]] = ()) -> list[str]:
    """The "How far to trust these maps" section: the trust `figures` (each a list of
    lines), the methods ranked, random for reference."""
    shown = [line for figure in figures for line in figure]
    if not ctx.trust:
        if not shown:
            return []
        return ['<section id="trust"><h2>How far to trust these maps</h2>', *shown, "</section>"]
    e = html.escape
    columns = [c for c in TRUST_COLUMNS if any(c in v for v in ctx.trust.values())]
    head = "".join(
        f"<th>{e(TRUST_COLUMNS[c][0])} ({'higher' if TRUST_COLUMNS[c][1] else 'lower'}"
        " is better)</th>"
        for c in columns
    )
    lines = [
        '<section id="trust"><h2>How far to trust these maps</h2>',
        *shown,
        _TRUST_INTRO,
        f"<table><tr><th>rank</th><th>method</th>{head}</tr>",
    ]
    for position, (name, _, values) in enumerate(trust_ranking(ctx.trust), start=1):
        lines.append(f"<tr><td>{position}</td><td>{e(name)}</td>{_cells(values, columns)}</tr>")
    if "random" in ctx.trust:
        cells = _cells(ctx.trust["random"], columns)
        lines.append(f"<tr><td></td><td>random order (reference)</td>{cells}</tr>")
    lines.append("</table>")
    if ctx.evidence is not None and "pointing" in columns:
        lines.append(f"<p>Chance level of the ground-truth scores: {ctx.evidence.mean():.3f}.</p>")
    unchecked = [m for m in EXPLAINERS if m not in ctx.trust]
    if unchecked:
        lines.append(
            f"<p>Not compared by this spec's trust figures: {e(', '.join(unchecked))}.</p>"
        )
    lines.append("</section>")
    return lines


def data_html(
    ctx: ReportContext, steps: Sequence[str], input_range: Sequence[float], source: str | None
) -> list[str]:
    """The "Data" section: where the images come from and what was done to them."""
    from keras_fer_viz.layers import input_shape

    e = html.escape
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


def _model_summary(model) -> str:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        model.summary(line_length=100)
    return buffer.getvalue()


def _accuracy_html(ctx) -> list[str]:
    e = html.escape
    predicted = ctx.probabilities().argmax(axis=1)
    rows = []
    for c, name in enumerate(ctx.class_names):
        members = ctx.y == c
        n = int(members.sum())
        acc = "-" if not n else f"{(predicted[members] == c).mean():.3f}"
        rows.append(f"<tr><td>{e(name)}</td><td>{n}</td><td>{acc}</td></tr>")
    overall = float((predicted == ctx.y).mean())
    return [
        "<h2>Accuracy per class</h2>",
        "<table><tr><th>class</th><th>n</th><th>accuracy</th></tr>",
        "\n".join(rows),
        f"<tr><th>overall</th><th>{len(ctx.y)}</th><th>{overall:.3f}</th></tr></table>",
    ]


def _figure_html(entry, written, failed, skipped) -> list[str]:
    e = html.escape
    parts = [
        f'<section id="{e(entry.id)}"><h3>{e(entry.title)}</h3>',
        f"<p><em>{e(entry.question)}</em></p>",
    ]
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
    return parts


# The study's four questions (shared/study): the page's sections, in this order.
QUESTIONS = {
    "1": "Q1. Where does the model look when it classifies a face?",
    "2": "Q2. What do the filters of a layer respond to?",
    "3": "Q3. How does the model judge each emotion, and which does it confuse?",
    "4": "Q4. Which regions drive each class?",
}
_QUESTION = re.compile(r"^Q([1-4])\b")
_TRUST_KINDS = frozenset({"deletion_insertion", "randomization", "evidence"})


def _section_of(entry) -> str:
    """Where an entry goes: a question ("1"-"4"), "trust" or "training"."""
    if entry.method in _TRUST_KINDS:
        return "trust"
    found = _QUESTION.match(entry.question.strip())
    return found.group(1) if found else "training"


def index_html(
    title: str,
    entries: Sequence[FigureSpec],
    written: Mapping[str, Path],
    failed: Mapping[str, str],
    skipped: Mapping[str, str],
    ctx: ReportContext,
    data: Iterable[str] = (),
    explorer: Explorer | None = None,
    explorer_failed: str | None = None,
) -> str:
    """The whole page: `data` (`data_html`) and the accuracy, then the study's four
    questions as sections (each entry's figure or why not; the explorer in Q3, the
    class-average maps and the epoch slider in Q4), training, the trust figures and
    ranking, and the model's summary."""
    from keras_fer_viz.report import explorer as explore

    e = html.escape
    ranking = trust_ranking(ctx.trust) if ctx.trust else []
    by_section: dict[str, list[FigureSpec]] = {}
    for entry in entries:
        by_section.setdefault(_section_of(entry), []).append(entry)
    nav = [f'<a href="#q{k}">Q{k}</a>' for k in QUESTIONS]
    nav += ['<a href="#training">Training</a>', '<a href="#trust">Trust</a>']
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        _STYLE + f"<style>{explore.STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<nav>{"".join(nav)}<a href="#model">Model</a></nav>',
        f"<p>Model <code>{e(ctx.model.name)}</code>, {len(ctx.y)} held-out images.</p>",
        *data,
        *_accuracy_html(ctx),
    ]
    for key, heading in QUESTIONS.items():
        parts.append(
            f'<section class="question" id="q{key}" data-question="{key}"><h2>{e(heading)}</h2>'
        )
        for entry in by_section.get(key, []):
            parts += _figure_html(entry, written, failed, skipped)
        if key == "3":
            parts.append("<h3>Explore the confusion matrix</h3>")
            if explorer is not None:
                parts += explore.explorer_html(explorer, ranking)
            else:
                parts.append(f'<p class="failed">No explorer: {e(explorer_failed or "off")}</p>')
        if key == "4" and explorer is not None:
            parts += explore.class_means_html(explorer) + explore.epochs_html(explorer)
        parts.append("</section>")
    parts.append('<section class="question" id="training"><h2>Training</h2>')
    for entry in by_section.get("training", []):
        parts += _figure_html(entry, written, failed, skipped)
    parts.append("</section>")
    trust_figures = [_figure_html(x, written, failed, skipped) for x in by_section.get("trust", [])]
    parts += trust_html(ctx, trust_figures)
    parts += [
        '<section id="model"><h2>Model</h2>',
        f"<pre>{e(_model_summary(ctx.model))}</pre></section>",
    ]
    if explorer is not None:
        sizes = explorer.files()
        parts.append(
            f"<p><small>Explorer images: {len(sizes)} files, "
            f"{sum(sizes.values()) / 1024:.0f} KiB.</small></p>"
        )
        parts.append(explore.script())
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
