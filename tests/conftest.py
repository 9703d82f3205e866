"""Shared test settings and fixtures."""

import os

from hypothesis import HealthCheck, Phase, settings

# Derandomised in CI (same examples every run); a few more examples locally.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=20,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow]
)
# JAX and PyTorch runs (tox): fewer examples per property. Each example builds
# a new model, which JAX compiles anew; the properties are backend-neutral
# math, checked with the full "ci" count on TensorFlow.
settings.register_profile("backend", parent=settings.get_profile("ci"), max_examples=5)
# Quick triage: no shrinking or explaining of failures.
settings.register_profile(
    "triage",
    parent=settings.get_profile("ci"),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


# The small trained model of tests/fixtures/ (made by make_fixtures.py) and
# the faces the figure tests explain: inference only, so figures are the same
# in every run.
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def fixture_model():
    import keras

    return keras.saving.load_model(FIXTURES / "fer_cnn_small.keras")


@pytest.fixture(scope="session")
def fixture_cam_model():
    import keras

    return keras.saving.load_model(FIXTURES / "fer_cnn_small_gap.keras")


@pytest.fixture(scope="session")
def fixture_history():
    return json.loads((FIXTURES / "history.json").read_text())


@pytest.fixture(scope="session")
def report_faces():
    from keras_fer_viz.data import synthetic_faces

    return synthetic_faces(700, seed=1)


@pytest.fixture(scope="session")
def fixture_epoch_maps():
    import numpy as np

    with np.load(FIXTURES / "epoch_maps.npz") as data:
        kept = {k: data[k] for k in data.files}
    kept["maps"] = kept["maps"].astype("float32")
    kept["epochs"] = kept["epochs"].tolist()
    return kept


@pytest.fixture()
def report_context(
    fixture_model, fixture_cam_model, fixture_history, report_faces, fixture_epoch_maps
):
    from keras_fer_viz.report import ReportContext

    return ReportContext(
        fixture_model,
        report_faces.images,
        report_faces.labels,
        history=fixture_history,
        cam_model=fixture_cam_model,
        epoch_maps={"grad_cam": fixture_epoch_maps},
        evidence=report_faces.evidence,
    )
