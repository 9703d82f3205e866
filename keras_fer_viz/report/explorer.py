"""The report's explorer: a confusion matrix whose cells open their faces and every map.

`build_explorer` computes what the page shows and writes its images into
``<report>/explorer/``:

- for each cell of the confusion matrix (true class i, predicted j), up to
  `FACES_PER_CELL` of its faces (a seeded sample), their probabilities and
  their maps for every registered method (``kfv.EXPLAINERS``), each face
  explained for its true class;
- the class-average maps of `keras_fer_viz.explain_dataset` over all the
  held-out images, per true class and per cell, for the methods of the
  spec's ``class_means`` figures (Grad-CAM when it has none);
- the per-epoch maps the training callbacks kept, for a slider.

Images are tiled into one small PNG per method (a "sprite"); the page shows
a tile by clipping the sprite, so it loads a few files however many faces it
holds. A map that is zero (or constant) everywhere is "blank": the page
marks it ``data-blank`` and says in words why the method can give one
(`Explainer.blank_reason`), so a reader can tell blank from broken.

`explorer_html` writes the page's parts from an `Explorer`; the page needs
no server, no network and no build step (a few lines of vanilla JavaScript,
inline).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from numpy.typing import ArrayLike

from keras_fer_viz import _io
from keras_fer_viz.figures import blank_maps
from keras_fer_viz.registry import EXPLAINERS

if TYPE_CHECKING:
    from keras_fer_viz.report.context import ReportContext
    from keras_fer_viz.spec import FigureSpec

__all__ = [
    "FACES_PER_CELL",
    "LIME_SAMPLES",
    "TILE",
    "Explorer",
    "Sprite",
    "build_explorer",
    "cell_faces",
    "explorer_html",
]

#: Faces shown per cell of the confusion matrix, at most (a 7-class matrix: up to 196).
FACES_PER_CELL = 4
#: LIME's perturbations per face in the explorer (its figure in the spec takes its own,
#: 1,000 by default): at 1,000 LIME alone would cost ~0.5 s per face on two CPU cores.
LIME_SAMPLES = 300
#: The longest side of a tile in the sprites, in pixels (larger images are shrunk).
TILE = 64
#: Tiles are shown at this many screen pixels per image pixel (48 -> 96).
_ZOOM = 2
_FOLDER = "explorer"
_OVERLAY_ALPHA = 0.45
_NO_IMAGE = "no held-out image falls in this cell"


@dataclass
class Sprite:
    """One PNG of equal tiles, row by row: `file` (relative to the report), a tile's
    ``(height, width)`` and the number of `columns`."""

    file: str
    tile: tuple[int, int]
    columns: int
    count: int
    size: int  # bytes on disk

    def offset(self, k: int) -> tuple[int, int]:
        """The pixel offset ``(x, y)`` of tile `k` in the PNG."""
        return (k % self.columns) * self.tile[1], (k // self.columns) * self.tile[0]

    @property
    def shape(self) -> tuple[int, int]:
        """The PNG's ``(height, width)``."""
        rows = -(-self.count // self.columns)
        return rows * self.tile[0], min(self.count, self.columns) * self.tile[1]


@dataclass
class EpochMaps:
    """A training callback's per-epoch maps: `maps` tiles epoch by epoch (E x P), `faces`
    the P probe faces (None for maps shown on their own)."""

    maps: Sprite
    faces: Sprite | None
    epochs: list[int]
    labels: np.ndarray | None
    count: int


@dataclass
class Explorer:
    """What the explorer shows (see the module docstring)."""

    class_names: tuple[str, ...]
    counts: np.ndarray  # (C, C) the confusion matrix
    cells: dict[tuple[int, int], list[int]]  # (i, j) -> positions in `index` of its faces shown
    index: np.ndarray  # (K,) the faces shown, as indices of the held-out data
    labels: np.ndarray  # (K,)
    probabilities: np.ndarray  # (K, C)
    faces: Sprite | None = None
    maps: dict[str, Sprite] = field(default_factory=dict)  # method -> Sprite of its K maps
    blank: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (K,) bool
    failed: dict[str, str] = field(default_factory=dict)  # method -> why it has no maps
    #: method -> (Sprite, blank): tiles 0..C-1 the class means, then C + i*C + j the cells
    means: dict[str, tuple[Sprite, np.ndarray]] = field(default_factory=dict)
    #: callback name -> `EpochMaps`
    epochs: dict[str, EpochMaps] = field(default_factory=dict)
    #: methods whose maps are laid over the face (the CAM family)
    overlay: dict[str, bool] = field(default_factory=dict)

    @property
    def predicted(self) -> np.ndarray:
        """The predicted class of each face shown."""
        return self.probabilities.argmax(axis=1)

    def files(self) -> dict[str, int]:
        """Every image file the page loads -> its size in bytes."""
        sprites = [self.faces, *self.maps.values()]
        sprites += [s for s, _ in self.means.values()]
        sprites += [s for e in self.epochs.values() for s in (e.maps, e.faces)]
        return {s.file: s.size for s in sprites if s is not None}


def cell_faces(
    y: ArrayLike,
    predicted: ArrayLike,
    num_classes: int,
    per_cell: int = FACES_PER_CELL,
    seed: int = 0,
) -> dict[tuple[int, int], np.ndarray]:
    """Up to `per_cell` faces of each confusion cell: ``{(true, predicted): indices}``.

    A seeded sample of each cell, in the data's order; every cell is a key
    (an empty array when no face falls in it).

    Example:

    >>> import numpy as np
    >>> cells = cell_faces(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]), 2, per_cell=1)
    >>> {k: v.tolist() for k, v in cells.items()}
    {(0, 0): [1], (0, 1): [2], (1, 0): [], (1, 1): [3]}
    """
    y, predicted = np.asarray(y), np.asarray(predicted)
    rng = np.random.default_rng(seed)
    cells = {}
    for i in range(num_classes):
        for j in range(num_classes):
            members = np.flatnonzero((y == i) & (predicted == j))
            if len(members) > per_cell:
                members = np.sort(rng.choice(members, per_cell, replace=False))
            cells[(i, j)] = members
    return cells


def _display(images) -> np.ndarray:
    """(N, H, W, C) model inputs -> (N, H, W) gray or (N, H, W, 3) RGB floats in [0, 1],
    each image min-max scaled."""
    images = np.asarray(images, dtype=np.float32)
    images = images[..., 0] if images.shape[-1] == 1 else images[..., :3]
    axes = tuple(range(1, images.ndim))
    lo = images.min(axis=axes, keepdims=True)
    span = images.max(axis=axes, keepdims=True) - lo
    return np.where(span > 0, (images - lo) / np.where(span > 0, span, 1), 0.0)


def _shrink(tiles) -> np.ndarray:
    """Tiles whose longest side is over `TILE` shrunk to it (bilinear, aspect kept)."""
    from PIL import Image

    n, h, w = tiles.shape[:3]
    if max(h, w) <= TILE:
        return tiles
    scale = TILE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))

    def resize(plane):  # one (H, W) float plane
        image = Image.fromarray(plane.astype(np.float32))  # mode "F"
        return np.asarray(image.resize(size, Image.Resampling.BILINEAR))

    if tiles.ndim == 3:
        return np.stack([resize(t) for t in tiles])
    return np.stack([np.stack([resize(t[..., c]) for c in range(3)], -1) for t in tiles])


def _write_sprite(tiles, out_dir, name, cmap=None) -> Sprite:
    """Tiles in [0, 1] -> ``out_dir/explorer/<name>.png``, written atomically.

    Maps (N, H, W) with a colour map `cmap` are stored as 8-bit levels with
    the colour map as the PNG's palette (one byte per pixel: a tile's colour
    is ``cmap(round(255 * value) / 255)``); images as gray (N, H, W) or RGB
    (N, H, W, 3).
    """
    from PIL import Image

    tiles = _shrink(np.clip(np.nan_to_num(np.asarray(tiles, dtype=np.float32)), 0, 1))
    n, h, w = tiles.shape[:3]
    columns = max(1, min(n, int(np.ceil(np.sqrt(n)))))
    rows = -(-n // columns)
    sheet = np.zeros((rows * h, columns * w, *tiles.shape[3:]), np.uint8)
    levels = np.rint(tiles * 255).astype(np.uint8)
    for k, tile in enumerate(levels):
        r, c = divmod(k, columns)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    image = Image.fromarray(sheet)
    if cmap is not None:
        palette = matplotlib.colormaps[cmap](np.arange(256) / 255)[:, :3]
        image = Image.frombytes("P", image.size, sheet.tobytes())
        image.putpalette(np.rint(palette * 255).astype(np.uint8).ravel().tolist())
    path = Path(out_dir) / _FOLDER / f"{name}.png"
    with _io.atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return Sprite(f"{_FOLDER}/{name}.png", (h, w), columns, n, path.stat().st_size)


def _cmap(overlay) -> str:
    """The colour map of a method's maps: jet for maps laid over the face (CAM family,
    as `figures.overlay_grid`), inferno for maps shown on their own."""
    return "jet" if overlay else "inferno"


def _method_maps(name, ctx, entries, images, labels):
    """`name`'s maps of `images` for their `labels`, built as the spec's figures build it."""
    from keras_fer_viz.report.methods import build_explainer, cam_model, entry_options
    from keras_fer_viz.spec import FigureSpec

    entry = next((e for e in entries if e.method == name), None)
    if name == "cam":
        entry = entry or FigureSpec("explorer_cam", "", "", "cam", "explorer_cam.png")
        explainer = build_explainer("cam", cam_model(entry, ctx))
    else:
        options = entry_options(entry, name, ctx.model) if entry is not None else {}
        if name == "lime":
            options["samples"] = LIME_SAMPLES
        explainer = build_explainer(name, ctx.model, options, ctx.output)
    return explainer.explain(images, target=labels)


def _class_mean_tiles(result, num_classes):
    """(C + C*C, H, W) maps: per true class (the mean over its row), then per cell,
    each scaled to [0, 1] by its own maximum; and which of them are blank."""
    means = np.asarray(result.class_means, dtype=np.float64)
    counts = np.asarray(result.counts, dtype=np.float64)
    rows = counts.sum(axis=1)
    per_class = np.einsum("ij,ijhw->ihw", counts, means) / np.maximum(rows, 1)[:, None, None]
    tiles = np.concatenate([per_class, means.reshape(-1, *means.shape[2:])])
    peak = tiles.max(axis=(1, 2), keepdims=True)
    tiles = np.where(peak > 0, tiles / np.where(peak > 0, peak, 1), 0.0)
    empty = np.concatenate([rows == 0, counts.reshape(-1) == 0])
    return tiles.astype(np.float32), blank_maps(tiles), empty


def mean_methods(entries: Sequence[FigureSpec]) -> list[str]:
    """The methods of the spec's class-means figures (Grad-CAM when it has none)."""
    names = [e.get("explainer", "grad_cam") for e in entries if e.method == "class_means"]
    return list(dict.fromkeys(names)) or ["grad_cam"]


def build_explorer(
    ctx: ReportContext,
    entries: Sequence[FigureSpec],
    out_dir: str | os.PathLike[str],
    per_cell: int = FACES_PER_CELL,
    seed: int = 0,
) -> Explorer:
    """Computes the explorer of a report and writes its images (see the module docstring).

    Args:
        ctx: the report's `ReportContext` (its trust and dataset explanations
            are reused when the figures computed them).
        entries: the spec's entries: a method's figure entry gives it its
            options (layer, samples, ...); the ``class_means`` entries name
            the methods averaged over the data set.
        out_dir: the report folder; images go to ``out_dir/explorer/``.
        per_cell: faces shown per cell, at most. Defaults to `FACES_PER_CELL`.
        seed: the seed of the faces' sample. Defaults to `0`.

    Returns:
        An `Explorer`. A method that fails is recorded in its ``failed``
        (the page says why) and the others go on.
    """
    from keras_fer_viz.report.render import class_means_result

    probs = ctx.probabilities()
    num_classes = len(ctx.class_names)
    predicted = probs.argmax(axis=1)
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (ctx.y, predicted), 1)
    picked = cell_faces(ctx.y, predicted, num_classes, per_cell, seed)
    index = np.concatenate([v for v in picked.values()]).astype(np.int64)
    where = {int(k): n for n, k in enumerate(index)}
    cells = {key: [where[int(k)] for k in v] for key, v in picked.items()}
    ex = Explorer(ctx.class_names, counts, cells, index, ctx.y[index], probs[index])
    if not len(index):
        return ex
    images = ctx.x[index]
    ex.faces = _write_sprite(_display(images), out_dir, "faces")
    for name, cls in EXPLAINERS.items():
        try:
            maps = _method_maps(name, ctx, entries, images, ex.labels)
        except Exception as err:  # one failing method must not take the page down
            ex.failed[name] = f"{type(err).__name__}: {err}"
            continue
        ex.overlay[name] = bool(cls.overlay)
        ex.maps[name] = _write_sprite(maps, out_dir, f"map_{name}", _cmap(cls.overlay))
        ex.blank[name] = blank_maps(maps)
    for name in mean_methods(entries):
        entry = next(
            (e for e in entries if e.method == "class_means" and e.get("explainer") == name),
            None,
        )
        try:
            result = class_means_result(entry, ctx, name)
        except Exception as err:
            ex.failed.setdefault(f"{name} (class means)", f"{type(err).__name__}: {err}")
            continue
        tiles, blank, empty = _class_mean_tiles(result, num_classes)
        sprite = _write_sprite(tiles, out_dir, f"mean_{name}", _cmap(False))
        ex.means[name] = (sprite, np.where(empty, 2, blank.astype(int)))
    for name, kept in sorted(ctx.epoch_maps.items()):
        if not kept or kept.get("maps") is None or not len(kept["epochs"]):
            continue
        stack = np.asarray(kept["maps"], dtype=np.float32)  # (E, P, H, W)
        overlay = EXPLAINERS[name].overlay if name in EXPLAINERS else True
        sprite = _write_sprite(
            stack.reshape(-1, *stack.shape[2:]), out_dir, f"epochs_{name}", _cmap(overlay)
        )
        faces = None
        if overlay:
            shown = _display(_fit_images(kept["images"], stack.shape[2:]))
            faces = _write_sprite(shown, out_dir, f"epochs_{name}_faces")
        epochs = [int(e) for e in kept["epochs"]]
        ex.epochs[name] = EpochMaps(sprite, faces, epochs, kept.get("labels"), stack.shape[1])
    return ex


def _fit_images(images, size):
    """Probe images at the maps' (H, W), for overlays; (P, H, W, C)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[1:3] == tuple(size):
        return images
    import keras

    return keras.ops.convert_to_numpy(keras.ops.image.resize(images, size))


# The page's parts -----------------------------------------------------------

STYLE = (
    ".confusion td[data-count]{cursor:pointer;text-align:center;min-width:3em}"
    ".confusion td[data-count]:hover,.confusion td.selected{outline:2px solid #06c}"
    ".confusion td.diagonal{font-weight:bold}"
    ".tile{display:inline-block;overflow:hidden;vertical-align:top;background:#eee;"
    "position:relative}"
    ".tile img{display:block;max-width:none}"
    f".tile img.over{{position:absolute;top:0;left:0;opacity:{_OVERLAY_ALPHA}}}"
    ".faces{display:flex;flex-wrap:wrap;gap:1em}"
    "[data-face]{border:1px solid #ccc;padding:.5em;max-width:100%}"
    ".maps{display:flex;flex-wrap:wrap;gap:4px}"
    ".maps figure,.means figure{margin:0;width:min-content}"
    ".maps figcaption,.means figcaption{font-size:11px}"
    ".why{color:#a00;font-size:11px}"
    ".explorer{display:flex;gap:2em;align-items:flex-start;flex-wrap:wrap}"
    ".ranking{max-width:22em;font-size:14px}.ranking h3{margin-top:0}"
    ".probs{font-size:12px;margin:.3em 0}"
    ".means{display:flex;flex-wrap:wrap;gap:6px}"
)

_SCRIPT = """<script>
(function () {
  var cells = document.querySelectorAll("td[data-count]");
  var panels = document.querySelectorAll("[data-cell]");
  function open(td) {
    var key = td.getAttribute("data-true") + "|" + td.getAttribute("data-pred");
    panels.forEach(function (p) { p.hidden = p.getAttribute("data-cell") !== key; });
    cells.forEach(function (c) { c.classList.toggle("selected", c === td); });
  }
  cells.forEach(function (td) {
    td.addEventListener("click", function () { open(td); });
    td.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(td); }
    });
  });
  document.querySelectorAll("input[data-epochs]").forEach(function (slider) {
    var name = slider.getAttribute("data-epochs");
    var epochs = JSON.parse(slider.getAttribute("data-values"));
    var label = document.querySelector('[data-epoch-label="' + name + '"]');
    function show() {
      var e = +slider.value;
      label.textContent = "epoch " + epochs[e];
      document.querySelectorAll('img[data-epoch-of="' + name + '"]').forEach(function (img) {
        var k = e * +img.getAttribute("data-faces") + +img.getAttribute("data-k");
        var cols = +img.getAttribute("data-columns");
        var w = +img.getAttribute("data-w"), h = +img.getAttribute("data-h");
        img.style.marginLeft = -(k % cols) * w + "px";
        img.style.marginTop = -Math.floor(k / cols) * h + "px";
      });
    }
    slider.addEventListener("input", show);
    show();
  });
})();
</script>"""


def _img(sprite, k, attrs="", alt="", cls=""):
    """The whole PNG of `sprite`, shifted so that tile `k` shows in a clipping span."""
    sheet_h, sheet_w = (_ZOOM * s for s in sprite.shape)
    x, y = (_ZOOM * s for s in sprite.offset(k))
    return (
        f'<img src="{html.escape(sprite.file)}" alt="{html.escape(alt)}" {attrs}'
        + (f' class="{cls}"' if cls else "")
        + f' width="{sheet_w}" height="{sheet_h}"'
        f' style="width:{sheet_w}px;height:{sheet_h}px;margin-left:-{x}px;margin-top:-{y}px">'
    )


def _tile(sprite, k, attrs="", alt="", under=None):
    """Tile `k` of `sprite`, shown at `_ZOOM`; `under` = (faces sprite, tile) lays it,
    half transparent, over that face (as `figures.overlay_grid` does)."""
    h, w = (_ZOOM * s for s in sprite.tile)
    inner = _img(sprite, k, attrs, alt)
    if under is not None:
        inner = _img(under[0], under[1], "", "", "face") + _img(sprite, k, attrs, alt, "over")
    return f'<span class="tile" style="width:{w}px;height:{h}px">{inner}</span>'


def _method_order(ex, ranking):
    """Registered methods with maps, the trust ranking's best first, then the rest."""
    ranked = [name for name, _, _ in ranking if name in ex.maps]
    return ranked + [m for m in ex.maps if m not in ranked]


def _map_figure(ex, name, k, rank):
    e = html.escape
    blank = bool(ex.blank[name][k])
    why = EXPLAINERS[name].blank_reason
    attrs = f'data-method="{e(name)}"' + (f' data-blank="{e(why)}"' if blank else "")
    caption = e(name) + (f" (trust #{rank})" if rank else "")
    under = (ex.faces, k) if ex.overlay.get(name) else None
    tile = _tile(ex.maps[name], k, attrs, f"{name} map", under)
    parts = [f"<figure>{tile}<figcaption>{caption}"]
    if blank:
        parts.append(f'<br><span class="why">blank: {e(why)}</span>')
    parts.append("</figcaption></figure>")
    return "".join(parts)


def _face_html(ex, k, order, ranks):
    e = html.escape
    names = ex.class_names
    probs = {names[c]: round(float(p), 4) for c, p in enumerate(ex.probabilities[k])}
    top = sorted(probs.items(), key=lambda kv: -kv[1])[:3]
    listing = ", ".join(f"{e(c)} {p:.2f}" for c, p in top)
    label, pred = names[int(ex.labels[k])], names[int(ex.predicted[k])]
    maps = "".join(_map_figure(ex, name, k, ranks.get(name)) for name in order)
    return (
        f'<div data-face="{int(ex.index[k])}" data-probs="{e(json.dumps(probs))}">'
        f"{_tile(ex.faces, k, 'data-image', f'face {int(ex.index[k])}')}"
        f'<p class="probs">image {int(ex.index[k])}: true {e(label)}, predicted {e(pred)}'
        f"<br>{listing}</p>"
        f'<div class="maps">{maps}</div></div>'
    )


def _mean_figure(ex, name, k, attrs, caption):
    e = html.escape
    sprite, state = ex.means[name]
    why = {0: "", 1: EXPLAINERS[name].blank_reason, 2: _NO_IMAGE}[int(state[k])]
    blank = f' data-blank="{e(why)}"' if why else ""
    img = _tile(sprite, k, f'data-method="{e(name)}"{blank}', f"mean {name} map")
    note = f'<br><span class="why">blank: {e(why)}</span>' if why else ""
    return f"<figure {attrs}>{img}<figcaption>{e(caption)}{note}</figcaption></figure>"


def _panel_html(ex, i, j, order, ranks):
    e = html.escape
    names = ex.class_names
    key = f"{names[i]}|{names[j]}"
    count = int(ex.counts[i, j])
    shown = ex.cells[(i, j)]
    parts = [
        f'<div data-cell="{e(key)}" hidden>',
        f"<h3>True {e(names[i])}, predicted {e(names[j])}: {_images(count)}"
        + (f" ({len(shown)} shown)" if count > len(shown) else "")
        + "</h3>",
    ]
    if not count:
        parts.append(f"<p>None: {_NO_IMAGE}.</p></div>")
        return "".join(parts)
    if ex.means:
        cell = len(names) + i * len(names) + j
        means = "".join(
            _mean_figure(ex, m, cell, f'data-cell-mean="{e(key)}"', f"mean {m}, {_images(count)}")
            for m in ex.means
        )
        parts.append(f'<div class="means">{means}</div>')
    faces = "".join(_face_html(ex, k, order, ranks) for k in shown)
    parts.append(f'<div class="faces">{faces}</div></div>')
    return "".join(parts)


def _images(n) -> str:
    return f"{n} image" if n == 1 else f"{n} images"


def _confusion_table(ex):
    e = html.escape
    names = ex.class_names
    head = "".join(f"<th>{e(n)}</th>" for n in names)
    rows = [f'<table class="confusion"><tr><th>true \\ predicted</th>{head}<th>n</th></tr>']
    for i, true in enumerate(names):
        row_n = int(ex.counts[i].sum())
        cells = []
        for j, pred in enumerate(names):
            n = int(ex.counts[i, j])
            share = n / row_n if row_n else 0.0
            shade = f"background:rgba(0,102,204,{0.08 + 0.6 * share:.2f})" if n else ""
            cells.append(
                f'<td data-true="{e(true)}" data-pred="{e(pred)}" data-count="{n}" '
                f'tabindex="0" role="button" style="{shade}"'
                + (' class="diagonal"' if i == j else "")
                + f' title="true {e(true)}, predicted {e(pred)}: {n}">{n}</td>'
            )
        rows.append(f"<tr><th>{e(true)}</th>{''.join(cells)}<td>{row_n}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _ranking_html(ranking):
    if not ranking:
        return (
            "<p>No trust figure ranked the methods on this model; the maps are in the "
            "registry's order.</p>"
        )
    items = "".join(
        f"<li>{html.escape(name)} <small>(mean rank {mean:.1f})</small></li>"
        for name, mean, _ in ranking
    )
    return (
        '<aside class="ranking" data-trust-ranking><h3>Which maps to believe</h3>'
        "<p>The methods ranked by the trust checks on this model (see "
        '<a href="#trust">How far to trust these maps</a>); each face\'s maps are in this '
        f"order.</p><ol>{items}</ol></aside>"
    )


def explorer_html(ex: Explorer, ranking: Sequence[tuple[str, float, Any]] = ()) -> list[str]:
    """The explorer's part of the page: the clickable confusion matrix, one panel per
    cell with its faces and their maps, and the trust ranking beside them."""
    e = html.escape
    ranks = {name: position for position, (name, _, _) in enumerate(ranking, start=1)}
    order = _method_order(ex, ranking)
    total = int(ex.counts.sum())
    lines = [
        f"<p>Click a cell to see its faces ({total} held-out images; up to "
        f"{max((len(v) for v in ex.cells.values()), default=0)} shown per cell), each with "
        f"its class probabilities and its map for every registered method "
        f"({len(ex.maps)} of {len(EXPLAINERS)}), explained for its true class (LIME with "
        f"{LIME_SAMPLES} perturbations per face). Maps of the CAM family are laid over the "
        "face; a blank map says why it is blank.</p>",
        '<div id="explorer"><div class="explorer">',
        _confusion_table(ex),
        _ranking_html(list(ranking)),
        "</div>",
    ]
    for name, why in ex.failed.items():
        lines.append(f'<p class="failed">No maps from {e(name)}: {e(why)}</p>')
    n = len(ex.class_names)
    lines += [_panel_html(ex, i, j, order, ranks) for i in range(n) for j in range(n)]
    lines.append("</div>")
    return lines


def class_means_html(ex: Explorer) -> list[str]:
    """Per true class, the mean map over all its held-out images, for each method."""
    e = html.escape
    if not ex.means:
        return []
    lines = [
        "<h3>Mean maps per true class</h3>",
        "<p>Every held-out image explained for its true class "
        "(<code>kfv.explain_dataset</code>) and averaged per class; each map is scaled to "
        "its own maximum. Per cell of the confusion matrix, open the cell above.</p>",
    ]
    for name in ex.means:
        figs = "".join(
            _mean_figure(
                ex,
                name,
                c,
                f'data-class-mean="{e(cls)}"',
                f"{cls} ({int(ex.counts[c].sum())})",
            )
            for c, cls in enumerate(ex.class_names)
        )
        lines.append(f'<p>{e(name)}</p><div class="means">{figs}</div>')
    return lines


def epochs_html(ex: Explorer) -> list[str]:
    """A slider over the epochs for each callback that kept per-epoch maps."""
    e = html.escape
    lines = []
    for name, kept in ex.epochs.items():
        sprite, epochs, labels, count = kept.maps, kept.epochs, kept.labels, kept.count
        h, w = (_ZOOM * s for s in sprite.tile)
        last = len(epochs) - 1
        lines.append(
            f"<h3>{e(name)} while the model trained</h3>"
            f'<p><input type="range" min="0" max="{last}" value="{last}" '
            f'data-epochs="{e(name)}" data-values="{e(json.dumps(epochs))}" '
            f'aria-label="epoch of {e(name)}"> <span data-epoch-label="{e(name)}">'
            f"epoch {epochs[-1]}</span></p>"
        )
        figs = []
        for k in range(count):
            attrs = (
                f'data-epoch-of="{e(name)}" data-k="{k}" data-faces="{count}" '
                f'data-columns="{sprite.columns}" data-w="{w}" data-h="{h}"'
            )
            caption = "" if labels is None else ex.class_names[int(labels[k])]
            under = None if kept.faces is None else (kept.faces, k)
            tile = _tile(sprite, last * count + k, attrs, f"{name} map", under)
            figs.append(f"<figure>{tile}<figcaption>{e(caption)}</figcaption></figure>")
        lines.append(f'<div class="means">{"".join(figs)}</div>')
    return lines


def script() -> str:
    """The page's JavaScript (inline: a file:// page may not fetch its own files)."""
    return _SCRIPT
