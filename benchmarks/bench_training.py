"""Training the reference CNN on JAX: jitted (as now) against op by op (as Keras left it).

Keras marks RandomRotation, RandomZoom and RandomTranslation as not
XLA-compatible on every backend, so `compile(jit_compile="auto")` of a model
holding them resolved to False, and on JAX every op of every step ran (and
was compiled) on its own. `keras_fer_viz.models.compile_augmentation_on_jax`
marks them compatible on JAX, where they are `keras.ops`. Each fit runs in a
fresh process on JAX (`keras_fer_viz.train`, 2 epochs, the same seed and
faces), so the times include the compiles a user pays; the two are run in
turn. The losses of the two runs must agree: the same steps and random draws,
where only the order of floating-point operations differs (XLA fuses and
reorders), which 88 steps of training let grow to about 1% (one step agrees to
1e-5: tests/test_models.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks._timing import row

FACES, EPOCHS, WIDTH = 1400, 2, 0.5

_FIT = """
import json, sys, time
import keras
import keras_fer_viz as kfv
from keras_fer_viz import training
jitted = sys.argv[1] == "jitted"
if not jitted:  # Keras' own setting: the augmentation layers say they cannot be jitted
    training.compile_augmentation_on_jax = lambda model: False
keras.utils.set_random_seed(0)
faces = kfv.synthetic_faces({faces}, seed=0)
model = kfv.fer_cnn(width={width})
for name in ("augment_rotate", "augment_zoom", "augment_shift"):
    model.get_layer(name).supports_jit = jitted
start = time.perf_counter()
history = kfv.train(model, faces.images, faces.labels, epochs={epochs}, verbose=0)
print(json.dumps({{"seconds": time.perf_counter() - start, "jit": bool(model.jit_compile),
                   "loss": history.history["loss"]}}))
"""


def _fit(kind: str) -> dict:
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # every compile paid, as on a first run
    script = _FIT.format(faces=FACES, width=WIDTH, epochs=EPOCHS)
    proc = subprocess.run(
        [sys.executable, "-c", script, kind], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run() -> list[dict]:
    runs = {"eager": [], "jitted": []}
    for _ in range(2):
        for kind in runs:
            runs[kind].append(_fit(kind))
    assert all(r["jit"] for r in runs["jitted"]) and not any(r["jit"] for r in runs["eager"])
    eager = sum(r["seconds"] for r in runs["eager"])
    jitted = sum(r["seconds"] for r in runs["jitted"])
    loss_gap = max(
        abs(a - b) / abs(b)
        for e, j in zip(runs["eager"], runs["jitted"], strict=True)
        for a, b in zip(j["loss"], e["loss"], strict=True)
    )
    return [
        row(
            f"JAX: kfv.train(fer_cnn(width={WIDTH})), {FACES:,} faces, {EPOCHS} epochs, fresh "
            "process: jitted vs op by op",
            f"{jitted / 2:.1f} s vs {eager / 2:.1f} s: {eager / jitted:.1f}x faster",
            "faster, same losses (relative gap < 2%)",
            jitted < eager and loss_gap < 0.02,
            "2 fits each, alternated; per fit op by op: "
            + ", ".join(f"{r['seconds']:.1f} s" for r in runs["eager"])
            + "; jitted: "
            + ", ".join(f"{r['seconds']:.1f} s" for r in runs["jitted"])
            + f"; largest relative gap between the two runs' epoch losses {loss_gap:.1e}",
        )
    ]
