"""Every method's output on the fixture model, for comparing backends.

`compute` runs on whatever backend Keras was started with.
tests/fixtures/make_fixtures.py stores its TensorFlow results in
tests/fixtures/backend_maps.npz, and test_backends.py computes them again
on the backend under test (tox runs the tests on each) and compares.
"""

from __future__ import annotations

import numpy as np

FACES = dict(n=14, seed=3)

# Methods whose maps are gradients with respect to the input pixels. A ReLU
# whose input lies within rounding error of zero (1.6e-6 was seen) is on in
# one backend and off in another, and the gradient over its receptive field
# jumps: for these, a few pixels may differ by more than the tolerance.
# Filter ascent climbs that gradient (5 steps: 5 of 6,912 pixels seen off by
# more than 1e-4 on JAX, by 0.015 at most).
INPUT_GRADIENTS = (
    "saliency",
    "smoothgrad",
    "integrated_gradients",
    "gradient_x_input",
    "guided_backprop",
    "guided_grad_cam",
    "filters",
)
# Options that keep the run short; every other method runs with its defaults.
OPTIONS = {
    "smoothgrad": {"samples": 10},
    "integrated_gradients": {"steps": 16},
    "lime": {"samples": 300, "verbose": 0},
}
# LIME (300 model calls per face) explains the first three faces only.
IMAGES = {"lime": 3}


def compute(model, cam_model) -> dict:
    """Every registered method (kfv.EXPLAINERS) and every other tool, on the fixture model."""
    import keras_fer_viz as kfv
    from keras_fer_viz import metrics

    faces = kfv.synthetic_faces(**FACES)
    x, y = faces.images, faces.labels
    third = kfv.conv_layers(model)[2]
    out = {"probabilities": model.predict(x, verbose=0)}
    for name, cls in kfv.EXPLAINERS.items():
        n = IMAGES.get(name, len(x))
        explainer = cls(cam_model if name == "cam" else model, **OPTIONS.get(name, {}))
        out[name] = explainer.explain(x[:n], y[:n])
    out["grad_cam_raw"] = kfv.GradCAM(model, normalize=False).explain(x, y)
    out["feature_maps"] = kfv.feature_maps(model, third, x[:2])
    # Gradient ascent: 5 steps. Near an optimum (a ReLU at zero within
    # rounding, a saturated class) the normalised gradient is mostly rounding
    # error and the ascent is chaotic: after 20 steps the images of two
    # backends, or of one backend on two CPUs, differ by up to 0.07 (filters)
    # or tens of grey levels (classes); after 5 by 1e-4.
    out["filters"] = kfv.maximize_activation(model, third, [0, 5, 9], steps=5, verbose=0)
    out["class_images"] = kfv.maximize_activation(model, "predictions", [0, 3], steps=5, verbose=0)
    # The curves follow numpy-made maps: a map computed here would differ from
    # TensorFlow's in the last digits and reorder its tied pixels.
    order = metrics.random_maps(x, seed=0)
    out["deletion"] = metrics.deletion_curve(model, x, order, y, steps=10).scores
    out["insertion"] = metrics.insertion_curve(model, x, order, y, steps=10).scores
    check = metrics.randomization_check(
        kfv.GradCAM, model, x[:2], y[:2], layers=["predictions", "dense3"]
    )
    out["randomization_spearman"] = check.spearman
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def compared_exactly() -> list[str]:
    """Every output compared within 1e-4 everywhere (all but the input gradients)."""
    import keras_fer_viz as kfv

    names = ["probabilities", *kfv.EXPLAINERS, "grad_cam_raw", "feature_maps", "class_images"]
    names += ["deletion", "insertion", "randomization_spearman"]
    return [n for n in names if n not in INPUT_GRADIENTS]
