"""Tests of keras_fer_viz.figures, on the drawn artists (no image comparison here)."""

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

from keras_fer_viz import figures
from keras_fer_viz.data.fer2013 import EMOTIONS

RNG = np.random.default_rng(0)
FACES = RNG.integers(0, 256, (7, 48, 48, 1)).astype("uint8")
MAPS = RNG.uniform(0, 1, (7, 48, 48)).astype("float32")


def texts(fig):
    return [ax.get_title() for ax in fig.axes]


def test_saliency_grid_panels_titles_and_colour_bar():
    fig = figures.saliency_grid(
        FACES,
        MAPS,
        labels=range(7),
        predictions=[0, 1, 2, 3, 4, 5, 0],
        confidences=np.linspace(0.5, 0.9, 7),
        title="S",
    )
    assert isinstance(fig, Figure) and len(fig.axes) == 15
    assert texts(fig)[0] == "true: Angry\npred: Angry (0.50)"
    assert texts(fig)[6] == "true: Neutral\npred: Angry (0.90)"
    map_image = fig.axes[7].images[0]  # row 2, column 1
    np.testing.assert_array_equal(map_image.get_array(), MAPS[0])
    assert map_image.get_clim() == (0, 1)
    assert fig.axes[-1].get_ylabel() == "relevance"  # the colour bar
    assert fig.get_suptitle() == "S"


def test_overlay_grid_lays_the_map_over_the_face():
    fig = figures.overlay_grid(FACES[:3], MAPS[:3], labels=[0, 1, 2])
    ax = fig.axes[0]
    assert len(ax.images) == 2 and ax.images[1].get_alpha() == 0.45
    face = ax.images[0].get_array()
    assert face.min() == 0 and face.max() == 1  # the face is scaled for display


def test_filter_grid_labels_filters_and_hides_empty_panels():
    fig = figures.filter_grid(RNG.uniform(size=(10, 8, 8, 1)), filters=range(5, 15), columns=4)
    titles = [t for t in texts(fig) if t]
    assert titles == [f"#{i}" for i in range(5, 15)]
    assert sum(ax.axison for ax in fig.axes) == 10 and len(fig.axes) == 12


def test_feature_map_grid_frames_the_most_active_filters():
    maps = np.zeros((6, 6, 12), "float32")
    means = np.arange(12)[::-1].astype("float32")  # filter 0 most active
    maps += means
    fig = figures.feature_map_grid(maps, image=FACES[0], top=3, label="Angry", columns=5)
    titles = texts(fig)
    assert titles[0] == "Angry"
    assert titles[1:4] == ["#0 (top 1)", "#1 (top 2)", "#2 (top 3)"] and titles[4] == "#3"
    framed = [ax for ax in fig.axes[1:13] if ax.spines["top"].get_edgecolor()[:3] == (1, 0, 0)]
    assert len(framed) == 3
    with pytest.raises(ValueError, match=r"one image, \(h, w, F\)"):
        figures.feature_map_grid(maps[None])


def test_lime_grid_colours_the_chosen_superpixels():
    segments = np.repeat(np.arange(4), 12)[None, :].repeat(48, axis=0)[None]  # 4 vertical bands
    weights = [np.array([0.5, -0.3, 0.0, 0.1])]
    fig = figures.lime_grid(
        np.full((1, 48, 48, 1), 128, "uint8"), segments, weights, labels=[3], num_features=1
    )
    rgb = fig.axes[0].images[0].get_array()
    inside = rgb[20, 5]  # band 0: the strongest positive
    against = rgb[20, 17]  # band 1: the strongest negative
    assert inside[1] > inside[0] and inside[1] > inside[2]
    assert against[0] > against[1]
    np.testing.assert_allclose(rgb[20, 29], rgb[20, 29][0])  # band 2: untouched grey
    np.testing.assert_allclose(rgb[20, 41], rgb[20, 41][0])  # band 3: not in the top 1


def test_confusion_matrix_values_counts_and_accuracy():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 0])
    fig = figures.confusion_matrix(y_true, y_pred, class_names=("a", "b", "c"))
    ax = fig.axes[0]
    cells = [t.get_text() for t in ax.texts]
    assert cells[:3] == ["0.67\n(2)", "0.33\n(1)", "0.00\n(0)"]
    assert cells[6:] == ["1.00\n(1)", "0.00\n(0)", "0.00\n(0)"]
    assert ax.get_title() == "Confusion matrix (accuracy 0.67, n = 6)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="same shape"):
        figures.confusion_matrix([0, 1], [0])


def test_confusion_matrix_draws_into_a_given_axes():
    fig = Figure()
    ax = fig.subplots()
    assert figures.confusion_matrix([0, 1], [0, 1], class_names=("a", "b"), ax=ax) is fig


def test_training_curves_from_a_history_dict():
    logs = {"loss": [1.0, 0.5, 0.2], "val_loss": [1.1, 0.6, 0.4], "accuracy": [0.3, 0.6, 0.9]}
    fig = figures.training_curves(logs)
    loss, acc = fig.axes
    np.testing.assert_array_equal(loss.lines[0].get_ydata(), [1.0, 0.5, 0.2])
    np.testing.assert_array_equal(loss.lines[0].get_xdata(), [1, 2, 3])
    assert len(loss.lines) == 2 and len(acc.lines) == 1  # no val_accuracy given
    with pytest.raises(ValueError, match="History"):
        figures.training_curves({"accuracy": [1]})
    fig = figures.training_curves(logs, epochs=[4, 5, 6])  # a resumed fit's epochs
    np.testing.assert_array_equal(fig.axes[0].lines[1].get_xdata(), [4, 5, 6])
    with pytest.raises(ValueError, match=r"one epoch number per logged value \(3\)"):
        figures.training_curves(logs, epochs=[1, 2])


def test_epoch_grid_rows_are_epochs():
    stack = RNG.uniform(size=(3, 2, 48, 48))
    fig = figures.epoch_grid(FACES[:2], stack, epochs=[1, 2, 5], labels=[0, 3])
    assert [ax.get_ylabel() for ax in fig.axes[:6:2]] == ["epoch 1", "epoch 2", "epoch 5"]
    assert texts(fig)[:2] == ["Angry", "Happy"]
    with pytest.raises(ValueError, match=r"maps \(E, N, H, W\)"):
        figures.epoch_grid(FACES[:2], stack, epochs=[1, 2])


def test_class_image_grid_and_caption():
    fig = figures.class_image_grid(FACES, probabilities=np.ones(7))
    assert texts(fig) == [f"{name}\np = 1.00" for name in EMOTIONS]
    assert figures.caption(None, 2, None) == "true: Fear"


def test_bad_shapes_are_named():
    with pytest.raises(
        ValueError, match=r"images shape=\(7, 48, 48, 1\), maps shape=\(6, 48, 48\)"
    ):
        figures.saliency_grid(FACES, MAPS[:6])
    with pytest.raises(ValueError, match=r"\(F, H, W\[, C\]\)"):
        figures.filter_grid(np.zeros((0, 8, 8)))


def test_figures_never_touch_pyplot():
    code = (
        "import sys, numpy as np\n"
        "from keras_fer_viz import figures\n"
        "figures.saliency_grid(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)))\n"
        "figures.confusion_matrix([0, 1], [1, 1], class_names=('a', 'b'))\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _curve(kind):
    from keras_fer_viz.metrics import Curve

    fractions = np.linspace(0, 1, 3)
    scores = RNG.uniform(size=(2, 3))
    return Curve(kind, fractions, scores, scores.mean(axis=1), np.array([0, 1]))


def test_trust_figures():
    from keras_fer_viz.metrics import Curve, EvidenceScores, RandomizationResult

    fractions = np.linspace(0, 1, 3)
    curve = Curve(
        "deletion",
        fractions,
        np.array([[1.0, 0.5, 0.0], [1.0, 0.7, 0.2]]),
        np.array([0.5, 0.65]),
        np.array([0, 1]),
    )
    flat = Curve("insertion", fractions, np.full((2, 3), 0.5), np.full(2, 0.5), np.array([0, 1]))
    fig = figures.trust_curves({"a": curve, "random": curve}, {"a": flat})
    left, right = fig.axes[:2]
    np.testing.assert_allclose(left.lines[0].get_ydata(), [1.0, 0.6, 0.1])
    assert left.lines[1].get_linestyle() == "--"  # the random order
    assert [t.get_text() for t in left.get_legend().get_texts()][0] == "a (AUC 0.575)"
    assert right.get_title() == "insertion (higher area is better)"

    maps = RNG.uniform(size=(3, 2, 8, 8))
    result = RandomizationResult(
        ["top", "bottom"], maps, np.array([[0.5, 0.3], [0.1, -0.1]]), np.zeros((2, 2))
    )
    fig = figures.randomization_grid(FACES[0], {"m": result})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1:4] == ["original", "+ top", "+ bottom"]
    np.testing.assert_allclose(fig.axes[-1].lines[0].get_ydata(), [0.4, 0.0])

    scores = EvidenceScores(np.array([1.0, 0.0]), np.array([0.6, 0.2]), np.array([0.1, 0.1]))
    fig = figures.evidence_bars({"m": scores, "n": scores})
    pointing, mass = fig.axes[:2]
    assert [b.get_width() for b in pointing.patches[:2]] == [0.5, 0.5]
    assert mass.patches[0].get_width() == pytest.approx(0.4)
    assert pointing.lines[0].get_xdata()[0] == pytest.approx(0.1)  # chance
    assert [t.get_text() for t in pointing.get_yticklabels()] == ["m", "n"]
    assert pointing.yaxis_inverted()  # the first method at the top


def test_method_styles_are_distinct_past_ten_methods():
    names = [f"method{i}" for i in range(17)]
    styles = figures.method_styles([*names, "random"])
    keys = {(s["color"], s["linestyle"], s["marker"]) for s in styles.values()}
    assert len(keys) == 18
    assert styles["random"]["color"] == "0.5" and styles["random"]["linestyle"] == "--"
    # The same names in the same order: the same styles, figure after figure.
    assert figures.method_styles(names) == {n: styles[n] for n in names}
    fig = figures.trust_curves(
        {n: _curve("deletion") for n in names}, {n: _curve("insertion") for n in names}
    )
    drawn = {(line.get_color(), line.get_linestyle()) for line in fig.axes[0].lines}
    assert len(drawn) == 17
    # The legend sits below its panel: no curve is hidden behind it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    legend = fig.axes[0].get_legend().get_window_extent(renderer)
    panel = fig.axes[0].get_window_extent(renderer)
    assert legend.y1 <= panel.y0


def test_class_mean_grid_rows_are_true_classes_and_empty_cells_blank():
    means = np.zeros((3, 3, 4, 4), np.float32)
    means[0, 1] = 0.5
    means[2, 2] = 1.0
    counts = np.array([[2, 1, 0], [0, 0, 0], [0, 0, 4]])
    fig = figures.class_mean_grid(means, counts, ["a", "b", "c"], title="t")
    panels = fig.axes[:9]
    assert [ax.get_title() for ax in panels] == [f"n={n}" for n in counts.ravel()]
    # An image only where images fell; one colour scale, 0 to the largest mean.
    assert [len(ax.images) for ax in panels] == [int(n > 0) for n in counts.ravel()]
    np.testing.assert_array_equal(panels[1].images[0].get_array(), means[0, 1])
    assert panels[1].images[0].get_clim() == (0.0, 1.0)
    assert panels[0].get_ylabel() == "a" and panels[6].get_xlabel() == "a"
    assert (
        panels[8].spines["top"].get_edgecolor()[:3] != panels[1].spines["top"].get_edgecolor()[:3]
    )
    with pytest.raises(ValueError, match="same C"):
        figures.class_mean_grid(means, counts[:2, :2], ["a", "b"])


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_blank_maps_are_constant_or_not_finite():
    maps = np.random.default_rng(0).random((5, 6, 6))
    maps[1] = 0.0  # a ReLU'd map with nothing left
    maps[2] = 0.7  # constant, not zero
    maps[3, 2, 2] = np.nan
    assert figures.blank_maps(maps).tolist() == [False, True, True, True, False]


@pytest.mark.parametrize("grid", [figures.saliency_grid, figures.overlay_grid])
def test_a_blank_map_says_so_and_why_on_its_panel(grid):
    maps = np.random.default_rng(1).random((3, 48, 48))
    maps[1] = 0.0
    fig = grid(np.zeros((3, 48, 48, 1)), maps, blank_reason="the ReLU ate it")
    # The maps' panels: saliency_grid's second row, overlay_grid's only row.
    panels = fig.axes[3:6] if grid is figures.saliency_grid else fig.axes[:3]
    said = [" ".join(_texts(ax)).replace("\n", " ") for ax in panels]
    assert said[0] == said[2] == ""
    assert said[1] == "blank map: the ReLU ate it"


def test_epoch_grid_marks_a_blank_map_of_one_epoch():
    maps = np.random.default_rng(2).random((2, 3, 8, 8))
    maps[0, 2] = 0.0
    fig = figures.epoch_grid(np.zeros((3, 8, 8)), maps, [1, 2], blank_reason="why")
    marked = [k for k, ax in enumerate(fig.axes[:6]) if _texts(ax)]
    assert marked == [2]  # row 0 (epoch 1), column 2


def test_class_mean_grid_marks_blank_cells_and_says_why_under_the_grid():
    means = np.random.default_rng(3).random((2, 2, 8, 8)).astype("float32")
    means[0, 1] = 0.0  # images, all blank
    means[1, 0] = 0.0  # no image
    counts = np.array([[4, 2], [0, 5]])
    fig = figures.class_mean_grid(means, counts, "ab", blank_reason="the ReLU ate it")
    assert [bool(_texts(ax)) for ax in fig.axes[:4]] == [False, True, False, False]
    assert "blank: every map of the cell is blank: the ReLU ate it" in fig._supxlabel.get_text()
    means[0, 1] = np.linspace(0, 1, 64).reshape(8, 8)  # not blank: nothing to say
    plain = figures.class_mean_grid(means, counts, "ab")
    assert plain._supxlabel.get_text() == "predicted class"
