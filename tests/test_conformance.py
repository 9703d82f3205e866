"""Conformance: every method on models nobody in this project designed.

The zoo of tests/zoo.py (keras.applications families at small inputs,
nested backbones, the Keras-2 mini-Xception .h5, a subclassed model, a
two-output model, a mixed-precision model, 1 and 3 channels, an odd size)
times every method: the gradient explainers, Grad-CAM and Grad-CAM++, CAM
through `gap_head`, LIME, feature maps, gradient ascent, the deletion and
insertion curves and the randomisation check. Each output must have the
right shape, be finite, lie in [0, 1] where it is a map, and not be
constant: a blank map on a model whose score varies is a failure, not an
explanation.

On TensorFlow the whole zoo runs; on JAX and PyTorch (tox runs the suite
once per backend) the entries whose `test_backends` name them (about two
minutes each), and the fresh-process mini-Xception. Every method runs
on every small model; the six large applications (slow: each method costs
a trace of several seconds through hundreds of layers on a 2-core CPU) share
the methods out, each method on one of them (a different one for each
neighbouring method in kfv.EXPLAINERS' order), which keeps the TensorFlow run
to a few minutes. ``KFV_CONFORMANCE_FULL=1`` runs every method on every
model, as ``python -m benchmarks.run conformance`` always does.

Process state matters: a model loaded from a Keras-2 file keeps Keras 2's
layer names (``add``, ``add_1``, ...), and an operation the library adds to
a graph collides with them only where Keras' name counters are still at
zero, in a fresh process. `test_mini_xception_in_a_fresh_process` loads the
file first thing in a new Python process, and sets the counters back to
zero (`keras.backend.clear_session`) before each method: that is where the
mini-Xception runs every method, not again in the test process.

The default layer of Grad-CAM and CAM (`last_conv_layer`) is checked
against each architecture: spatial, no spatial convolution after it
(squeeze-excite blocks pool globally inside every block), and, where the
zoo entry names them, one of the layers whose output the head pools.

Regenerate the .h5 file with ``python tests/fixtures/make_mini_xception.py``
(needs tf_keras); ``python -m benchmarks.run conformance`` prints the same
results as a table.
"""

import os

import keras
import pytest
import zoo

BACKEND = keras.backend.backend()
ENTRIES = zoo.entries(BACKEND)
_MODELS = {}


def model_of(entry):
    """Each zoo model is built once per test session."""
    if entry.name not in _MODELS:
        _MODELS[entry.name] = entry.build()
    return _MODELS[entry.name]


def images_of(entry, n=zoo.N_IMAGES, seed=0):
    return zoo.images_for(entry.shape, n, seed=seed, value_range=entry.value_range)


def _marks(entry):
    return [pytest.mark.slow] if entry.slow else []


FULL = os.environ.get("KFV_CONFORMANCE_FULL") == "1"
SHARES = 6  # the six large models share the methods out: each method on one


def _methods(entry):
    if FULL or not entry.slow:
        return zoo.METHODS
    k = [e.name for e in ENTRIES if e.slow].index(entry.name)
    return zoo.METHODS[k % SHARES :: SHARES]


# The Keras-2 mini-Xception runs every method in test_mini_xception_in_a_fresh_process
# (the same checks, with Keras' name counters at zero): not again here.
IN_A_FRESH_PROCESS = ("mini_xception_h5",)


def _pairs():
    for entry in ENTRIES:
        if entry.name in IN_A_FRESH_PROCESS:
            continue
        for method in _methods(entry):
            yield pytest.param(entry, method, id=f"{entry.name}-{method}", marks=_marks(entry))


@pytest.mark.parametrize(("entry", "method"), list(_pairs()))
def test_method_on_zoo_model(entry, method):
    model = model_of(entry)
    x = images_of(entry)
    refusal = zoo.REFUSALS.get((entry.name, method))
    if refusal is not None:
        # A documented limitation: refused with an error that says what to do.
        with pytest.raises(ValueError, match=refusal):
            zoo.run_method(method, entry, model, x)
        return
    zoo.check_method(method, entry, model, x)


@pytest.mark.parametrize(
    "entry",
    [pytest.param(e, id=e.name, marks=_marks(e)) for e in ENTRIES],
)
def test_last_conv_layer_is_before_global_pooling(entry):
    # MobileNetV3's head is GAP -> 1x1 conv -> 1x1 "logits" conv: the last
    # convolution of the graph has a 1x1 map, useless to Grad-CAM and CAM.
    problem = zoo.last_conv_problem(model_of(entry), entry.cam_layers)
    assert problem is None, problem


@pytest.mark.skipif(
    "mini_xception_h5" not in zoo.BY_NAME or not zoo.MINI_XCEPTION_H5.exists(),
    reason="tests/fixtures/mini_xception_k2.h5 missing: run tests/fixtures/make_mini_xception.py",
)
def test_mini_xception_in_a_fresh_process():
    outcomes = zoo.fresh_process_outcomes()
    failed = {m: o for m, o in outcomes.items() if o != "ok"}
    assert not failed, "\n".join(f"{m}: {o}" for m, o in failed.items())


def test_mini_xception_loads_with_keras2_names():
    model = model_of(zoo.BY_NAME["mini_xception_h5"])
    names = [layer.name for layer in model.layers]
    assert {"add", "add_1", "add_2", "add_3", "conv2d_1"} <= set(names)
    assert names[-1] == "predictions"


# JAX and PyTorch check fewer methods and batch sizes: each compiles anew there.
OTHER_BACKEND = BACKEND != "tensorflow"


@pytest.mark.parametrize(
    "method",
    ["saliency", "grad_cam", "feature_maps"]
    if OTHER_BACKEND
    else ["saliency", "integrated_gradients", "grad_cam", "grad_cam_plus_plus", "feature_maps"],
)
def test_subclassed_model_gives_the_maps_of_its_functional_twin(method):
    zoo.subclassed_twin_check(method)


@pytest.mark.parametrize("name", zoo.TWO_OUTPUT_CALLS)
def test_two_output_model_without_output_is_refused_naming_the_outputs(name):
    zoo.output_refused_check(name, model_of(zoo.BY_NAME["two_output"]))


def test_two_output_model_by_index_or_name_explains_that_output():
    zoo.output_selected_check(model_of(zoo.BY_NAME["two_output"]))


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in zoo.EXPANDING
        if n in ("smoothgrad", "integrated_gradients", "occlusion", "score_cam")
    ]
    if OTHER_BACKEND
    else zoo.EXPANDING,
)
def test_batch_size_none_is_automatic_and_changes_no_map(name):
    zoo.batch_size_none_check(name, model_of(zoo.BY_NAME["plain_gray"]))
