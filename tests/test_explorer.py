"""The report's explorer, in a real browser (the system Chromium through Playwright).

One report of the fixture model over 140 synthetic faces, with the per-epoch
maps of the fixtures and a trust figure, is opened from file://. The oracles
are computed here, apart from the page: the confusion matrix from the
model's own predictions, the maps from the explainers called directly,
coloured with matplotlib's colour maps, and the class means averaged by
hand.
"""

import dataclasses
import json
import os

import matplotlib
import numpy as np
import pytest
from browser import loaded, open_page, visible_box
from PIL import Image

import keras_fer_viz as kfv
from keras_fer_viz.report import write_report
from keras_fer_viz.report.explorer import FACES_PER_CELL, cell_faces
from keras_fer_viz.spec import load_spec

# Every registered method is computed for the faces shown: run once, on TensorFlow.
pytestmark = pytest.mark.end_to_end

N = 140
IDS = ("q3_confusion_matrix", "q4_grad_cam", "q4_grad_cam_class_means", "q4_grad_cam_epochs")
TRUSTED = ["grad_cam", "saliency", "gradient_x_input"]


@pytest.fixture(scope="module")
def report(tmp_path_factory, fixture_model, fixture_cam_model, report_faces, fixture_epoch_maps):
    entries = [e for e in load_spec() if e.id in IDS]
    deletion = next(e for e in load_spec() if e.id == "trust_deletion")
    parameters = {**deletion.parameters, "methods": TRUSTED, "steps": 8}
    entries.append(dataclasses.replace(deletion, parameters=parameters))
    out = tmp_path_factory.mktemp("explorer")
    result = write_report(
        fixture_model,
        report_faces.images[:N],
        report_faces.labels[:N],
        out,
        entries,
        cam_model=fixture_cam_model,
        epoch_maps={"grad_cam": fixture_epoch_maps},
        verbose=0,
    )
    assert not result.failed, result.failed
    return result


@pytest.fixture(scope="module")
def predicted(fixture_model, report_faces):
    return fixture_model.predict(report_faces.images[:N].astype("float32"), verbose=0).argmax(1)


def tile(report, sprite_file, k):
    """Tile `k` of a sprite of the report, read back from its PNG."""
    ex = report.explorer
    sprite = next(
        s
        for s in [ex.faces, *ex.maps.values(), *(m[0] for m in ex.means.values())]
        if s.file == sprite_file
    )
    sheet = np.asarray(Image.open(report.out_dir / sprite.file).convert("RGB"))
    (h, w), (x, y) = sprite.tile, sprite.offset(k)
    return sheet[y : y + h, x : x + w]


def coloured(maps, cmap="inferno"):
    """Maps in [0, 1] through a colour map, at 256 levels, as 8-bit RGB."""
    levels = np.floor(np.clip(maps, 0, 1) * 255 + 0.5) / 255
    rgb = matplotlib.colormaps[cmap](levels)[..., :3]
    return np.floor(rgb * 255 + 0.5).astype(np.uint8)


def test_every_cell_of_the_confusion_matrix_opens_its_faces(report, predicted, report_faces):
    labels = report_faces.labels[:N]
    expected = np.zeros((7, 7), int)
    np.add.at(expected, (labels, predicted), 1)
    with open_page(report.index) as (page, requests):
        cells = page.locator("td[data-count]")
        assert cells.count() == 49
        for k in range(49):
            cell = cells.nth(k)
            true, pred = cell.get_attribute("data-true"), cell.get_attribute("data-pred")
            i, j = kfv.EMOTIONS.index(true), kfv.EMOTIONS.index(pred)
            assert int(cell.get_attribute("data-count")) == expected[i, j]
            cell.click()
            shown = page.locator("[data-cell]:visible")
            assert shown.count() == 1 and shown.get_attribute("data-cell") == f"{true}|{pred}"
            faces = shown.locator("[data-face]")
            assert faces.count() == min(expected[i, j], FACES_PER_CELL)
            for f in range(faces.count()):
                face = faces.nth(f)
                index = int(face.get_attribute("data-face"))
                assert labels[index] == i and predicted[index] == j  # a face of this cell
                probs = json.loads(face.get_attribute("data-probs"))
                assert list(probs) == list(kfv.EMOTIONS) and max(probs, key=probs.get) == pred
                methods = face.locator("img[data-method]")
                names = methods.evaluate_all("els => els.map(e => e.dataset.method)")
                assert sorted(names) == sorted(kfv.EXPLAINERS)  # every registered method
                assert visible_box(page, face.locator("img[data-image]"))
                assert all(visible_box(page, methods.nth(m)) for m in range(methods.count()))
            if not expected[i, j]:
                assert "no held-out image falls in this cell" in shown.inner_text()
        # Every image on the page loaded; nothing was asked of a network.
        assert all(loaded(page, "img"))
        assert requests and all(url.startswith("file://") for url in requests), requests


def test_a_cell_shows_a_seeded_sample_of_its_faces(report, predicted, report_faces):
    picked = cell_faces(report_faces.labels[:N], predicted, 7, FACES_PER_CELL, seed=0)
    ex = report.explorer
    for key, index in picked.items():
        assert [int(ex.index[k]) for k in ex.cells[key]] == index.tolist()
        members = np.flatnonzero((report_faces.labels[:N] == key[0]) & (predicted == key[1]))
        assert len(index) == min(len(members), FACES_PER_CELL)
        assert set(index) <= set(members)


@pytest.mark.parametrize("name", ["saliency", "grad_cam"])
def test_each_tile_is_the_methods_map_of_its_face(name, report, fixture_model, report_faces):
    ex = report.explorer
    images = report_faces.images[:N][ex.index].astype("float32")
    maps = kfv.EXPLAINERS[name](fixture_model).explain(images, target=ex.labels)
    # Grad-CAM's maps are laid over the face in jet (the page stacks the two tiles).
    expected = coloured(maps, "inferno" if name == "saliency" else "jet")
    for k in range(len(ex.index)):
        got = tile(report, ex.maps[name].file, k).astype(int)
        assert np.abs(got - expected[k]).max() <= 2, (name, k)


def test_the_face_tiles_are_the_faces(report, report_faces):
    ex = report.explorer
    images = report_faces.images[:N][ex.index][..., 0].astype(float)
    lo, hi = images.min(axis=(1, 2), keepdims=True), images.max(axis=(1, 2), keepdims=True)
    expected = np.floor((images - lo) / (hi - lo) * 255 + 0.5)
    for k in range(len(ex.index)):
        assert np.abs(tile(report, ex.faces.file, k)[..., 0] - expected[k]).max() <= 1, k


def test_blank_maps_are_marked_and_say_why(report, fixture_model, report_faces):
    ex = report.explorer
    images = report_faces.images[:N][ex.index].astype("float32")
    maps = kfv.GradCAM(fixture_model).explain(images, target=ex.labels)
    blank = {int(ex.index[k]) for k in range(len(maps)) if maps[k].max() == 0}
    assert blank, "the fixture model has blank Grad-CAM maps (negative weighted sums)"
    assert len(blank) < len(maps)
    with open_page(report.index) as (page, _):
        marked = page.eval_on_selector_all(
            'img[data-method="grad_cam"][data-blank]',
            "els => els.map(e => [e.closest('[data-face]')?.dataset.face, e.dataset.blank])",
        )
        faces = {int(face) for face, _ in marked if face is not None}
        assert faces == blank
        assert {why for _, why in marked} == {kfv.GradCAM.blank_reason}
        # ... and in words beside the map, where the reader sees it.
        panel = page.locator('[data-face] img[data-method="grad_cam"][data-blank]').first
        cell = panel.locator("xpath=ancestor::div[@data-cell]")
        page.locator(
            f'td[data-true="{cell.get_attribute("data-cell").split("|")[0]}"]'
            f'[data-pred="{cell.get_attribute("data-cell").split("|")[1]}"]'
        ).click()
        why = panel.locator("xpath=ancestor::figure").inner_text()
        assert "blank: " + kfv.GradCAM.blank_reason in why.replace("\n", " ")


def test_class_means_are_the_mean_maps_of_each_class(report, fixture_model, report_faces):
    x, y = report_faces.images[:N].astype("float32"), report_faces.labels[:N]
    maps = kfv.GradCAM(fixture_model).explain(x, target=y)
    ex = report.explorer
    sprite = ex.means["grad_cam"][0]
    for c in range(7):
        mean = maps[y == c].mean(axis=0)
        expected = coloured(mean / mean.max())
        assert np.abs(tile(report, sprite.file, c).astype(int) - expected).max() <= 2, c
    with open_page(report.index) as (page, _):
        for name in kfv.EMOTIONS:
            figure = page.locator(f'[data-class-mean="{name}"]')
            assert figure.count() == 1 and visible_box(page, figure.locator("img"))
        # Per cell: the cell's mean is in its panel.
        page.locator('td[data-true="Happy"][data-pred="Happy"]').click()
        assert page.locator('[data-cell-mean="Happy|Happy"]').is_visible()


def test_the_slider_walks_the_epochs(report, fixture_epoch_maps):
    epochs = [int(e) for e in fixture_epoch_maps["epochs"]]
    with open_page(report.index) as (page, _):
        slider = page.locator('input[data-epochs="grad_cam"]')
        label = page.locator('[data-epoch-label="grad_cam"]')
        assert label.inner_text() == f"epoch {epochs[-1]}"
        first = page.locator('img[data-epoch-of="grad_cam"]').first.locator("xpath=..")
        last_shot = first.screenshot()
        slider.evaluate("el => { el.value = 0; el.dispatchEvent(new Event('input')); }")
        assert label.inner_text() == f"epoch {epochs[0]}"
        # The maps of the first and the last epoch differ, so the tile shown changes.
        assert not np.allclose(fixture_epoch_maps["maps"][0, 0], fixture_epoch_maps["maps"][-1, 0])
        assert first.screenshot() != last_shot


def test_the_trust_ranking_orders_the_maps(report):
    with open_page(report.index) as (page, _):
        ranked = page.locator("[data-trust-ranking] li").all_inner_texts()
        ranked = [item.split(" ")[0] for item in ranked]
        assert sorted(ranked) == sorted(TRUSTED)
        first = page.locator("[data-face]").first.locator("img[data-method]")
        order = [first.nth(m).get_attribute("data-method") for m in range(len(ranked))]
        assert order == ranked
        if os.environ.get("KFV_SCREENSHOT"):  # the README's picture
            off = page.locator('td[data-count]:not(.diagonal):not([data-count="0"])').first
            off.click()
            page.locator("#explorer").screenshot(path=os.environ["KFV_SCREENSHOT"])


def test_the_four_questions_are_the_sections(report):
    with open_page(report.index) as (page, _):
        sections = page.locator("section[data-question]")
        assert [sections.nth(k).get_attribute("data-question") for k in range(4)] == list("1234")
        # The explorer answers question 3, the class means question 4.
        assert page.locator('[data-question="3"] td[data-count]').count() == 49
        assert page.locator('[data-question="4"] [data-class-mean]').count() == 7


def test_the_page_is_light_and_names_its_sizes(report):
    files = report.explorer.files()
    on_disk = {f: (report.out_dir / f).stat().st_size for f in files}
    assert files == on_disk
    # Nothing else in the folder: no temporary file left behind.
    assert sorted(os.listdir(report.out_dir / "explorer")) == sorted(
        f.split("/")[-1] for f in files
    )
    # One sprite per method, the faces, the class means, the epochs' maps and faces.
    assert len(files) == len(kfv.EXPLAINERS) + 4
    assert sum(files.values()) < 1_000_000
    page = report.index.read_text()
    assert f"Explorer images: {len(files)} files, {sum(files.values()) / 1024:.0f} KiB." in page
    assert "http://" not in page and "https://" not in page


def small_report(out, model, faces, explorer_faces):
    """The confusion matrix alone over 14 faces, with `explorer_faces` per cell."""
    entries = [e for e in load_spec() if e.id == "q3_confusion_matrix"]
    return write_report(
        model,
        faces.images[:14],
        faces.labels[:14],
        out,
        entries,
        explorer_faces=explorer_faces,
        verbose=0,
    )


def test_without_the_explorer_the_page_says_so(tmp_path, fixture_model, report_faces):
    result = small_report(tmp_path, fixture_model, report_faces, explorer_faces=0)
    assert result.explorer is None and not (tmp_path / "explorer").exists()
    assert "No explorer: explorer_faces=0" in result.index.read_text()


def test_a_failing_method_is_named_and_the_others_go_on(
    tmp_path, fixture_model, report_faces, monkeypatch
):
    def broken(self, images, target=None):
        raise RuntimeError("out of ideas")

    monkeypatch.setattr(kfv.Occlusion, "explain", broken)
    result = small_report(tmp_path, fixture_model, report_faces, explorer_faces=1)
    assert result.explorer.failed == {"occlusion": "RuntimeError: out of ideas"}
    assert set(result.explorer.maps) == set(kfv.EXPLAINERS) - {"occlusion"}
    assert "No maps from occlusion: RuntimeError: out of ideas" in result.index.read_text()
    assert (result.out_dir / "explorer" / "map_grad_cam.png").is_file()
    assert not (result.out_dir / "explorer" / "map_occlusion.png").exists()
