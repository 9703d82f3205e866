"""The gradient explainers on every backend of Keras, against that backend's bare pass.

For each backend that can be imported (TensorFlow, JAX, PyTorch), in a
process of its own (Keras picks its backend once per process), at batch
256 on the reference CNN: Saliency, GradCAM, GradCAMPlusPlus, SmoothGrad
(25 samples) and IntegratedGradients (32 steps) against one bare forward +
backward pass written directly in that framework (target: <= 1.3x, per
sample for SmoothGrad and per step for IntegratedGradients):

- TensorFlow: a `tf.function` with a GradientTape;
- JAX: `jax.jit(jax.grad(...))` of the model's `stateless_call`;
- PyTorch: the model called eagerly and `torch.autograd.grad` (PyTorch's
  usual way of running a Keras model; nothing is compiled on either side).

Both sides are timed in steady state (built and compiled once, then the
median of repeated calls), on the same model, faces and targets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks._timing import row

BACKENDS = ("tensorflow", "jax", "torch")
BOUND = 1.3
ROOT = Path(__file__).resolve().parent.parent


def _bare_pass(model):
    """d(sum of each image's top output) / d(pixels), in the backend's own terms."""
    import keras

    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec((None, 48, 48, 1), tf.float32)])
        def grad(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                total = tf.reduce_sum(tf.reduce_max(model(x, training=False), axis=-1))
            return tape.gradient(total, x)

        return lambda x: grad(x).numpy()
    if name == "jax":
        import jax
        import jax.numpy as jnp
        import numpy as np

        trainable = [v.value for v in model.trainable_variables]
        frozen = [v.value for v in model.non_trainable_variables]

        def total(x, trainable, frozen):
            y, _ = model.stateless_call(trainable, frozen, x, training=False)
            return jnp.sum(jnp.max(y, axis=-1))

        grad = jax.jit(jax.grad(total))
        return lambda x: np.asarray(grad(x, trainable, frozen))
    import torch

    def grad(x):
        x = torch.as_tensor(x).requires_grad_(True)
        total = model(x, training=False).max(dim=-1).values.sum()
        return torch.autograd.grad(total, [x])[0].numpy()

    return grad


def measure() -> list[dict]:
    """The rows for the backend this process runs on."""
    import keras
    import numpy as np

    from benchmarks._timing import median_time
    from keras_fer_viz import (
        GradCAM,
        GradCAMPlusPlus,
        IntegratedGradients,
        Saliency,
        SmoothGrad,
        fer_cnn,
        synthetic_faces,
    )

    name = keras.backend.backend()
    keras.utils.set_random_seed(0)
    model = fer_cnn()
    faces = synthetic_faces(256, seed=0)
    x, t = faces.images.astype(np.float32), faces.labels
    bare = _bare_pass(model)
    t_bare = median_time(lambda: bare(x), repeat=7)
    cases = [
        ("Saliency", Saliency(model, batch_size=256), 1, 7),
        ("GradCAM", GradCAM(model, batch_size=256), 1, 7),
        ("GradCAMPlusPlus", GradCAMPlusPlus(model, batch_size=256), 1, 7),
        ("SmoothGrad(25)", SmoothGrad(model, samples=25), 25, 3),
        ("IntegratedGradients(32)", IntegratedGradients(model, steps=32), 32, 3),
    ]
    rows = []
    for label, explainer, k, repeat in cases:
        took = median_time(lambda e=explainer: e.explain(x, t), repeat=repeat)
        ratio = took / (k * t_bare)
        rows.append(
            row(
                f"{name}: {label}, 256 faces vs {k if k > 1 else 'one'} bare forward+backward "
                f"pass{'es' if k > 1 else ''} at batch 256",
                f"{took:.3f} s vs {k * t_bare:.3f} s: {ratio:.2f}x",
                f"<= {BOUND}x",
                ratio <= BOUND,
                f"median of {repeat}; bare pass {1000 * t_bare:.0f} ms",
            )
        )
    return rows


def run() -> list[dict]:
    rows = []
    for backend in BACKENDS:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        code = "import json, benchmarks.bench_backends as b; print(json.dumps(b.measure()))"
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            missing = "ModuleNotFoundError" in last  # not installed: not a failure
            rows.append(
                row(f"{backend}", "not run", f"<= {BOUND}x", None if missing else False, last[:200])
            )
            continue
        rows += json.loads(done.stdout.strip().splitlines()[-1])
    return rows
