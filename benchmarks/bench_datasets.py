"""What explaining a whole dataset costs: speed, memory, and JAX compiles.

`kfv.explain_dataset` streams a dataset through one method in chunks of
512 and keeps per-cell sums of the maps (keras_fer_viz/datasets.py). Three
measurements, each in a fresh subprocess:

1. Throughput on FER2013's size, 35,887 synthetic faces
   (``kfv.synthetic_faces(35887, seed=0)``, as arrays) through
   ``explain_dataset("grad_cam", kfv.fer_cnn(), (x, y))``, against the bare
   passes a hand-written loop makes: ``kfv.GradCAM(model).explain`` over
   the same 512-face chunks, maps thrown away. Target: explain_dataset
   within 1.2x of the bare loop's time. explain_dataset also runs a
   forward pass per chunk for the predictions (the confusion matrix); the
   notes split its time into predictions, maps and the rest. Both sides
   build (and trace) their explainer inside the timing; each is timed once
   (minutes each on two cores). Also, for scale, a bare compiled
   forward+backward pass to the pixels (TensorFlow) on the first 4,096
   faces. The backend is ``KERAS_BACKEND``, TensorFlow where unset.
2. Peak resident memory (``getrusage(RUSAGE_SELF).ru_maxrss``, its high
   water mark reset just before the call) of explain_dataset over 3,589
   and 35,887 faces from a generator that makes them 512 at a time
   (``synthetic_faces(512, seed=i)``), so the data are never all in
   memory; with ``out=None`` and with ``out=DIR``. Growth is the peak
   during the call less the resident memory before it (model built, one
   forward pass run). Target: growth under 200 MB, whatever the size. For
   comparison, a hand loop of ``GradCAM(model).explain`` over the same
   generator (3,589 faces): the memory of the compiled passes alone.
3. JAX compiles: a fresh ``GradCAM(model)`` and ``Saliency(model)`` explain
   batches of 10 sizes in turn (`SIZES`), with
   ``_gradients.PAD_JAX_BATCHES`` off (one compile per size, as before) and
   on (batches padded to powers of two), in one process
   (``KERAS_BACKEND=jax``): ``explainer._fn.trace_count()``, each size's
   first-call time (compile included), a second call's time (what padding
   costs once compiled), and the largest difference between the maps.

Run ``python -m benchmarks.run datasets``; ``python -m benchmarks.bench_datasets
CASE`` runs one case in this process and prints it as JSON.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._timing import proc_status, row

ROOT = Path(__file__).resolve().parent.parent
FACES = 35_887  # FER2013's size
SMALL_FACES = 3_589  # its tenth (the size of its test split)
CHUNK = 512
FWD_BWD_FACES = 4_096
RATIO_TARGET = 1.2
GROWTH_TARGET_MB = 200
SIZES = (1, 3, 7, 12, 20, 33, 50, 64, 100, 129)
TIMEOUT_S = 1800
MB = 1024**2

MEMORY = {
    "memory_small": (SMALL_FACES, False),
    "memory_full": (FACES, False),
    "memory_small_out": (SMALL_FACES, True),
    "memory_full_out": (FACES, True),
    # A hand loop, GradCAM(model).explain on each batch: the memory of the passes alone.
    "memory_bare": (SMALL_FACES, False),
}


def _quiet():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _model():
    import keras

    import keras_fer_viz as kfv

    keras.utils.set_random_seed(0)
    return kfv.fer_cnn()


def _cpu() -> float:
    """CPU seconds of this process, all threads."""
    return time.process_time()


def _throughput() -> dict:
    import keras
    import numpy as np

    import keras_fer_viz as kfv
    from keras_fer_viz import _gradients

    start = time.perf_counter()
    faces = kfv.synthetic_faces(FACES, seed=0)
    generated = time.perf_counter() - start
    x, y = faces.images, faces.labels
    del faces  # the evidence masks
    model = _model()
    # Warm-up: the prediction function (cached per model) and the runtime.
    # Each explain_dataset and each hand loop builds and traces its own
    # explainer, inside its timing.
    kfv.explain_dataset("grad_cam", model, (x[:CHUNK], y[:CHUNK]), verbose=False)
    kfv.GradCAM(model).explain(x[:CHUNK], y[:CHUNK])

    def bare():
        explainer = kfv.GradCAM(model)
        for s in range(0, len(x), CHUNK):
            explainer.explain(x[s : s + CHUNK], y[s : s + CHUNK])

    out = dict(backend=keras.backend.backend(), generated=generated, faces=len(x))
    load = [os.getloadavg()[0]]
    wall, cpu = time.perf_counter(), _cpu()
    bare()
    out["bare"], out["bare_cpu"] = time.perf_counter() - wall, _cpu() - cpu
    load.append(os.getloadavg()[0])

    # Times the predictions and the maps inside explain_dataset, by wrapping
    # the two functions it calls per chunk.
    spent = dict(predict=0.0, maps=0.0)
    predict, explain = _gradients.predict, kfv.GradCAM.explain

    def timed(key, fn):
        def wrapper(*args, **kwargs):
            s = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - s

        return wrapper

    _gradients.predict = timed("predict", predict)
    kfv.GradCAM.explain = timed("maps", explain)
    try:
        wall, cpu = time.perf_counter(), _cpu()
        r = kfv.explain_dataset("grad_cam", model, (x, y), verbose=False)
        out["dataset"], out["dataset_cpu"] = time.perf_counter() - wall, _cpu() - cpu
    finally:
        _gradients.predict, kfv.GradCAM.explain = predict, explain
    load.append(os.getloadavg()[0])
    out.update(spent)
    out["counted"] = int(r.counts.sum())
    out["accuracy"] = float(np.trace(r.counts) / r.counts.sum())
    if out["backend"] == "tensorflow":
        n = min(FWD_BWD_FACES, len(x))
        passes = _fwd_bwd(model, x[:n], y[:n])
        wall, cpu = time.perf_counter(), _cpu()
        passes()
        out["fwd_bwd"], out["fwd_bwd_cpu"], out["fwd_bwd_faces"] = (
            time.perf_counter() - wall,
            _cpu() - cpu,
            n,
        )
    out["load"] = max(load)
    return out


def _fwd_bwd(model, x, y):
    """Compiled forward+backward passes to the pixels, per 512-face chunk (TensorFlow)."""
    import numpy as np
    import tensorflow as tf

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, *x.shape[1:]), tf.float32),
            tf.TensorSpec((None,), tf.int32),
        ]
    )
    def grad(images, targets):
        with tf.GradientTape() as tape:
            tape.watch(images)
            logits = model(images, training=False)
            total = tf.reduce_sum(tf.gather(logits, targets, axis=1, batch_dims=1))
        return tape.gradient(total, images)

    x, y = x.astype(np.float32), y.astype(np.int32)

    def passes():
        for s in range(0, len(x), CHUNK):
            grad(x[s : s + CHUNK], y[s : s + CHUNK]).numpy()

    grad(x[:CHUNK], y[:CHUNK])  # traced before timing
    return passes


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _memory(case: str) -> dict:
    import numpy as np

    import keras_fer_viz as kfv

    n, to_disk = MEMORY[case]
    bare = case == "memory_bare"
    model = _model()
    first = kfv.synthetic_faces(CHUNK, seed=0)
    model(first.images.astype(np.float32), training=False)
    del first

    marks = []  # the high water mark each time a batch is asked for

    def batches():
        for i, s in enumerate(range(0, n, CHUNK)):
            marks.append(proc_status()["VmHWM"])
            faces = kfv.synthetic_faces(min(CHUNK, n - s), seed=i)
            yield faces.images, faces.labels

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "maps" if to_disk else None
        before = proc_status()["VmRSS"]
        # Resets the high water mark (VmHWM, and ru_maxrss with it) to the
        # current resident memory: the peak read after is the call's.
        Path("/proc/self/clear_refs").write_text("5")
        start = time.perf_counter()
        if bare:
            r = None
            explainer = kfv.GradCAM(model)
            for images, labels in batches():
                explainer.explain(images, labels)
        else:
            r = kfv.explain_dataset("grad_cam", model, batches(), out=out, verbose=False)
        seconds = time.perf_counter() - start
        peak, status = _maxrss(), proc_status()
        written = sum(f.stat().st_size for f in out.iterdir()) if to_disk else 0
    return dict(
        faces=n,
        out=to_disk,
        before=before,
        peak=peak,
        hwm=status["VmHWM"],
        after=status["VmRSS"],
        seconds=seconds,
        first_chunk=marks[1] if len(marks) > 1 else None,
        counted=n if r is None else int(r.counts.sum()),
        written=written,
    )


def _jax() -> dict:
    import keras
    import numpy as np

    import keras_fer_viz as kfv
    from keras_fer_viz import _gradients

    if keras.backend.backend() != "jax":
        raise RuntimeError("the jax case runs on KERAS_BACKEND=jax")
    model = _model()
    faces = kfv.synthetic_faces(max(SIZES), seed=0)
    x, y = faces.images, faces.labels
    for cls in (kfv.GradCAM, kfv.Saliency):  # the runtime's first compiles, not counted
        cls(model).explain(x[:2], y[:2])
    out = {}
    maps = {}
    for pad in (False, True):
        _gradients.PAD_JAX_BATCHES = pad
        for cls in (kfv.GradCAM, kfv.Saliency):
            start = time.perf_counter()
            explainer = cls(model)
            built = time.perf_counter() - start
            first, second = [], []
            for n in SIZES:
                s = time.perf_counter()
                maps[pad, cls.name, n] = explainer.explain(x[:n], y[:n])
                first.append(time.perf_counter() - s)
            total = time.perf_counter() - start
            for n in SIZES:
                s = time.perf_counter()
                explainer.explain(x[:n], y[:n])
                second.append(time.perf_counter() - s)
            out[f"{cls.name}/{'padded' if pad else 'unpadded'}"] = dict(
                traces=explainer._fn.trace_count(),
                built=built,
                first=first,
                second=second,
                total=total,
                padded=[_gradients.padded_size(min(n, _per_call())) for n in SIZES],
            )
    _gradients.PAD_JAX_BATCHES = True
    for cls in (kfv.GradCAM, kfv.Saliency):
        out[f"{cls.name}/difference"] = max(
            float(np.abs(maps[True, cls.name, n] - maps[False, cls.name, n]).max()) for n in SIZES
        )
    return out


def _per_call() -> int:
    """Images per compiled call at 48x48 (the memory bound; a power of two when padding)."""
    from keras_fer_viz._explainer import inputs_per_call

    return inputs_per_call((48, 48))


def _child(case: str) -> dict:
    _quiet()
    if case == "throughput":
        return _throughput()
    if case == "jax":
        return _jax()
    return _memory(case)


def _run_case(case: str, backend: str) -> dict:
    """Runs one case in a fresh process with `backend`; its last JSON line is the result."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_datasets", case],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            text=True,
            timeout=TIMEOUT_S,
        )
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            break
    else:
        tail = (stderr.strip().splitlines() or ["no output"])[-1][:300]
        result = dict(error=f"exit {proc.returncode}: {tail}")
    result["wall"] = time.monotonic() - start
    print(f"   ({case}: {result['wall']:.0f} s)", flush=True)
    return result


def _mb(n) -> str:
    return f"{n / MB:.0f} MB"


def _throughput_rows(r: dict) -> list[dict]:
    what = (
        f"explain_dataset('grad_cam', fer_cnn, (x, y)), {FACES:,} faces vs "
        f"GradCAM(model).explain over the same {CHUNK}-face chunks"
    )
    if "error" in r:
        return [row(what, "failed", f"<= {RATIO_TARGET}x", False, r["error"])]
    n = r["faces"]
    ratio = r["dataset"] / r["bare"]
    rest = r["dataset"] - r["predict"] - r["maps"]
    rows = [
        row(
            what,
            f"{r['dataset']:.1f} s vs {r['bare']:.1f} s: {ratio:.2f}x "
            f"({n / r['dataset']:.0f} vs {n / r['bare']:.0f} faces/s)",
            f"<= {RATIO_TARGET}x",
            ratio <= RATIO_TARGET,
            f"{r['backend']}; each timed once, bare loop first; CPU time "
            f"{r['dataset_cpu']:.1f} s vs {r['bare_cpu']:.1f} s: "
            f"{r['dataset_cpu'] / r['bare_cpu']:.2f}x; inside explain_dataset: predictions "
            f"(a forward pass per chunk) {r['predict']:.1f} s, maps {r['maps']:.1f} s "
            f"({r['maps'] / r['bare']:.2f}x the bare loop), the rest {rest:.1f} s; "
            f"{r['counted']:,} faces counted (untrained model, accuracy {r['accuracy']:.2f}); "
            f"faces generated in {r['generated']:.1f} s (not timed); load average up to "
            f"{r['load']:.1f} on {os.cpu_count()} cores",
        )
    ]
    if "fwd_bwd" in r:
        per_face = r["fwd_bwd"] / r["fwd_bwd_faces"]
        rows.append(
            row(
                f"for scale: a bare compiled forward+backward pass to the pixels (tf.function, "
                f"GradientTape), first {r['fwd_bwd_faces']:,} faces in {CHUNK}-face calls",
                f"{r['fwd_bwd_faces'] / r['fwd_bwd']:.0f} faces/s; explain_dataset takes "
                f"{r['dataset'] / n / per_face:.2f}x its time per face, the bare GradCAM loop "
                f"{r['bare'] / n / per_face:.2f}x",
                "-",
                None,
                "Grad-CAM differentiates only down to its layer (the last convolution), so "
                "its maps cost less than a pass to the pixels; timed once",
            )
        )
    return rows


def _memory_row(case: str, r: dict) -> dict:
    n, to_disk = MEMORY[case]
    target = "-"  # the target is on the difference between the sizes (see run)
    if case == "memory_bare":
        what = (
            f"for comparison: a hand loop, GradCAM(model).explain on each batch of the same "
            f"generator, {n:,} faces: peak RSS growth"
        )
        target = "-"
    else:
        what = (
            f"explain_dataset('grad_cam'), {n:,} faces from a generator of {CHUNK}-face "
            f"batches, {'out=DIR' if to_disk else 'out=None'}: peak RSS growth"
        )
    if "error" in r:
        return row(what, "failed", target, False, r["error"])
    growth = r["peak"] - r["before"]
    notes = (
        f"ru_maxrss {_mb(r['peak'])} (VmHWM {_mb(r['hwm'])}) after a high-water reset at "
        f"{_mb(r['before'])} (model built, one forward pass); "
    )
    if r["first_chunk"] is not None:
        notes += (
            f"+{_mb(r['first_chunk'] - r['before'])} by the end of the first batch, "
            f"+{_mb(r['peak'] - r['first_chunk'])} after it; "
        )
    notes += f"{r['seconds']:.0f} s, faces generated inside; fresh process"
    if to_disk:
        notes += f"; {_mb(r['written'])} written (maps.npy, predictions.npy, labels.npy)"
    return row(
        what,
        f"+{_mb(growth)} (peak {_mb(r['peak'])})",
        target,
        None,
        notes,
    )


def _jax_rows(r: dict) -> list[dict]:
    if "error" in r:
        return [row("JAX compiles, 10 batch sizes", "failed", "-", False, r["error"])]
    bound = _per_call_bound()
    rows = []
    for name in ("grad_cam", "saliency"):
        before, after = r[f"{name}/unpadded"], r[f"{name}/padded"]
        rows.append(
            row(
                f"JAX, fresh {name} explainer, batches of {', '.join(map(str, SIZES))} in turn: "
                "compiles (trace_count) and time of the 10 first calls, padding off -> on",
                f"{before['traces']} -> {after['traces']} compiles; "
                f"{before['total']:.1f} s -> {after['total']:.1f} s",
                f"<= {bound} compiles (padded)",
                after["traces"] <= bound,
                f"second calls (compiled): {sum(before['second']):.2f} s -> "
                f"{sum(after['second']):.2f} s; maps equal within "
                f"{r[f'{name}/difference']:.1e}; per size below",
            )
        )
    rows[0]["jax"] = r
    return rows


def _per_call_bound() -> int:
    """log2 of the largest padded call + 1: what any sequence of sizes up to max(SIZES) may cost."""
    largest = min(1 << (max(SIZES) - 1).bit_length(), _per_call_padded())
    return largest.bit_length()


def run() -> list[dict]:
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    rows = _throughput_rows(_run_case("throughput", backend))
    memory = {case: _run_case(case, backend) for case in MEMORY}
    rows += [_memory_row(case, r) for case, r in memory.items()]
    # The target: memory independent of the number of faces, i.e. the peak for
    # 35,887 faces within 200 MB of the peak for 3,589 (the rows above include
    # the working memory of the compiled passes, which a hand loop pays too).
    for small, full in (("memory_small", "memory_full"), ("memory_small_out", "memory_full_out")):
        a, b = memory[small], memory[full]
        what = (
            f"peak RSS, {MEMORY[full][0]:,} faces minus {MEMORY[small][0]:,} faces, "
            f"{'out=DIR' if MEMORY[full][1] else 'out=None'}"
        )
        if "error" in a or "error" in b:
            rows.append(row(what, "failed", f"< {GROWTH_TARGET_MB} MB", False, "a case failed"))
            continue
        diff = b["peak"] - a["peak"]
        sign = "+" if diff >= 0 else "-"
        rows.append(
            row(
                what,
                f"{sign}{_mb(abs(diff))}",
                f"< {GROWTH_TARGET_MB} MB",
                diff < GROWTH_TARGET_MB * MB,
                f"peaks {_mb(a['peak'])} and {_mb(b['peak'])}",
            )
        )
    rows += _jax_rows(_run_case("jax", "jax"))
    return rows


def render(name: str, rows: list[dict], command: str) -> str:
    """RESULTS.md section (called by benchmarks/run.py): the cases, then JAX per size."""
    from benchmarks.run import render as cases

    text = cases(name, rows, command)
    jax = next((r["jax"] for r in rows if "jax" in r), None)
    if jax is None:
        return text
    lines = [
        "",
        "JAX, per batch size: the size each call ran at with padding, and the time of "
        "the first call of that size (compile included) / a second call, padding off "
        "and on (seconds).",
        "",
        "| size | padded to | grad_cam off | grad_cam on | saliency off | saliency on |",
        "|---|---|---|---|---|---|",
    ]
    padded = jax["grad_cam/padded"]["padded"]
    for i, n in enumerate(SIZES):
        cells = [
            f"{jax[k]['first'][i]:.2f} / {jax[k]['second'][i]:.3f}"
            for k in (
                "grad_cam/unpadded",
                "grad_cam/padded",
                "saliency/unpadded",
                "saliency/padded",
            )
        ]
        to = f"{padded[i]}" + (" + 1" if n > _per_call_padded() else "")
        lines.append(f"| {n} | {to} | " + " | ".join(cells) + " |")
    end = f"<!-- /bench:{name} -->"
    return text.replace(end, "\n".join(lines) + "\n" + end)


def _per_call_padded() -> int:
    """Images per JAX call at 48x48 with padding: the largest power of two in the memory bound."""
    from keras_fer_viz._explainer import PIXELS_PER_CALL

    step = PIXELS_PER_CALL // (48 * 48)
    return 1 << (step.bit_length() - 1)


if __name__ == "__main__":
    print("RESULT " + json.dumps(_child(sys.argv[1])), flush=True)
