"""Peak memory and speed of the methods that expand their input.

SmoothGrad and integrated gradients run the model on `samples` (or `steps`)
copies of every image. Batched naively, 8 images of 224x224x3 through
ResNet50V2 with 64 samples are 512 forward and backward passes held in
memory at once: tens of GB. The library must chunk them by image size
(DESIGN.md: "Bound memory").

1. Peak resident memory of ``SmoothGrad(samples=64)`` and
   ``IntegratedGradients(steps=64)`` on 8 images of 224x224x3 through
   ``keras.applications.ResNet50V2(weights=None)`` (target: peak under
   6 GB), next to the resident memory of the same process after it built
   the model and ran one bare forward pass on the 8 images. Each case runs
   in a fresh subprocess, watched from here: one that grows past
   `LIMIT_GB` is killed and reported as such, so that a method that does
   not bound its memory cannot take a shared machine down.
2. Speed at 48x48 on the reference CNN (``kfv.fer_cnn()``, 64 synthetic
   faces) of SmoothGrad(25) and IntegratedGradients(32), the defaults,
   against as many bare compiled forward+backward passes (TensorFlow), so
   that chunking for memory is seen not to cost speed on small images.

Run ``python -m benchmarks.run memory``; ``python -m benchmarks.bench_memory
CASE`` runs one case in this process and prints it as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._timing import proc_status, row

ROOT = Path(__file__).resolve().parent.parent
LIMIT_GB = float(os.environ.get("KFV_BENCH_MEMORY_LIMIT_GB", "9"))
TARGET_GB = 6.0
TIMEOUT_S = 1800
REPEAT = 5
GB = 1024**3

# case -> (label, what the child runs)
BIG = {
    "smoothgrad_224": "SmoothGrad(samples=64)",
    "ig_224": "IntegratedGradients(steps=64)",
}
SMALL = {
    "smoothgrad_48": "SmoothGrad(samples=25)",
    "ig_48": "IntegratedGradients(steps=32)",
}


def _rss_of(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _big_case(case: str) -> dict:
    """Builds ResNet50V2 at 224, runs a bare forward pass, then the method."""
    import keras
    import numpy as np

    import keras_fer_viz as kfv

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50V2(weights=None, input_shape=(224, 224, 3))
    rng = np.random.default_rng(0)
    # Smooth images in the model's [-1, 1] input range: low-resolution noise, upsampled.
    small = rng.uniform(-1, 1, (8, 7, 7, 3)).astype(np.float32)
    x = np.asarray(keras.ops.image.resize(small, (224, 224)), dtype=np.float32)
    model(x, training=False)
    base = proc_status()
    # Said before the method runs: a case killed for its memory still reports it.
    print("BASE " + json.dumps(dict(base_rss=base["VmRSS"], base_hwm=base["VmHWM"])), flush=True)
    if case == "smoothgrad_224":
        explainer = kfv.SmoothGrad(model, samples=64)
    else:
        explainer = kfv.IntegratedGradients(model, steps=64)
    start = time.perf_counter()
    maps = explainer.explain(x)
    took = time.perf_counter() - start
    peak = proc_status()
    return dict(
        base_rss=base["VmRSS"],
        base_hwm=base["VmHWM"],
        peak=peak["VmHWM"],
        seconds=took,
        shape=list(maps.shape),
        finite=bool(np.isfinite(maps).all()),
    )


def _small_case(case: str) -> dict:
    """SmoothGrad(25) or IG(32) on 64 faces through fer_cnn, against bare passes."""
    import keras
    import numpy as np

    import keras_fer_viz as kfv

    keras.utils.set_random_seed(0)
    model = kfv.fer_cnn()
    faces = kfv.synthetic_faces(64, seed=0)
    x, t = faces.images.astype(np.float32), faces.labels
    if case == "smoothgrad_48":
        explainer, k = kfv.SmoothGrad(model, samples=25), 25
    else:
        explainer, k = kfv.IntegratedGradients(model, steps=32), 32
    explainer.explain(x, t)  # built and traced before timing
    out = dict(k=k, backend=keras.backend.backend())
    bare = _bare_passes(model, np.repeat(x, k, axis=0)) if out["backend"] == "tensorflow" else None
    # Alternated, so that load from other processes hits both sides alike.
    mine, theirs = [], []
    for _ in range(REPEAT):
        start = time.perf_counter()
        explainer.explain(x, t)
        mine.append(time.perf_counter() - start)
        if bare is not None:
            start = time.perf_counter()
            bare()
            theirs.append(time.perf_counter() - start)
    out["seconds"] = statistics.median(mine)
    if theirs:
        out["bare_seconds"] = statistics.median(theirs)
    out["peak"] = proc_status()["VmHWM"]
    out["load"] = os.getloadavg()[0]
    return out


def _bare_passes(model, inputs, per_call=512):
    """Compiled forward+backward passes over `inputs`, in calls of `per_call` (TensorFlow)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, *inputs.shape[1:]), tf.float32)])
    def grad(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            total = tf.reduce_sum(tf.reduce_max(model(images, training=False), axis=-1))
        return tape.gradient(total, images)

    def bare():
        for i in range(0, len(inputs), per_call):
            grad(inputs[i : i + per_call]).numpy()

    bare()  # traced before timing
    return bare


def _child(case: str) -> dict:
    return _big_case(case) if case in BIG else _small_case(case)


def _run_case(case: str) -> dict:
    """Runs one case in a fresh process; kills it past LIMIT_GB of resident memory."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    # Files, not pipes: a child that fills a pipe while we poll would block.
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_memory", case],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=err,
        text=True,
    )
    seen, killed, start = 0, False, time.monotonic()
    while proc.poll() is None:
        rss = _rss_of(proc.pid)
        seen = max(seen, rss)
        if rss > LIMIT_GB * GB:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        if time.monotonic() - start > TIMEOUT_S:
            proc.kill()
            break
        time.sleep(0.05)
    proc.wait()
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read(), err.read()
    out.close()
    err.close()
    result = dict(case=case, killed=killed, seen=seen, returncode=proc.returncode)
    for line in stdout.splitlines():
        if line.startswith("BASE "):
            result.update(json.loads(line[len("BASE ") :]))
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            result.update(json.loads(line))
            break
    else:
        result["error"] = (stderr.strip().splitlines() or ["no output"])[-1][:300]
    result["wall"] = time.monotonic() - start
    return result


def _gb(n) -> str:
    return f"{n / GB:.2f} GB"


def run() -> list[dict]:
    rows = []
    for case, label in BIG.items():
        r = _run_case(case)
        what = f"{label}, 8 images 224x224x3, ResNet50V2(weights=None): peak RSS"
        if r["killed"]:
            rows.append(
                row(
                    what,
                    f"killed at over {LIMIT_GB:g} GB",
                    f"<= {TARGET_GB:g} GB",
                    False,
                    f"resident memory passed the {LIMIT_GB:g} GB limit of this benchmark "
                    f"after {r['wall']:.0f} s (process start included) and was killed; "
                    + (
                        f"after build + bare forward: {_gb(r['base_rss'])}"
                        if "base_rss" in r
                        else "killed before the model was built"
                    ),
                )
            )
        elif "peak" not in r:
            rows.append(
                row(what, "failed", f"<= {TARGET_GB:g} GB", False, r.get("error", "no result"))
            )
        else:
            rows.append(
                row(
                    what,
                    f"{_gb(r['peak'])} (after build + bare forward: {_gb(r['base_rss'])})",
                    f"<= {TARGET_GB:g} GB",
                    r["peak"] <= TARGET_GB * GB,
                    f"+{_gb(r['peak'] - r['base_rss'])} over the model's own; "
                    f"peak before the method {_gb(r['base_hwm'])}; explain took "
                    f"{r['seconds']:.0f} s; fresh process per case",
                )
            )
    for case, label in SMALL.items():
        r = _run_case(case)
        what = f"{label}, 64 faces 48x48, fer_cnn: time"
        if "seconds" not in r:
            rows.append(row(what, "failed", "-", False, r.get("error", "no result")))
            continue
        if "bare_seconds" in r:
            ratio = r["seconds"] / r["bare_seconds"]
            rows.append(
                row(
                    f"{what} vs {r['k']} x 64 bare compiled forward+backward passes",
                    f"{r['seconds']:.3f} s vs {r['bare_seconds']:.3f} s: {ratio:.2f}x",
                    "<= 1.3x",
                    ratio <= 1.3,
                    f"median of {REPEAT}, alternated; bare passes in calls of 512 inputs; peak RSS "
                    f"{_gb(r['peak'])}; load average {r['load']:.1f} on {os.cpu_count()} cores",
                )
            )
        else:
            rows.append(
                row(
                    what,
                    f"{r['seconds']:.3f} s",
                    "-",
                    None,
                    f"{r['backend']}; median of {REPEAT}; peak RSS {_gb(r['peak'])}",
                )
            )
    return rows


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1])), flush=True)
