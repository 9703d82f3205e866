"""Tests of keras_fer_viz.spec: the packaged spec and every kind of invalid entry."""

import pytest
from conftest import ROOT

from keras_fer_viz.spec import METHODS, SpecError, default_spec_path, load_spec, parse_spec

GOOD = dict(id="q1", title="T", question="Q", method="saliency", file="q1.png")


def spec_of(**changes):
    entry = {**GOOD, **changes}
    return {"figure": [{k: v for k, v in entry.items() if v is not None}]}


def test_the_packaged_spec_is_the_repository_spec():
    assert default_spec_path().read_text() == (ROOT / "spec" / "figures.toml").read_text()


def test_the_spec_covers_every_figure_of_the_study():
    entries = load_spec()
    methods = [e.method for e in entries]
    for needed in (
        "saliency",
        "filters",
        "feature_maps",
        "lime",
        "confusion_matrix",
        "grad_cam",
        "cam",
        "training_curves",
    ):
        assert needed in methods
    assert len({e.file for e in entries}) == len(entries)
    filters = next(e for e in entries if e.method == "filters")
    assert filters.get("conv_layer") == 3  # the study's third conv layer
    assert next(e for e in entries if e.method == "feature_maps").get("face_class") == "Angry"
    for entry in entries:
        assert entry.title and entry.question and entry.description


BAD = [
    (dict(method="magic"), "figure 'q1': key 'method' must be one of"),
    (dict(title=None), "figure 'q1': missing key 'title'"),
    (dict(title=""), "figure 'q1': key 'title' must be a non-empty string"),
    (dict(file="../x.png"), "figure 'q1': key 'file' must be a plain file name"),
    (dict(file="x.jpg"), "key 'file' must be a plain file name ending in .png"),
    (dict(file="index.html"), "key 'file'"),
    (dict(id="Q 1"), "key 'id' must be lower_snake_case"),
    (dict(colour="red"), r"unknown key\(s\) \['colour'\]"),
    (dict(parameters={"steps": 3}), "parameter 'steps' does not apply to method 'saliency'"),
    (dict(parameters={"images_per_class": 0}), "parameter 'images_per_class' must be a positive"),
    (
        dict(parameters={"classes": ["Happy", -1]}),
        "parameter 'classes' must be \"all\" or a non-empty",
    ),
    (dict(parameters={"seed": "zero"}), "parameter 'seed' must be an integer. Received: 'zero'"),
    (dict(method="grad_cam", parameters={"layer": "a", "conv_layer": 2}), "not both"),
    (
        dict(method="feature_maps", parameters={"face_class": 3}),
        "'face_class' must be a class name",
    ),
    (
        dict(method="feature_maps", parameters={"face_class": " "}),
        "'face_class' must be a class name",
    ),
    (dict(method="lime", parameters={"segmentation": "watershed"}), "'segmentation' must be"),
    (dict(method="filters", parameters={"filters": [-1]}), "'filters' must be a positive"),
    (dict(parameters=[1]), "key 'parameters' must be a table"),
]


@pytest.mark.parametrize("changes, match", BAD)
def test_invalid_entries_name_the_entry_and_the_key(changes, match):
    with pytest.raises(SpecError, match=match):
        parse_spec(spec_of(**changes), source="figures.toml")


def test_whole_file_errors(tmp_path):
    with pytest.raises(SpecError, match="at least one \\[\\[figure\\]\\] entry"):
        parse_spec({})
    with pytest.raises(SpecError, match=r"unknown top-level key\(s\) \['figures'\]"):
        parse_spec({"figure": [GOOD], "figures": []})
    twice = {"figure": [GOOD, {**GOOD, "file": "other.png"}]}
    with pytest.raises(SpecError, match="figure 'q1': key 'id' repeats"):
        parse_spec(twice)
    same_file = {"figure": [GOOD, {**GOOD, "id": "q2"}]}
    with pytest.raises(SpecError, match="figure 'q2': key 'file' repeats"):
        parse_spec(same_file)
    broken = tmp_path / "broken.toml"
    broken.write_text("[[figure]\nid = 1")
    with pytest.raises(SpecError, match="broken.toml: not valid TOML"):
        load_spec(broken)
    with pytest.raises(FileNotFoundError):
        load_spec(tmp_path / "missing.toml")


def test_every_method_accepts_its_parameters():
    for method, allowed in METHODS.items():
        entry = parse_spec(spec_of(method=method))[0]
        assert entry.method == method and entry.parameters == {}
        assert isinstance(allowed, set)


def test_class_names_of_any_data_are_accepted(tmp_path):
    """An image folder names its own classes; the report checks them against the data."""
    path = tmp_path / "spec.toml"
    path.write_text(
        '[[figure]]\nid = "maps"\ntitle = "t"\nquestion = "q"\nmethod = "feature_maps"\n'
        'file = "maps.png"\n[figure.parameters]\nface_class = "daisy"\n\n'
        '[[figure]]\nid = "sal"\ntitle = "t"\nquestion = "q"\nmethod = "saliency"\n'
        'file = "sal.png"\n[figure.parameters]\nclasses = ["rose", 2]\n'
    )
    entries = load_spec(path)
    assert entries[0].get("face_class") == "daisy"
    assert entries[1].get("classes") == ["rose", 2]
