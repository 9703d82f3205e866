"""Speed against captum and pytorch-grad-cam: on their ground (PyTorch) and on ours (JAX, TF).

On Keras' torch backend a Keras model is a `torch.nn.Module`, so captum
0.9.0 and pytorch-grad-cam 1.5.7 (PyPI ``grad-cam``) run on the very same
model and images as keras-fer-viz, in the same process. For each shared
method, the same N images and targets (the true classes) go through ours
and the peer, alternately, best of k calls after a warm-up call on both
sides. A second table divides the time of each of our gradient methods by
that of a bare forward+backward pass over the same batch
(`torch.autograd.grad` of the target logits with respect to the input;
target: <= 1.3x).

Ours is also timed on KERAS_BACKEND=jax and KERAS_BACKEND=tensorflow. A
keras-fer-viz user picks the Keras backend; the peers can only run on
torch, where ours runs eager torch passes just as they do (parity is the
most either side can reach there), while on JAX (``jax.jit``) and
TensorFlow (``tf.function``) our methods run compiled. The torch process
saves each model (``model.save(...keras)``), the images and targets of
each batch size, and our torch maps to a temporary folder; one process per
backend loads that very model (``keras.saving.load_model``: same weights)
and those images, and times ``explainer.explain(x, t)`` for each shared
method, with the same options, skips and batch sizes as the torch rows: a
warm-up call (which compiles: its time is recorded apart, as compile +
first call), then best of k. Their maps are checked against ours on torch
(max abs difference; expected about 1e-5). SmoothGrad draws its noise with
numpy from the same seed on every backend, so its noise is the same too.
But gradients through ReLU and max pooling are piecewise: where another
backend's rounding resolves a near-tie (two values of a pooling window
within 1e-5 of each other) the other way, a few pixels' gradients go
elsewhere, and Saliency and SmoothGrad maps can differ there by a few
percent of the map's maximum. The peer table gives peer/ours for each of our
backends; the target, the peer taking >= 2x our time, is judged on our
best backend. The three processes run one after another, so their
seconds are compared across processes: that holds only on an idle machine
(the load average at the start and end of each process is recorded).

Both sides explain the pre-softmax logits. Ours does it on the model as
given (``score="logit"``); the peers get a twin of the model whose last
Dense layer has a linear activation (a `keras.models.clone_model` with the
same weights, what their users do), and the bare pass uses that twin too.
The peers' settings match ours: Saliency with ``abs=True``; SmoothGrad as
``NoiseTunnel(Saliency)`` (25 samples; stdev 0.15 x the batch's value
range, captum taking one stdev per input tensor, against ours 0.15 x each
image's range; gradients averaged before the absolute value, as ours
does); IntegratedGradients with 32 Gauss-Legendre steps from a black
baseline; Occlusion with an 8x8 window (``(8, 8, C)`` on channels-last
input) every 4 pixels, black; captum's batching set to about our inputs per
call (``internal_batch_size``, ``nt_samples_batch_size``,
``perturbations_per_eval``). pytorch-grad-cam assumes channels-first
inputs (it reads the image size from the last two axes): it gets the twin
behind a `torch.nn.Module` that permutes (N, C, H, W) to (N, H, W, C), and a
``reshape_transform`` that permutes the target layer's (N, h, w, K) output.
Each CAM object is released after use (its hooks would otherwise slow down
every later forward pass). The peers call the twin with ``training=False``:
called bare, a Keras model runs its augmentation layers (RandomFlip and
kin default to ``training=True``), and every call would explain another
random flip of the faces.

Agreement, where the two compute the same thing: the largest absolute
difference between the two maps after the same normalisation (absolute
value or ReLU, then each map divided by its maximum); for the CAM family
at the layer's resolution (the peer's own `get_cam_image` against ours with
``normalize=False``), and on the final, upsampled maps both min-max
normalised and as returned (pytorch-grad-cam subtracts each map's minimum).

The peers are benchmark-only dependencies (benchmarks/requirements-peers.txt);
without them, their rows say so. `run` starts three subprocesses, one after
another: KERAS_BACKEND=torch (`measure`: ours and the peers), then jax and
tensorflow (`measure_compiled`: ours).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from benchmarks._timing import row

ROOT = Path(__file__).resolve().parent.parent
PEER_BOUND = 2.0
BARE_BOUND = 1.3
INPUTS_PER_CALL = 256  # captum's batching, about ours (PIXELS_PER_CALL: 227 faces)

# (our spec name, our options, peer library, peer method, agreement kind)
CAPTUM = [
    ("saliency", {}, "Saliency", "abs_max"),
    ("smoothgrad", {"samples": 25}, "NoiseTunnel(Saliency)", "noise"),
    ("integrated_gradients", {"steps": 32}, "IntegratedGradients", "abs_sum"),
    ("gradient_x_input", {}, "InputXGradient", "abs_sum"),
    ("occlusion", {"patch": 8, "stride": 4}, "Occlusion", "abs_mean"),
]
GRAD_CAM = [
    ("grad_cam", "GradCAM"),
    ("grad_cam_plus_plus", "GradCAMPlusPlus"),
    ("score_cam", "ScoreCAM"),
    ("layer_cam", "LayerCAM"),
    ("xgrad_cam", "XGradCAM"),
    ("hires_cam", "HiResCAM"),
    ("eigen_cam", "EigenCAM"),
]
# Our methods timed against the bare pass: one forward and backward each.
BARE = ["saliency", "gradient_x_input", "grad_cam", "grad_cam_plus_plus", "xgrad_cam"]
BARE += ["hires_cam", "layer_cam", "eigen_cam"]


def _stub_torchvision():
    """Lets pytorch_grad_cam import where torchvision cannot be installed.

    pytorch_grad_cam imports torchvision at the top of three modules (image
    preprocessing helpers, a detection target, SESS) that none of the
    methods timed here calls. PyPI's torchvision wheels are built against
    CUDA builds of torch (their ``_C.so`` needs ``libtorch_cuda.so``): with a
    CPU torch, ``import torchvision`` raises "operator torchvision::nms does
    not exist". Only when torchvision is absent or broken, a stub whose
    functions raise stands in for it in this process.
    """
    try:
        import torchvision  # noqa: F401

        return None
    except Exception as error:  # noqa: BLE001 - a broken torchvision raises RuntimeError
        reason = f"{type(error).__name__}: {error}"
    for name in list(sys.modules):
        if name == "torchvision" or name.startswith("torchvision."):
            del sys.modules[name]

    def missing(*args, **kwargs):
        raise NotImplementedError("torchvision is stubbed in this benchmark")

    stub = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    tv_ops = types.ModuleType("torchvision.ops")
    transforms.Compose = transforms.Normalize = transforms.ToTensor = missing
    functional.resize = missing
    tv_ops.box_iou = missing
    stub.transforms, stub.ops, transforms.functional = transforms, tv_ops, functional
    sys.modules.update(
        {
            "torchvision": stub,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
            "torchvision.ops": tv_ops,
        }
    )
    return reason


def _logits_twin(model):
    """A copy of `model` (same weights) whose softmax head outputs logits."""
    import keras

    last = model.layers[-1].name

    def clone(layer):
        config = layer.get_config()
        if layer.name == last and config.get("activation") == "softmax":
            config["activation"] = "linear"
        return layer.__class__.from_config(config)

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin


def _rounds(seconds: float) -> int:
    """Timed rounds for a call that took `seconds`: more for short calls (noisier)."""
    return 3 if seconds > 8 else 5 if seconds > 2 else 9


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _best(fns: dict, rounds: int | None = None, seconds: float = 0.0) -> dict:
    """Best time of each function over `rounds` rounds, the order reversed every round.

    Without `rounds`, it follows from `seconds`, the time of a warm-up call.
    """
    rounds = rounds or _rounds(seconds)
    best = {name: float("inf") for name in fns}
    names = list(fns)
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            fns[name]()
            best[name] = min(best[name], time.perf_counter() - start)
    best["rounds"] = rounds
    return best


def _normalise(maps, kind):
    """(N, H, W[, C]) attributions -> (N, H, W) >= 0, each map divided by its maximum."""
    import numpy as np

    maps = np.asarray(maps, np.float64)
    if kind == "abs_max":
        maps = np.abs(maps).max(axis=-1) if maps.ndim == 4 else np.abs(maps)
    elif kind in ("abs_sum", "noise"):
        maps = np.abs(maps.sum(axis=-1) if maps.ndim == 4 else maps)
    elif kind == "abs_mean":  # occlusion: |mean score drop| (ours is |drop| since b64ed80)
        maps = np.abs(maps.mean(axis=-1) if maps.ndim == 4 else maps)
    elif kind == "relu":
        maps = np.maximum(maps, 0.0)
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1.0), 0.0)


def _minmax(maps):
    """Each map shifted to a minimum of 0 and scaled to a maximum of 1 (pytorch-grad-cam's way)."""
    import numpy as np

    maps = np.asarray(maps, np.float64)
    low = maps.min(axis=(1, 2), keepdims=True)
    return (maps - low) / np.maximum(maps.max(axis=(1, 2), keepdims=True) - low, 1e-12)


def _diff(a, b) -> float:
    import numpy as np

    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _captum_calls(forward, x, t):
    """The captum call of each of our spec names, on channels-last images."""
    import torch
    from captum.attr import (
        InputXGradient,
        IntegratedGradients,
        NoiseTunnel,
        Occlusion,
        Saliency,
    )

    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    channels = int(x.shape[-1])
    per_image = max(1, INPUTS_PER_CALL // len(x))
    stdev = 0.15 * float(x.max() - x.min())  # ours: 0.15 x each image's range
    return {
        "saliency": lambda: Saliency(forward).attribute(xt, target=tt, abs=True),
        "smoothgrad": lambda: NoiseTunnel(Saliency(forward)).attribute(
            xt,
            nt_type="smoothgrad",
            nt_samples=25,
            nt_samples_batch_size=per_image,
            stdevs=stdev,
            target=tt,
            abs=False,
        ),
        "integrated_gradients": lambda: IntegratedGradients(forward).attribute(
            xt,
            baselines=0.0,
            target=tt,
            n_steps=32,
            method="gausslegendre",
            internal_batch_size=INPUTS_PER_CALL,
        ),
        "gradient_x_input": lambda: InputXGradient(forward).attribute(xt, target=tt),
        "occlusion": lambda: Occlusion(forward).attribute(
            xt,
            sliding_window_shapes=(8, 8, channels),
            strides=(4, 4, channels),
            baselines=0.0,
            target=tt,
            perturbations_per_eval=per_image,
        ),
    }


class _Peer:
    """pytorch-grad-cam on a channels-last Keras model and layer."""

    def __init__(self, twin, layer, method):
        import pytorch_grad_cam
        import torch

        class ChannelsFirst(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, x):
                return self.model(x.permute(0, 2, 3, 1), training=False)

        self.layer = layer
        self.cam = getattr(pytorch_grad_cam, method)(
            model=ChannelsFirst(twin),
            target_layers=[layer],
            reshape_transform=lambda a: a.permute(0, 3, 1, 2),
        )

    def __call__(self, x, targets):
        return self.cam(input_tensor=x, targets=targets)

    def raw(self, x, targets):
        """The peer's own map at the layer's resolution, before ReLU and resizing."""
        cam = self.cam
        outputs = cam.activations_and_grads(x)
        grads = None
        if cam.uses_gradients:
            cam.model.zero_grad()
            sum(t(o) for t, o in zip(targets, outputs, strict=True)).backward()
            grads = cam.activations_and_grads.gradients[0].numpy()
        activations = cam.activations_and_grads.activations[0].numpy()
        return cam.get_cam_image(x, self.layer, targets, activations, grads, False)

    def release(self):
        self.cam.activations_and_grads.release()


def _versions(stub_reason):
    import platform

    import keras
    import numpy
    import torch

    from benchmarks.run import cpu_name

    cpu = cpu_name()
    parts = [
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}",
        f"numpy {numpy.__version__}, keras {keras.__version__} ({keras.backend.backend()}), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
    ]
    peers = []
    from importlib.metadata import version

    for label in ("captum", "grad-cam"):
        try:
            peers.append(f"{label} {version(label)}")
        except Exception:  # noqa: BLE001
            peers.append(f"{label} not installed")
    try:
        import cv2

        peers.append(f"opencv {cv2.__version__}")
    except ImportError:
        pass
    if stub_reason:
        peers.append("torchvision stubbed (none that imports with this torch)")
    parts.append(", ".join(peers))
    return "; ".join(parts)


def _setup(name, images):
    """(label, model, images, targets) of one benchmark model, seeded."""
    import keras
    import numpy as np

    import keras_fer_viz as kfv

    keras.utils.set_random_seed(0)
    faces = kfv.synthetic_faces(images, seed=0)
    t = faces.labels.astype(np.int64)
    if name == "fer_cnn":
        return f"fer_cnn 48x48x1, {images} faces", kfv.fer_cnn(), faces.images.astype("f4"), t
    # ResNet50V2 (random weights) on the faces at 96x96 RGB, in [-1, 1].
    model = keras.applications.ResNet50V2(weights=None, input_shape=(96, 96, 3), classes=7)
    x = np.repeat(np.repeat(np.repeat(faces.images, 2, 1), 2, 2), 3, 3)
    return f"ResNet50V2 96x96x3, {images} faces", model, x.astype("f4") / 127.5 - 1.0, t


#: Per model: images per call, and the methods left out (with why).
MODELS = {
    "fer_cnn": dict(images=32, fewer={"occlusion": 16, "score_cam": 8}, skip={}),
    "resnet50v2": dict(
        images=8,
        fewer={},
        skip={
            "smoothgrad": "25 forward+backward passes per image, as in the fer_cnn row: not "
            "repeated here for time (2 cores)",
            "integrated_gradients": "32 forward+backward passes per image, as in the fer_cnn "
            "row: not repeated here for time (2 cores)",
            "occlusion": "529 windows of 8x8 per 96x96 image: not timed (2 cores)",
            "score_cam": "2,048 channels of post_relu, one forward pass each per image: not "
            "timed (2 cores)",
        },
    ),
}


def measure(models=tuple(MODELS), rounds: int | None = None, folder=None) -> list[dict]:
    """The rows, measured in this process (KERAS_BACKEND must be torch).

    With a `folder`, each model is saved there (``{name}.keras``), with the
    images and targets of each batch size (``{name}_{n}.npz``: x, t) and our
    torch maps of each timed method (``{name}_torch_maps.npz``), for
    `measure_compiled`.
    """
    import warnings

    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError("bench_peers.measure runs on KERAS_BACKEND=torch")
    # captum warns that it sets requires_grad on the inputs it is given.
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require")
    stub_reason = _stub_torchvision()
    load = os.getloadavg()[0]
    info = row("environment", _versions(stub_reason), "-", None, "")
    info["kind"] = "info"
    rows, checks = [info], []
    for name in models:
        rows += _measure_model(name, rounds, checks, folder, **MODELS[name])
    info["checks"], info["load"] = checks, [load, os.getloadavg()[0]]
    info["notes"] = "; ".join(checks) + (
        f"; load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end (2 cores shared "
        "with other jobs: compare the ratios, not the seconds)"
    )
    return rows


def _log(r):
    print(f"   {r['case']}: {r['measured']} {r.get('agreement', '')}", file=sys.stderr, flush=True)


def _measure_model(name, rounds, checks, folder, images, fewer, skip):
    import numpy as np
    import torch

    import keras_fer_viz as kfv

    rows = []
    data = {n: _setup(name, n) for n in {images, *fewer.values()}}
    label, model, x, t = data[images]
    saved = {}  # our torch maps, for measure_compiled's agreement
    if folder is not None:
        model.save(Path(folder) / f"{name}.keras")
        for n, (_, _, xn, tn) in data.items():
            np.savez(Path(folder) / f"{name}_{n}.npz", x=xn, t=tn)
    twin = _logits_twin(model)
    layer = kfv.last_conv_layer(model)
    twin_layer = twin.get_layer(layer.name)

    def forward(inputs):
        # training=False: called bare, a Keras model runs its augmentation
        # layers (RandomFlip, ... default to training=True), and every call
        # would explain another random flip of the faces.
        return twin(inputs, training=False)

    with torch.no_grad():
        probs = model(torch.from_numpy(x), training=False).numpy()
        logits = forward(torch.from_numpy(x))
    checks.append(
        f"{label.split(',')[0]}: softmax(twin logits) vs model output, max abs diff "
        f"{_diff(probs, torch.softmax(logits, -1).numpy()):.1e}; layer {layer.name}"
    )

    def ours(method, **options):
        cls = kfv.EXPLAINERS.get(method)
        return None if cls is None else cls(model, **options)

    def inputs(method):
        n = fewer.get(method, images)
        label, _, x, t = data[n]
        return label, x, t

    def peer_row(label, explainer, method, peer, took, agreement, notes):
        display = type(explainer).__name__ if explainer else method
        t_ours, t_peer = took.get("ours"), took["peer"]
        ratio = None if t_ours is None else t_peer / t_ours
        r = row(
            f"{label}: {display} vs {peer}",
            f"not yet available vs {t_peer:.3f} s"
            if ratio is None
            else f"{t_ours:.3f} s vs {t_peer:.3f} s: {ratio:.1f}x",
            f">= {PEER_BOUND:g}x",
            None if ratio is None else ratio >= PEER_BOUND,
            notes,
        )
        r.update(
            kind="peer",
            key=name,
            spec=method,
            model=label,
            method=display,
            peer=peer,
            ours_s=t_ours,
            peer_s=t_peer,
            ratio=ratio,
            agreement=agreement,
            rounds=took["rounds"],
        )
        _log(r)
        return r

    # captum
    for method, options, peer_method, kind in CAPTUM:
        if method in skip:
            rows.append(_skipped(label, method, skip[method]))
            continue
        label_m, xm, tm = inputs(method)
        try:
            call = _captum_calls(forward, xm, tm)[method]
        except ImportError as error:
            rows.append(row(f"{label_m}: captum", "not run", "-", None, str(error)))
            break
        explainer = ours(method, **options)
        theirs, seconds = _timed(call)  # the warm-up call, and the map compared
        theirs = theirs.detach().numpy()
        fns, agreement, notes = {"peer": call}, "-", ""
        if explainer is not None:
            mine = saved[method] = explainer.explain(xm, tm)
            fns["ours"] = lambda e=explainer, xm=xm, tm=tm: e.explain(xm, tm)
            agreement = f"{_diff(mine, _normalise(theirs, kind)):.1e}"
            if kind == "noise":
                notes = "different noise draws: equal maps not expected"
        took = _best(fns, rounds, seconds)
        rows.append(
            peer_row(label_m, explainer, method, f"captum {peer_method}", took, agreement, notes)
        )

    # pytorch-grad-cam
    try:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError as error:
        rows.append(row(f"{label}: pytorch-grad-cam", "not run", "-", None, str(error)))
        ClassifierOutputTarget = None  # noqa: N806
    for method, peer_method in GRAD_CAM if ClassifierOutputTarget else ():
        if method in skip:
            rows.append(_skipped(label, method, skip[method]))
            continue
        label_m, xm, tm = inputs(method)
        x_first = torch.from_numpy(xm).permute(0, 3, 1, 2).contiguous()
        targets = [ClassifierOutputTarget(int(c)) for c in tm]
        explainer = ours(method)
        peer = _Peer(twin, twin_layer, peer_method)
        try:
            call = lambda p=peer, a=x_first, b=targets: p(a, b)  # noqa: E731
            theirs, seconds = _timed(call)  # the warm-up call, and the map compared
            theirs_raw = peer.raw(x_first, targets)
            fns, agreement, notes = {"peer": call}, "-", ""
            if explainer is not None:
                mine = saved[method] = explainer.explain(xm, tm)
                mine_raw = ours(method, normalize=False).explain(xm, tm)
                fns["ours"] = lambda e=explainer, xm=xm, tm=tm: e.explain(xm, tm)
                if method == "eigen_cam":
                    # The SVD's sign is arbitrary; pytorch-grad-cam keeps it as
                    # it comes, ours turns it towards the mean activation.
                    flip = np.sum(mine_raw * theirs_raw, axis=(1, 2)) < 0
                    theirs_raw = np.where(flip[:, None, None], -theirs_raw, theirs_raw)
                    notes = (
                        f"{int(flip.sum())} of {len(flip)} peer maps have the other SVD sign "
                        "(raw maps compared after aligning it; final maps as returned)"
                    )
                if method == "grad_cam_plus_plus":
                    notes = "pytorch-grad-cam adds 1e-6 to the denominator of its alpha"
                if method == "score_cam":
                    notes = (
                        "weights differ by design: ours p_c(x * M_k), the softmax probability "
                        "(the authors' code); pytorch-grad-cam a softmax over channels of the "
                        "target's logit"
                    )
                raw = _diff(_normalise(mine_raw, "relu"), _normalise(theirs_raw, "relu"))
                final = _diff(_minmax(mine), _minmax(theirs))
                agreement = f"{raw:.1e} / {final:.1e} / {_diff(mine, theirs):.1e}"
            took = _best(fns, rounds, seconds)
        finally:
            peer.release()
        rows.append(
            peer_row(
                label_m,
                explainer,
                method,
                f"pytorch-grad-cam {peer_method}",
                took,
                agreement,
                notes,
            )
        )

    if folder is not None:
        np.savez(Path(folder) / f"{name}_torch_maps.npz", **saved)

    # ours against the bare forward+backward pass over the same batch
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)

    def bare():
        pixels = xt.clone().requires_grad_(True)
        scores = forward(pixels).gather(1, tt[:, None]).sum()
        return torch.autograd.grad(scores, [pixels])[0].numpy()

    bare()
    for method in BARE:
        explainer = ours(method)
        if explainer is None:
            rows.append(row(f"{label}: {method} vs bare pass", "not yet available", "-", None))
            continue
        _, seconds = _timed(lambda e=explainer: e.explain(x, t))
        took = _best({"ours": lambda e=explainer: e.explain(x, t), "bare": bare}, rounds, seconds)
        ratio = took["ours"] / took["bare"]
        r = row(
            f"{label}: {type(explainer).__name__} vs bare forward+backward pass, batch {len(x)}",
            f"{took['ours']:.3f} s vs {took['bare']:.3f} s: {ratio:.2f}x",
            f"<= {BARE_BOUND:g}x",
            ratio <= BARE_BOUND,
            "" if getattr(explainer, "gradient", True) else "forward pass only (no gradient)",
        )
        r.update(
            kind="bare",
            model=label,
            method=type(explainer).__name__,
            ours_s=took["ours"],
            bare_s=took["bare"],
            ratio=ratio,
            rounds=took["rounds"],
        )
        _log(r)
        rows.append(r)
    return rows


def _skipped(label, method, why):
    r = row(f"{label}: {method}", "not timed", "-", None, why)
    r["kind"] = "skipped"
    return r


def _backend_versions(backend):
    import platform

    import keras

    if backend == "jax":
        import jax

        devices = ", ".join(sorted({d.platform for d in jax.devices()}))
        return f"keras {keras.__version__} (jax), jax {jax.__version__} ({devices})"
    import tensorflow as tf

    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    return (
        f"keras {keras.__version__} (tensorflow), tensorflow {tf.__version__} "
        f"({threads} intra-op threads), Python {platform.python_version()}"
    )


def measure_compiled(folder, models=tuple(MODELS), rounds: int | None = None) -> dict:
    """Ours on this process's backend (jax or tensorflow), on what `measure` saved in `folder`.

    For each model saved there and each method of CAPTUM and GRAD_CAM (same
    options, skips and batch sizes as the torch rows): a warm-up call of
    ``explain(x, t)`` (it compiles; timed apart), then best of k calls, k
    from the time of the first call after the warm-up (which counts as one
    of the k, and whose maps are compared with ours on torch).

    Returns:
        ``{"backend", "versions", "load": [start, end], "results": [...]}``,
        one result per method: key, spec, seconds, compile_s (compile +
        first call), rounds, agreement (max abs difference from our torch
        maps), or error.
    """
    import keras
    import numpy as np

    import keras_fer_viz as kfv

    backend = keras.backend.backend()
    if backend not in ("jax", "tensorflow"):
        raise RuntimeError("bench_peers.measure_compiled runs on KERAS_BACKEND=jax or tensorflow")
    folder = Path(folder)
    load = os.getloadavg()[0]
    results = []
    methods = [(m, options) for m, options, *_ in CAPTUM] + [(m, {}) for m, _ in GRAD_CAM]
    for name in models:
        path = folder / f"{name}.keras"
        if not path.exists():
            continue
        spec = MODELS[name]
        model = keras.saving.load_model(path)
        torch_maps = dict(np.load(folder / f"{name}_torch_maps.npz"))
        for method, options in methods:
            cls = kfv.EXPLAINERS.get(method)
            if method in spec["skip"] or cls is None:
                continue
            n = spec["fewer"].get(method, spec["images"])
            with np.load(folder / f"{name}_{n}.npz") as data:
                x, t = data["x"], data["t"]
            r = dict(key=name, spec=method, backend=backend, images=n)
            try:
                explainer = cls(model, **options)

                def call(e=explainer, x=x, t=t):
                    return e.explain(x, t)

                _, first = _timed(call)  # compiles
                maps, seconds = _timed(call)
                k = rounds or _rounds(seconds)
                best = seconds
                if k > 1:
                    best = min(best, _best({"ours": call}, k - 1)["ours"])
                agreement = _diff(maps, torch_maps[method]) if method in torch_maps else None
                r.update(seconds=best, compile_s=first, rounds=k, agreement=agreement)
            except Exception as error:  # noqa: BLE001 - one method failing leaves the others
                r.update(seconds=None, error=f"{type(error).__name__}: {error}")
            print(
                f"   {backend} {name} {method}: {r.get('seconds')} s, "
                f"first {r.get('compile_s')} s, vs torch {r.get('agreement')} {r.get('error', '')}",
                file=sys.stderr,
                flush=True,
            )
            results.append(r)
    return dict(
        backend=backend,
        versions=_backend_versions(backend),
        load=[load, os.getloadavg()[0]],
        results=results,
    )


BACKENDS = ("jax", "tensorflow")


def _subprocess(backend, call):
    """``call`` (an expression on ``b``, this module) run on `backend`; its JSON, load, rc."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", TQDM_DISABLE="1")
    code = f"import json, benchmarks.bench_peers as b; print(json.dumps({call}))"
    start = os.getloadavg()[0]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    load = [start, os.getloadavg()[0]]
    if done.returncode != 0:
        return None, load, done.returncode
    return json.loads(done.stdout.strip().splitlines()[-1]), load, 0


def _merge(rows, compiled, loads):
    """Ours on jax and tensorflow into the peer rows; pass/fail on our best backend.

    `compiled`: backend -> `measure_compiled`'s dict (None if its process
    failed); `loads`: backend -> [load average at start, at end].
    """
    info = next((r for r in rows if r.get("kind") == "info"), None)
    found = {}
    for backend, out in compiled.items():
        for c in (out or {}).get("results", []):
            found[backend, c["key"], c["spec"]] = c
    for r in rows:
        if r.get("kind") != "peer":
            continue
        ratios = {"torch": r["ratio"]}
        problems = []
        for backend in BACKENDS:
            c = found.get((backend, r["key"], r["spec"]), {})
            seconds = c.get("seconds")
            r[f"{backend}_s"] = seconds
            r[f"ratio_{backend}"] = ratios[backend] = None if not seconds else r["peer_s"] / seconds
            r[f"{backend}_compile_s"] = c.get("compile_s")
            r[f"{backend}_rounds"] = c.get("rounds")
            r[f"{backend}_agreement"] = c.get("agreement")
            if c.get("error"):
                problems.append(f"{backend}: {c['error']}")
            elif compiled.get(backend) is None:
                problems.append(f"{backend}: process failed")
        r["backend_notes"] = "; ".join(problems)
        measured = {b: v for b, v in ratios.items() if v is not None}
        if not measured:
            continue
        best = max(measured, key=measured.get)
        r["best"], r["best_backend"] = measured[best], best
        r["passed"] = measured[best] >= PEER_BOUND
        ours = ", ".join(
            f"{b} {_seconds(r['ours_s'] if b == 'torch' else r[f'{b}_s'])} s"
            for b in ("torch", *BACKENDS)
        )
        r["measured"] = f"ours {ours} vs {r['peer_s']:.3f} s: best {measured[best]:.1f}x ({best})"
    if info is not None:
        info["measured"] += "".join(
            f"; {out['versions']}" for out in compiled.values() if out is not None
        )
        info["loads"] = loads
        info["notes"] = "; ".join(info.get("checks", [])) + "; " + _load_sentence(loads)


def _load_sentence(loads):
    each = ", ".join(f"{b} {a:.1f} -> {z:.1f}" for b, (a, z) in loads.items())
    return (
        f"load average (1 min) at the start and end of each process, run one after another: "
        f"{each} (2 cores: seconds across processes compare only on an idle machine)"
    )


def run(models=tuple(MODELS), rounds: int | None = None) -> list[dict]:
    """Ours and the peers on torch, then ours on jax and tensorflow, merged into one table."""
    models = tuple(models)
    with tempfile.TemporaryDirectory(prefix="bench_peers_") as folder:
        rows, load, rc = _subprocess("torch", f"b.measure({models!r}, {rounds!r}, {folder!r})")
        if rows is None:
            return [row("peers", "not run", "-", False, f"torch subprocess exited {rc}")]
        loads, compiled, failures = {"torch": load}, {}, []
        for backend in BACKENDS:
            call = f"b.measure_compiled({folder!r}, {models!r}, {rounds!r})"
            out, loads[backend], rc = _subprocess(backend, call)
            compiled[backend] = out
            if out is None:
                failures.append(
                    row(
                        f"peers: ours on {backend}",
                        "not run",
                        "-",
                        False,
                        f"{backend} subprocess exited {rc}",
                    )
                )
    _merge(rows, compiled, loads)
    return rows + failures


def _seconds(value, missing="not yet available"):
    return missing if value is None else f"{value:.3f}"


def _ratio(value):
    return "-" if value is None else f"{value:.1f}x"


def render(name: str, rows: list[dict], command: str) -> str:
    """The section: environment, the peer table, the bare-pass table."""
    import datetime

    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    info = next((r for r in rows if r.get("kind") == "info"), None)
    lines = [f"<!-- bench:{name} -->", f"## {name}", ""]
    where = f"; {info['measured']}" if info else ""
    lines += [f"`{command}` on {when}{where}.", ""]
    if info and info.get("loads"):
        lines += [f"Twin check: {'; '.join(info['checks'])}.", ""]
        load = _load_sentence(info["loads"])
        lines += [load[0].upper() + load[1:] + ".", ""]
    elif info:
        lines += [f"Twin check: {info['notes']}.", ""]
    peers = [r for r in rows if r.get("kind") == "peer"]
    lines += [
        "Ours vs the peer, same model, faces and targets. The peer runs on torch only; ours "
        "on torch (same process as the peer, best of k alternated calls after a warm-up, k "
        "from 3 to 9, fewer for longer calls), and on jax and tensorflow (a process each, run "
        "right after, on the same saved model and images: best of k after a compiling "
        "warm-up call). "
        f"Target: peer/ours >= {PEER_BOUND:g}x on our best backend (best). Agreement (torch "
        "process): max abs difference of ours on torch and the peer's maps after the same "
        "normalisation; CAMs: raw maps at the layer's resolution / final maps, both min-max "
        "normalised / final maps as returned (pytorch-grad-cam subtracts each map's minimum, "
        "ours divides by the maximum only).",
        "",
        "| model | method | peer | peer s | ours torch s | peer/torch | ours jax s | peer/jax "
        "| ours tf s | peer/tf | best | met | torch k | agreement | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in peers:
        met = {True: "yes", False: "**NO**", None: "-"}[r["passed"]]
        best = "-" if r.get("best") is None else f"{r['best']:.1f}x ({r['best_backend']})"
        lines.append(
            f"| {r['model']} | {r['method']} | {r['peer']} | {r['peer_s']:.3f} | "
            f"{_seconds(r['ours_s'])} | {_ratio(r['ratio'])} | "
            f"{_seconds(r.get('jax_s'), '-')} | {_ratio(r.get('ratio_jax'))} | "
            f"{_seconds(r.get('tensorflow_s'), '-')} | {_ratio(r.get('ratio_tensorflow'))} | "
            f"{best} | {met} | {r['rounds']} | {r['agreement']} | {r['notes']} |"
        )
    compiled = [r for r in peers if any(r.get(f"{b}_rounds") for b in BACKENDS)]
    compiled += [r for r in peers if r.get("backend_notes") and r not in compiled]
    if compiled:
        lines += [
            "",
            "Ours on jax and tensorflow: the warm-up call (compiles, then runs: not in the "
            "timings above), k, and the max abs difference of the maps from ours on torch "
            "(the same saved model and images; maps in [0, 1]). Gradients through ReLU and max "
            "pooling are piecewise: where another backend's rounding resolves a near-tie the "
            "other way, a few pixels' gradients differ (Saliency, SmoothGrad).",
            "",
            "| model | method | jax compile+first s | jax k | jax vs torch | "
            "tf compile+first s | tf k | tf vs torch | notes |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in compiled:
            cells = []
            for b in BACKENDS:
                agreement = r.get(f"{b}_agreement")
                cells += [
                    _seconds(r.get(f"{b}_compile_s"), "-"),
                    str(r.get(f"{b}_rounds") or "-"),
                    "-" if agreement is None else f"{agreement:.1e}",
                ]
            lines.append(
                f"| {r['model']} | {r['method']} | {' | '.join(cells)} | "
                f"{r.get('backend_notes', '')} |"
            )
    bare = [r for r in rows if r.get("kind") == "bare"]
    lines += [
        "",
        "Ours vs a bare forward+backward pass over the same batch (torch.autograd.grad of the "
        "target logits with respect to the input), best of k alternated; "
        f"target <= {BARE_BOUND:g}x.",
        "",
        "| model | method | ours s | bare s | ours/bare | met | k | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in bare:
        met = "yes" if r["passed"] else "**NO**"
        lines.append(
            f"| {r['model']} | {r['method']} | {r['ours_s']:.3f} | {r['bare_s']:.3f} | "
            f"{r['ratio']:.2f}x | {met} | {r['rounds']} | {r['notes']} |"
        )
    other = [r for r in rows if r.get("kind") not in ("info", "peer", "bare")]
    if other:
        lines += ["", "| case | measured | notes |", "|---|---|---|"]
        lines += [f"| {r['case']} | {r['measured']} | {r['notes']} |" for r in other]
    lines.append(f"<!-- /bench:{name} -->")
    return "\n".join(lines)
