"""Speed of the gradient explainers on the reference CNN.

1. Against the bound: at batch 256, Saliency and GradCAM take <= 1.2x the
   time of one bare compiled forward+backward pass (a `tf.function` with a
   gradient tape, nothing else), and SmoothGrad(25) <= 1.3x of 25 of them.
2. Against tf-keras-vis 0.8.7 (Gradcam and Saliency with ReplaceToLinear,
   on a Functional copy of the model since it fails on Sequential ones): one
   face, seven faces (one per emotion, the figure case) and 256 faces.
   tf-keras-vis is not a dependency: ``pip install tf-keras-vis==0.8.7``
   before running this benchmark; without it those rows say so.

Both sides are timed in steady state (explainer built and traced once, then
the median of repeated calls), on the same model, faces and targets.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from benchmarks._timing import median_time, row
from keras_fer_viz import GradCAM, Saliency, SmoothGrad, fer_cnn, synthetic_faces


def _bare_pass(model):
    """One compiled forward+backward pass: d(sum of top logits) / d(pixels)."""

    @tf.function(input_signature=[tf.TensorSpec((None, 48, 48, 1), tf.float32)])
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x, training=False)
            total = tf.reduce_sum(tf.reduce_max(y, axis=-1))
        return tape.gradient(total, x)

    return lambda x: grad(x).numpy()


def _tf_keras_vis(model):
    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.saliency import Saliency as TkvSaliency
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        return None
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    gradcam = Gradcam(copy, model_modifier=ReplaceToLinear(), clone=True)
    saliency = TkvSaliency(copy, model_modifier=ReplaceToLinear(), clone=True)
    return dict(
        gradcam=lambda x, t: gradcam(
            CategoricalScore(list(t)), x, penultimate_layer="block3_conv2"
        ),
        saliency=lambda x, t: saliency(CategoricalScore(list(t)), x),
    )


def run() -> list[dict]:
    keras.utils.set_random_seed(0)
    model = fer_cnn()
    faces = synthetic_faces(256, seed=0)
    x, t = faces.images.astype(np.float32), faces.labels
    rows = []

    bare = _bare_pass(model)
    saliency, gradcam = Saliency(model, batch_size=256), GradCAM(model, batch_size=256)
    smooth = SmoothGrad(model, samples=25)  # 20 faces (500 inputs) per call
    t_bare = median_time(lambda: bare(x), repeat=7)
    t_sal = median_time(lambda: saliency.explain(x, t), repeat=7)
    t_cam = median_time(lambda: gradcam.explain(x, t), repeat=7)
    t_smooth = median_time(lambda: smooth.explain(x, t), repeat=3)
    for name, took, base, bound, k in (
        ("Saliency", t_sal, t_bare, 1.2, 1),
        ("GradCAM", t_cam, t_bare, 1.2, 1),
        ("SmoothGrad(25)", t_smooth, t_bare, 1.3, 25),
    ):
        ratio = took / (k * base)
        rows.append(
            row(
                f"{name}, 256 faces vs {k if k > 1 else 'one'} bare compiled forward+backward "
                f"pass{'es' if k > 1 else ''} at batch 256",
                f"{took:.3f} s vs {k * base:.3f} s: {ratio:.2f}x",
                f"<= {bound}x",
                ratio <= bound,
                "median of 7 (3 for SmoothGrad); one compiled call per 256 images"
                if k == 1
                else "noise samples batched with the images; bare pass timed at batch 256",
            )
        )

    other = _tf_keras_vis(model)
    if other is None:
        rows.append(
            row(
                "vs tf-keras-vis 0.8.7",
                "not run",
                "-",
                None,
                "pip install tf-keras-vis==0.8.7 to compare",
            )
        )
        return rows
    one_per_class = np.array([np.flatnonzero(t == c)[0] for c in range(7)])
    cases = [("1 face", one_per_class[:1]), ("7 faces", one_per_class), ("256 faces", None)]
    targets = {"1 face": 4.0, "7 faces": 4.0, "256 faces": None}
    ours = {"gradcam": gradcam, "saliency": saliency}
    big_bound = {"gradcam": 3.0, "saliency": 2.0}
    for method in ("gradcam", "saliency"):
        for label, pick in cases:
            xs, ts = (x, t) if pick is None else (x[pick], t[pick])
            repeat = 7 if pick is None else 15
            mine, theirs = ours[method], other[method]
            t_ours = median_time(lambda: mine.explain(xs, ts), repeat=repeat)  # noqa: B023
            t_them = median_time(lambda: theirs(xs, ts), repeat=repeat)  # noqa: B023
            speedup = t_them / t_ours
            bound = targets[label] or big_bound[method]
            rows.append(
                row(
                    f"{'GradCAM' if method == 'gradcam' else 'Saliency'}, {label}: "
                    "keras-fer-viz vs tf-keras-vis 0.8.7",
                    f"{t_ours * 1e3:.1f} ms vs {t_them * 1e3:.1f} ms: {speedup:.1f}x faster",
                    f">= {bound:g}x",
                    speedup >= bound,
                    f"median of {repeat}; explainer objects built once on both sides",
                )
            )
    return rows
