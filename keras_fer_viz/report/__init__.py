"""Renders a figure spec into a folder of PNGs and an index.html.

`render_figure` computes what one spec entry asks for (with the registered
explainers, `maximize_activation`, `feature_maps`, scikit-learn) and draws
it with `keras_fer_viz.figures`; `write_report` does so for every entry,
writes each PNG atomically into the output folder, goes on when a figure
fails (and says why in the index), and writes ``index.html`` with the
captions, the model's summary, its accuracy per class and the trust ranking
of the methods. Images are fitted to the model's input first
(`keras_fer_viz.data.adapt_images`: size, channels, value range), and the
index says what was done. Any number of classes works; the class names
label every figure. The figure tests call the same `render_figure` on the
same spec.

The package, from the bottom up:

- ``context``: `ReportContext` (with the cached `explain_dataset` of the
  held-out data), `ReportResult`, `SkipFigure`; an entry's faces.
- ``methods``: explainers for entries, built from ``kfv.EXPLAINERS``.
- ``trust``: the trust figures and `trust_ranking`.
- ``render``: `render_figure`, one function per kind of figure.
- ``explorer``: the page's explorer (the confusion matrix whose cells open
  their faces and every method's maps; class means; the epoch slider).
- ``page``: the index.html.
- ``write``: `write_report`.
"""

from keras_fer_viz.data.pick import class_index, pick_faces
from keras_fer_viz.report.context import CAM_IMAGES, ReportContext, ReportResult, SkipFigure
from keras_fer_viz.report.explorer import FACES_PER_CELL, Explorer, build_explorer
from keras_fer_viz.report.render import render_figure
from keras_fer_viz.report.trust import trust_ranking
from keras_fer_viz.report.write import write_report

__all__ = [
    "CAM_IMAGES",
    "FACES_PER_CELL",
    "Explorer",
    "ReportContext",
    "ReportResult",
    "SkipFigure",
    "build_explorer",
    "class_index",
    "pick_faces",
    "render_figure",
    "trust_ranking",
    "write_report",
]
