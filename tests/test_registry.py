"""Tests of keras_fer_viz.registry: one mapping of every method, and how a method joins it."""

import inspect
import re

import pytest

import keras_fer_viz as kfv
from keras_fer_viz import registry
from keras_fer_viz._explainer import Explainer

# The study's methods and those users expect from an explainability library
# (issue: "One registry of methods"), by spec name and class name.
EXPECTED = {
    "saliency": "Saliency",
    "smoothgrad": "SmoothGrad",
    "integrated_gradients": "IntegratedGradients",
    "gradient_x_input": "GradientXInput",
    "guided_backprop": "GuidedBackprop",
    "guided_grad_cam": "GuidedGradCAM",
    "occlusion": "Occlusion",
    "grad_cam": "GradCAM",
    "grad_cam_plus_plus": "GradCAMPlusPlus",
    "xgrad_cam": "XGradCAM",
    "hires_cam": "HiResCAM",
    "layer_cam": "LayerCAM",
    "score_cam": "ScoreCAM",
    "eigen_cam": "EigenCAM",
    "cam": "CAM",
    "lime": "Lime",
}


def test_every_method_is_registered_under_its_spec_name():
    assert {name: cls.__name__ for name, cls in kfv.EXPLAINERS.items()} == EXPECTED
    for name, cls in kfv.EXPLAINERS.items():
        assert cls is getattr(kfv, cls.__name__)  # exported
        assert cls.name == name and issubclass(cls, Explainer)


def test_every_exported_explainer_is_registered():
    exported = [getattr(kfv, n) for n in kfv.__all__]
    classes = [c for c in exported if isinstance(c, type) and issubclass(c, Explainer)]
    assert sorted(c.__name__ for c in classes) == sorted(EXPECTED.values())


def test_order_is_the_export_order_and_stable():
    names = list(kfv.EXPLAINERS)
    assert names[:3] == ["saliency", "smoothgrad", "integrated_gradients"]
    exports = [n for n in kfv._EXPORTS if n in EXPECTED.values()]
    assert [kfv.EXPLAINERS[n].__name__ for n in names] == exports
    assert len(kfv.EXPLAINERS) == len(EXPECTED) == len(set(names))


def test_lookup_aliases_and_unknown_names():
    assert kfv.EXPLAINERS["smooth_grad"] is kfv.SmoothGrad
    assert "smooth_grad" in kfv.EXPLAINERS and "smooth_grad" not in list(kfv.EXPLAINERS)
    assert 3 not in kfv.EXPLAINERS
    with pytest.raises(KeyError, match=r"Unknown method 'gradcam'.*'grad_cam'"):
        kfv.EXPLAINERS["gradcam"]
    with pytest.raises(TypeError):
        kfv.EXPLAINERS["saliency"] = kfv.Saliency  # read-only


def test_spec_options_come_from_the_constructor():
    assert registry.spec_options(kfv.GradCAM) == ("layer",)
    assert registry.spec_options(kfv.Saliency) == ("reduce",)
    assert set(registry.spec_options(kfv.SmoothGrad)) == {"samples", "noise", "reduce", "seed"}
    assert registry.spec_options(kfv.CAM) == ()
    for cls in kfv.EXPLAINERS.values():
        assert not {"model", "normalize", "batch_size", "output"} & set(registry.spec_options(cls))


def test_register_refuses_bad_and_taken_names():
    class NoName(Explainer):
        pass

    with pytest.raises(ValueError, match=r"snake_case spec name.*Received: ''"):
        registry.register(NoName)

    class Camel(Explainer):
        name = "GradCam"

    with pytest.raises(ValueError, match="Received: 'GradCam'"):
        registry.register(Camel)

    class Impostor(Explainer):
        name = "grad_cam"

    with pytest.raises(ValueError, match="registered twice"):
        registry.register(Impostor)
    assert kfv.EXPLAINERS["grad_cam"] is kfv.GradCAM


def test_a_plug_in_method_joins_the_registry():
    class Constant(kfv.Saliency):
        """A user's method: one class and one decorator."""

        name = "constant_test_plugin"

    try:
        assert registry.register(Constant) is Constant
        assert list(kfv.EXPLAINERS)[-1] == "constant_test_plugin"
        assert kfv.EXPLAINERS["constant_test_plugin"] is Constant
    finally:
        registry._REGISTERED.pop("constant_test_plugin", None)
        kfv.EXPLAINERS._table = None  # as it was before the plug-in
    assert "constant_test_plugin" not in kfv.EXPLAINERS


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_method_documents_its_paper_options_and_raw_units(name):
    cls = kfv.EXPLAINERS[name]
    doc = inspect.getdoc(cls)
    assert re.search(r"\(\d{4}\)", doc), f"{name}: no paper (Author (year), title)"
    assert "Args:" in doc and "Example:" in doc and ">>>" in doc
    if "normalize" in inspect.signature(cls).parameters:
        assert "normalize:" in doc, f"{name}: normalize=False's raw units undocumented"
    for option in registry.spec_options(cls):
        assert f"{option}:" in doc, f"{name}: option {option!r} undocumented"
