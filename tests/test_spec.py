"""Tests of keras_fer_viz.spec: the packaged spec, every registered method, invalid entries."""

import inspect
import subprocess
import sys

import pytest
from conftest import ROOT

import keras_fer_viz as kfv
from keras_fer_viz.registry import spec_options
from keras_fer_viz.spec import (
    FIGURE_KINDS,
    METHODS,
    TRUST_METHODS,
    SpecError,
    default_spec_path,
    load_spec,
    method_parameters,
    parse_spec,
)

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
        "class_means",
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
    (dict(method="smooth_grad"), "key 'method' must be one of"),  # an alias is not a spec name
    (
        dict(method="deletion_insertion", parameters={"methods": ["saliency", "magic"]}),
        r"'methods' must be \"all\" or a non-empty list of distinct methods from \['saliency'",
    ),
    (
        dict(method="evidence", parameters={"methods": ["saliency", "saliency"]}),
        "'methods' must be",
    ),
    (dict(method="integrated_gradients", parameters={"baseline": "grey"}), "'baseline' must be"),
    (dict(method="lime", parameters={"kernel_width": 0}), "'kernel_width' must be a number > 0"),
    (
        dict(method="class_means", parameters={"explainer": "magic"}),
        r"'explainer' must be a registered method, one of \['saliency'",
    ),
    (dict(method="class_means", parameters={"samples": 3}), "'samples' does not apply"),
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


# --- Every registered method (kfv.EXPLAINERS) ---------------------------------------

# A valid value for each parameter a method's entry may set; an option not
# listed here (a method added later) is given its constructor's default.
VALUES = dict(
    classes=["Angry", 3],
    images_per_class=2,
    seed=1,
    layer="conv",
    reduce="mean",
    samples=8,
    noise=0.1,
    steps=4,
    baseline=0.5,
    segmentation="grid",
    kernel_width=0.5,
    hide_color=0,
    segmentation_options={"n_segments": 10},
    num_features=3,
    epochs=1,
)


def _value(cls, key):
    if key in VALUES:
        return VALUES[key]
    default = inspect.signature(cls.__init__).parameters[key].default
    assert default is not None and default is not inspect.Parameter.empty, (cls, key)
    return default


@pytest.mark.parametrize("method", list(kfv.EXPLAINERS))
def test_the_spec_accepts_every_registered_method_with_its_options(method):
    cls = kfv.EXPLAINERS[method]
    allowed = METHODS[method]
    options = set(spec_options(cls))
    assert allowed >= {"classes", "images_per_class", "seed"} | options
    assert ("conv_layer" in allowed) == ("layer" in options or method == "cam")
    assert allowed == method_parameters(cls)
    parameters = {k: _value(cls, k) for k in sorted(allowed - {"conv_layer"})}
    entry = parse_spec(spec_of(method=method, parameters=parameters))[0]
    assert entry.method == method and entry.parameters == parameters
    if "conv_layer" in allowed:
        parameters = {**{k: v for k, v in parameters.items() if k != "layer"}, "conv_layer": 2}
        assert parse_spec(spec_of(method=method, parameters=parameters))[0].get("conv_layer") == 2


def test_methods_and_trust_methods_come_from_the_registry():
    assert list(METHODS) == [*kfv.EXPLAINERS, *FIGURE_KINDS]
    assert TRUST_METHODS == tuple(kfv.EXPLAINERS)
    every = list(kfv.EXPLAINERS)
    for kind in ("deletion_insertion", "randomization", "evidence"):
        for methods in ("all", every, every[-1:]):
            entry = parse_spec(spec_of(method=kind, parameters={"methods": methods}))[0]
            assert entry.get("methods") == methods


def test_importing_the_spec_does_not_import_keras():
    code = (
        "import sys\n"
        "import keras_fer_viz.spec as spec\n"
        "spec.parse_spec({'figure': [dict(id='c', title='t', question='q',"
        " method='confusion_matrix', file='c.png')]})\n"
        "print('keras' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
