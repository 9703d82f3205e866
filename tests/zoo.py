"""A zoo of image classifiers that nobody in this project designed.

The library must explain any Keras image classifier (DESIGN.md, "Any Keras
model"), so its conformance is tested on models from outside it (STYLE.md,
14): `keras.applications` families (``weights=None``, nothing downloaded)
at small inputs, an application nested inside a Sequential or Functional
model with a new head, the mini-Xception FER model saved by Keras 2 (.h5),
a subclassed model with a Functional twin sharing its weights, a model with
two named outputs, a mixed-precision model, 1 and 3 channels and an odd
input size.

Each `ZooEntry` has a name, a builder (seeded: the same weights every
call), the (H, W, C) input shape, the range of the pixels it takes, and the
keyword arguments the library needs for it (``output="emotion"`` for the
two-output model). Images for an entry come from `images_for`: synthetic
faces resized to its shape, tinted per channel and scaled to its range,
structured enough that the score of an untrained model varies over them.

Input sizes: the final feature map of every application is at least 2x2
(64 px for the stride-32 families, 71 px for Xception, its smallest), so
that a Grad-CAM map upsampled from it can vary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MINI_XCEPTION_H5 = FIXTURES / "mini_xception_k2.h5"
NUM_CLASSES = 7
BACKENDS = ("tensorflow", "jax", "torch")


@dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo.

    Attributes:
        name: short id, used in test ids and the conformance table.
        build: ``() -> keras.Model``, seeded.
        shape: (H, W, C) input shape.
        value_range: (low, high) of the pixels the model takes.
        kwargs: keyword arguments every explainer, metric and callback needs
            for this model (``{"output": "emotion"}``).
        backends: the backends the benchmark runs it on (the whole zoo on
            TensorFlow; the small models on JAX and PyTorch too).
        test_backends: the backends whose test run includes it: TensorFlow,
            and a few small models on JAX and PyTorch, to keep their runs
            to about two minutes on a 2-core CPU.
        cam_layers: names of the layers Grad-CAM and CAM may read by default
            (``last_conv_layer``): the last spatial layers before the head's
            global pooling or flatten, from the architecture (the last conv
            and what follows it: BN, activation, pooling, a merge), or None
            where names are Keras' automatic ones.
        slow: True for the entries that take long to build and trace.
        note: what the entry is there to test.
    """

    name: str
    build: Callable[[], keras.Model]
    shape: tuple
    value_range: tuple = (0.0, 255.0)
    kwargs: dict = field(default_factory=dict)
    backends: tuple = ("tensorflow",)
    test_backends: tuple = ("tensorflow",)
    cam_layers: tuple | None = None
    slow: bool = False
    note: str = ""


def _seed(seed=0):
    keras.utils.set_random_seed(seed)


def _flat_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def calibrated(model, shape, value_range=(0.0, 255.0)):
    """Sets every BatchNormalization's moving statistics to those of a batch of zoo images.

    An untrained network in inference mode normalises with moving means of 0
    and variances of 1: through a deep MobileNet its activations vanish, its
    softmax is uniform to float precision, and no map or curve of it can
    vary. One forward pass in training mode with momentum 0 gives each
    BatchNormalization the statistics of its own input (as training would,
    roughly); the architecture and every other weight stay as built.
    """
    layers = [la for la in _flat_layers(model) if isinstance(la, keras.layers.BatchNormalization)]
    saved = [la.momentum for la in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        model(images_for(shape, 8, seed=3, value_range=value_range), training=True)
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum
    return model


# keras.applications at small inputs ------------------------------------------


def resnet50v2():
    _seed()
    model = keras.applications.ResNet50V2(
        weights=None, input_shape=(64, 64, 3), classes=NUM_CLASSES, classifier_activation="softmax"
    )
    return calibrated(model, (64, 64, 3), (-1.0, 1.0))


def mobilenetv3small():
    # Its head is GAP (keepdims) -> 1x1 Conv2D -> 1x1 Conv2D "logits" -> Flatten
    # -> softmax: the last conv layer comes after the global pooling.
    _seed()
    model = keras.applications.MobileNetV3Small(
        weights=None, input_shape=(64, 64, 3), classes=NUM_CLASSES, classifier_activation="softmax"
    )
    return calibrated(model, (64, 64, 3))


def efficientnetb0():
    _seed()
    model = keras.applications.EfficientNetB0(
        weights=None, input_shape=(64, 64, 3), classes=NUM_CLASSES, classifier_activation="softmax"
    )
    return calibrated(model, (64, 64, 3))


def densenet121():
    _seed()
    model = keras.applications.DenseNet121(
        weights=None, input_shape=(64, 64, 3), classes=NUM_CLASSES, classifier_activation="softmax"
    )
    return calibrated(model, (64, 64, 3), (-1.0, 1.0))


def convnext_tiny():
    _seed()
    return keras.applications.ConvNeXtTiny(
        weights=None, input_shape=(64, 64, 3), classes=NUM_CLASSES, classifier_activation="softmax"
    )


def xception():
    # 71 px is Xception's smallest input; its last map is 3x3.
    _seed()
    model = keras.applications.Xception(
        weights=None, input_shape=(71, 71, 3), classes=NUM_CLASSES, classifier_activation="softmax"
    )
    return calibrated(model, (71, 71, 3), (-1.0, 1.0))


def mobilenetv2_odd_gray():
    # An odd, non-square size and one channel, through an application.
    _seed()
    model = keras.applications.MobileNetV2(
        weights=None,
        alpha=0.35,
        input_shape=(45, 53, 1),
        classes=NUM_CLASSES,
        classifier_activation="softmax",
    )
    return calibrated(model, (45, 53, 1), (-1.0, 1.0))


# nested backbones ---------------------------------------------------------------


def nested_sequential():
    """MobileNetV2 (no top) inside a Sequential, with a new head."""
    _seed()
    backbone = keras.applications.MobileNetV2(
        weights=None, alpha=0.35, include_top=False, input_shape=(64, 64, 3)
    )
    model = keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            keras.layers.Rescaling(1 / 127.5, offset=-1.0),
            backbone,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="nested_sequential",
    )
    return calibrated(model, (64, 64, 3))


def nested_functional():
    """EfficientNetB0 (no top) inside a Functional model, with a new head."""
    _seed()
    backbone = keras.applications.EfficientNetB0(
        weights=None, include_top=False, input_shape=(64, 64, 3)
    )
    inputs = keras.Input((64, 64, 3))
    x = backbone(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return calibrated(keras.Model(inputs, outputs, name="nested_functional"), (64, 64, 3))


# the mini-Xception saved by Keras 2 ------------------------------------------------


def mini_xception_h5():
    """The Keras-2 .h5 file of tests/fixtures/make_mini_xception.py, loaded by Keras 3."""
    return keras.saving.load_model(MINI_XCEPTION_H5, compile=False)


# a subclassed model and its Functional twin ------------------------------------------


class Net(keras.Model):
    """A subclassed CNN: layers made in __init__, wired in `call`."""

    def __init__(self, num_classes=NUM_CLASSES, **kwargs):
        super().__init__(**kwargs)
        self.scale = keras.layers.Rescaling(1 / 255, name="scale")
        self.conv1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")
        self.pool = keras.layers.MaxPooling2D(name="pool")
        self.conv2 = keras.layers.Conv2D(16, 3, padding="same", name="conv2")
        self.bn = keras.layers.BatchNormalization(name="bn")
        self.relu = keras.layers.ReLU(name="relu")
        self.gap = keras.layers.GlobalAveragePooling2D(name="gap")
        self.head = keras.layers.Dense(num_classes, activation="softmax", name="predictions")

    def call(self, x, training=False):
        x = self.pool(self.conv1(self.scale(x)))
        x = self.relu(self.bn(self.conv2(x), training=training))
        return self.head(self.gap(x))


SUBCLASSED_SHAPE = (40, 40, 3)


def subclassed():
    """`Net`, called once on a batch (built by use, not by `keras.Input`)."""
    _seed()
    net = Net(name="subclassed_net")
    net(images_for(SUBCLASSED_SHAPE, 2, seed=9))
    return net


def functional_twin(net):
    """A Functional model calling `net`'s own layers: the same weights, the same maps."""
    inputs = keras.Input(SUBCLASSED_SHAPE)
    x = net.pool(net.conv1(net.scale(inputs)))
    x = net.relu(net.bn(net.conv2(x)))
    outputs = net.head(net.gap(x))
    return keras.Model(inputs, outputs, name="subclassed_twin")


# two outputs, mixed precision, plain small CNNs -------------------------------------------


def two_output():
    """An emotion head (7 classes) and a valence head (3 classes), both named."""
    _seed()
    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    emotion = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="emotion")(x)
    valence = keras.layers.Dense(3, activation="softmax", name="valence")(x)
    return keras.Model(inputs, [emotion, valence], name="two_output")


def mixed_precision():
    """Every layer under the "mixed_float16" policy but a float32 softmax output."""
    _seed()
    policy = "mixed_float16"
    inputs = keras.Input((40, 40, 3))
    x = keras.layers.Rescaling(1 / 255, dtype=policy)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", dtype=policy, name="conv1")(x)
    x = keras.layers.MaxPooling2D(dtype=policy)(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", dtype=policy, name="conv2")(x)
    x = keras.layers.Flatten(dtype=policy)(x)
    x = keras.layers.Dense(NUM_CLASSES, dtype=policy)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="mixed_precision")


def plain_gray():
    """A one-channel Sequential CNN (Conv, BN, ReLU blocks, Flatten + Dense head)."""
    _seed()
    layers = [keras.Input((48, 48, 1)), keras.layers.Rescaling(1 / 255)]
    for i, filters in enumerate((8, 16), start=1):
        layers += [
            keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{i}"),
            keras.layers.BatchNormalization(name=f"bn{i}"),
            keras.layers.Activation("relu", name=f"relu{i}"),
            keras.layers.MaxPooling2D(name=f"pool{i}"),
        ]
    layers += [keras.layers.Flatten(), keras.layers.Dense(NUM_CLASSES, activation="softmax")]
    return keras.Sequential(layers, name="plain_gray")


def plain_rgb_odd():
    """A three-channel Functional CNN at 45x53, a softmax Dense head."""
    _seed()
    inputs = keras.Input((45, 53, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="plain_rgb_odd")


ALL = ("tensorflow", "jax", "torch")
ZOO = [
    ZooEntry(
        "plain_gray",
        plain_gray,
        (48, 48, 1),
        backends=ALL,
        cam_layers=("conv2", "bn2", "relu2", "pool2"),
        note="Sequential, 1 channel",
    ),
    ZooEntry(
        "plain_rgb_odd",
        plain_rgb_odd,
        (45, 53, 3),
        backends=ALL,
        test_backends=ALL,
        note="3 channels, 45x53",
        cam_layers=("conv2",),
    ),
    ZooEntry(
        "mini_xception_h5",
        mini_xception_h5,
        (48, 48, 1),
        value_range=(-1.0, 1.0),
        backends=ALL,
        note="Keras-2 .h5, add/add_1 layers, conv -> GAP -> softmax Activation",
        cam_layers=("conv2d_6",),
    ),
    ZooEntry(
        "subclassed",
        subclassed,
        SUBCLASSED_SHAPE,
        backends=ALL,
        test_backends=ALL,
        note="keras.Model subclass",
        cam_layers=("conv2", "bn", "relu"),
    ),
    ZooEntry(
        "two_output",
        two_output,
        (48, 48, 1),
        kwargs={"output": "emotion"},
        backends=ALL,
        test_backends=ALL,
        note="outputs 'emotion' (7) and 'valence' (3)",
        cam_layers=("conv2",),
    ),
    ZooEntry(
        "mixed_precision",
        mixed_precision,
        (40, 40, 3),
        backends=ALL,
        note="mixed_float16 layers",
        cam_layers=("conv2",),
    ),
    ZooEntry(
        "mobilenetv3small",
        mobilenetv3small,
        (64, 64, 3),
        backends=ALL,
        note="1x1 'logits' conv after global pooling",
    ),
    ZooEntry(
        "mobilenetv2_odd_gray",
        mobilenetv2_odd_gray,
        (45, 53, 1),
        value_range=(-1.0, 1.0),
        note="application at 45x53x1",
        cam_layers=("Conv_1", "Conv_1_bn", "out_relu"),
    ),
    ZooEntry(
        "nested_sequential",
        nested_sequential,
        (64, 64, 3),
        backends=ALL,
        note="MobileNetV2 inside a Sequential",
        cam_layers=("Conv_1", "Conv_1_bn", "out_relu"),
    ),
    ZooEntry(
        "nested_functional",
        nested_functional,
        (64, 64, 3),
        slow=True,
        note="EfficientNetB0 inside a Functional",
        cam_layers=("top_conv", "top_bn", "top_activation"),
    ),
    ZooEntry(
        "resnet50v2",
        resnet50v2,
        (64, 64, 3),
        value_range=(-1.0, 1.0),
        cam_layers=("conv5_block3_out", "post_bn", "post_relu"),
        slow=True,
        note="the last block's Add, then post_bn, post_relu",
    ),
    ZooEntry(
        "efficientnetb0",
        efficientnetb0,
        (64, 64, 3),
        cam_layers=("top_conv", "top_bn", "top_activation"),
        slow=True,
        note="squeeze-excite blocks: a global pooling inside every block",
    ),
    ZooEntry(
        "densenet121",
        densenet121,
        (64, 64, 3),
        value_range=(-1.0, 1.0),
        cam_layers=("conv5_block16_concat", "bn", "relu"),
        slow=True,
        note="the last dense block's Concatenate, then bn, relu",
    ),
    ZooEntry(
        "convnext_tiny",
        convnext_tiny,
        (64, 64, 3),
        slow=True,
        note="LayerNorm, Dense on 4-D maps, LayerScale; its residual add is an op",
    ),
    ZooEntry(
        "xception",
        xception,
        (71, 71, 3),
        value_range=(-1.0, 1.0),
        cam_layers=("block14_sepconv2", "block14_sepconv2_bn", "block14_sepconv2_act"),
        slow=True,
        note="the smallest input Xception takes",
    ),
]
BY_NAME = {entry.name: entry for entry in ZOO}


def entries(backend=None, tests=True):
    """The zoo entries that the tests (or, `tests=False`, the benchmark) run on `backend`."""
    backend = backend or keras.backend.backend()
    return [e for e in ZOO if backend in (e.test_backends if tests else e.backends)]


def images_for(shape, n=3, seed=0, value_range=(0.0, 255.0)) -> np.ndarray:
    """Structured test images: synthetic faces resized to `shape`, tinted, in `value_range`.

    Returns float32 (n, H, W, C). Channels of an RGB image differ (a smooth
    colour tint per channel), and a little smooth noise is added, so no two
    images and no two channels are equal. Pixels stay 2% inside the range:
    a flat region at exactly 0 gives convolutions an exact 0 for a ReLU to
    break ties on, and such ties flip with the backend's rounding.
    """
    from skimage.transform import resize

    from keras_fer_viz.data import synthetic_faces

    h, w, c = shape
    faces = synthetic_faces(n, seed=seed).images[..., 0].astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    out = np.empty((n, h, w, c), np.float32)
    for i in range(n):
        face = resize(faces[i], (h, w), order=1, anti_aliasing=True, preserve_range=True)
        for ch in range(c):
            tint = resize(rng.uniform(-0.15, 0.15, (4, 4)), (h, w), order=1)
            out[i, :, :, ch] = np.clip(face * (1.0 - 0.1 * ch) + tint, 0.02, 0.98)
    lo, hi = value_range
    return (lo + (hi - lo) * out).astype(np.float32)


def labels_for(n, seed=0, classes=NUM_CLASSES) -> np.ndarray:
    """Labels covering every class (for gap_head's training data)."""
    return (np.arange(n) + seed) % classes


# the methods, run the same way by tests/test_conformance.py and the benchmark --------

# Options that keep a run short; every other method runs with its defaults.
FAST = {
    "smoothgrad": {"samples": 4},
    "integrated_gradients": {"steps": 4},
    "lime": {"samples": 40, "verbose": 0},
}


def explainer(name, model, image_shape, **kwargs):
    """The registered method `name` on `model`, with options that keep a run short.

    Occlusion slides a patch of a quarter of the image (16 windows), so that
    a 224x224 model is not occluded 3,025 times per image.
    """
    import keras_fer_viz as kfv

    options = dict(FAST.get(name, {}))
    if name == "occlusion":
        patch = max(2, min(image_shape[:2]) // 4)
        options.update(patch=patch, stride=patch)
    return kfv.EXPLAINERS[name](model, **options, **kwargs)


def _explainers():
    import keras_fer_viz as kfv

    return tuple(kfv.EXPLAINERS)


#: Every registered method (kfv.EXPLAINERS), then the tools that are not explainers.
METHODS = _explainers() + (
    "feature_maps",
    "maximize_activation",
    "deletion",
    "insertion",
    "randomization",
)
N_IMAGES = 2
CURVE_STEPS = 4


# (model, method) pairs the library refuses by design, with a pattern its
# error must match (it says what to do instead). README: "every method but
# gap_head works" on subclassed models.
REFUSALS = {
    ("subclassed", "cam"): "Functional",
}

# (model, method) pairs where the method, as published, gives blank maps, and
# the library warns, saying why and what to do (a pattern of the warning).
# Score-CAM's weights are probabilities, so its map has the sign of the
# layer's activations: the mini-Xception's last convolution is its class
# layer, with signed outputs and no ReLU after it.
BLANK_WITH_WARNING = {
    ("mini_xception_h5", "score_cam"): "signed",
}


def check_method(method, entry, model, images):
    """Runs `method` and checks its result, or the documented warning of a blank map."""
    import warnings

    pattern = BLANK_WITH_WARNING.get((entry.name, method))
    if pattern is None:
        check_result(run_method(method, entry, model, images), len(images), entry.shape)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_method(method, entry, model, images)
    import re

    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert any(re.search(pattern, m) for m in messages), (
        f"{method} on {entry.name}: expected a RuntimeWarning matching {pattern!r}; got {messages}"
    )


def kernel_layers(model):
    """Names of the layers with a kernel, nested models entered, in `model.layers` order."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out += kernel_layers(layer)
        elif getattr(layer, "kernel", None) is not None:
            out.append(layer.name)
    return out


def center_maps(images) -> np.ndarray:
    """(N, H, W) maps highest at the centre and falling off (the curves' order)."""
    n, h, w = np.asarray(images).shape[:3]
    yy, xx = np.mgrid[0:h, 0:w]
    d = ((yy - (h - 1) / 2) / h) ** 2 + ((xx - (w - 1) / 2) / w) ** 2
    return np.broadcast_to(np.exp(-4 * d).astype(np.float32), (n, h, w)).copy()


def run_method(method, entry, model, images):
    """Runs `method` on `model`; returns {check kind: array} for `check_result`."""
    import keras_fer_viz as kfv
    from keras_fer_viz import metrics

    kw = dict(entry.kwargs)
    x = images
    if method == "cam":
        n = 2 * NUM_CLASSES
        train_x = images_for(entry.shape, n, seed=5, value_range=entry.value_range)
        train_y = labels_for(n)
        val_y = labels_for(len(x), seed=1)
        cam_model = kfv.gap_head(
            model,
            data=(train_x, train_y),
            validation_data=(x, val_y),
            epochs=1,
            verbose=0,
            **kw,
        )
        return {"maps": kfv.CAM(cam_model).explain(x)}
    if method in kfv.EXPLAINERS:
        return {"maps": explainer(method, model, entry.shape, **kw).explain(x)}
    if method == "feature_maps":
        return {"features": kfv.feature_maps(model, None, x)}
    if method == "maximize_activation":
        # The layer is a convolution; a two-output model still names its output
        # (maximize_activation's own `output` says how images are returned).
        chosen = {"model_output": kw["output"]} if "output" in kw else {}
        images = kfv.maximize_activation(
            model,
            None,
            filters=[0, 1],
            steps=3,
            verbose=0,
            value_range=entry.value_range,
            **chosen,
        )
        return {"filter_images": images}
    if method in ("deletion", "insertion"):
        fn = metrics.deletion_curve if method == "deletion" else metrics.insertion_curve
        curve = fn(model, x, center_maps(x), steps=CURVE_STEPS, **kw)
        return {"curve": curve.scores, "auc": curve.auc}
    if method == "randomization":
        top = kernel_layers(model)[-2:][::-1]
        result = metrics.randomization_check(
            lambda m: kfv.Saliency(m, **kw), model, x, layers=top, **kw
        )
        return {
            "maps": result.maps.reshape(-1, *result.maps.shape[2:]),
            "spearman": result.spearman,
        }
    raise ValueError(f"Unknown method {method!r}; expected one of {METHODS}")


def check_result(result, n, shape):
    """Asserts what every output must satisfy; the message says which check failed."""
    h, w, c = shape
    for kind, value in result.items():
        a = np.asarray(value)
        assert np.isfinite(a).all(), f"{kind}: not finite ({int((~np.isfinite(a)).sum())} values)"
        if kind == "maps":
            assert a.ndim == 3 and a.shape[1:] == (h, w), (
                f"maps: shape {a.shape}, expected (N, {h}, {w})"
            )
            assert a.shape[0] % n == 0, f"maps: {a.shape[0]} maps for {n} images"
        elif kind == "features":
            assert a.ndim == 4 and a.shape[0] == n, (
                f"features: shape {a.shape}, expected ({n}, h, w, F)"
            )
        elif kind == "filter_images":
            assert a.shape == (2, h, w, c), (
                f"filter_images: shape {a.shape}, expected (2, {h}, {w}, {c})"
            )
        elif kind == "curve":
            assert a.shape == (n, CURVE_STEPS + 1), f"curve: shape {a.shape}"
        elif kind == "auc":
            assert a.shape == (n,), f"auc: shape {a.shape}"
        if kind in ("maps", "filter_images", "curve", "auc"):
            assert a.min() >= 0.0 and a.max() <= 1.0, (
                f"{kind}: values in [{a.min():.4g}, {a.max():.4g}], expected [0, 1]"
            )
        if kind in ("maps", "features", "filter_images", "curve"):
            flat = a.reshape(len(a), -1)
            const = np.flatnonzero(flat.max(axis=1) <= flat.min(axis=1))
            assert not len(const), (
                f"{kind}: {len(const)} of {len(a)} constant (all {float(flat[const[0]][0]):.4g})"
            )


# checks beyond one method on one model ------------------------------------------------

_FRESH = """
import json, sys
import keras
# First thing in the process: no other model built, Keras' name counters at zero.
model = keras.saving.load_model(sys.argv[1], compile=False)
sys.path.insert(0, sys.argv[2])
import zoo

entry = zoo.BY_NAME["mini_xception_h5"]
x = zoo.images_for(entry.shape, zoo.N_IMAGES, value_range=entry.value_range)
out = {}
for method in zoo.METHODS:
    # Back to the state of a fresh process (name counters at zero) for each method.
    keras.backend.clear_session()
    out[method] = zoo.outcome(lambda: zoo.check_method(method, entry, model, x))
print("RESULT " + json.dumps(out), flush=True)
"""


def outcome(fn) -> str:
    """ "ok", or the exception that `fn()` raised, on one line."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - every failure is a finding to record
        text = " ".join(str(e).split())
        return f"{type(e).__name__}: {text}"
    return "ok"


def fresh_process_outcomes(timeout=600) -> dict:
    """Every method on the Keras-2 mini-Xception, in a process that loads it first thing.

    Returns {method: "ok" or the error}; raises RuntimeError if the process fails.
    """
    import os
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH, str(MINI_XCEPTION_H5), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            import json

            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(
        f"the fresh process failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
    )


_CONVS = (
    keras.layers.Conv2D,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Conv2DTranspose,
)


def last_conv_problem(model, cam_layers=None):
    """None if `last_conv_layer` suits Grad-CAM and CAM; otherwise what is wrong.

    It must have a spatial output (h*w > 1), no convolution with a spatial
    output may come after it (a squeeze-excite block's global pooling is not
    the head's), and, where the entry names them, it must be one of
    `cam_layers`: the last spatial layers before the head's pooling.
    """
    import keras_fer_viz as kfv

    layer = kfv.last_conv_layer(model)
    rows = [r for r in kfv.all_layers(model) if not isinstance(r.layer, keras.Model)]
    index = next(i for i, r in enumerate(rows) if r.layer is layer)
    shape = rows[index].output_shape
    where = f"last_conv_layer is {rows[index].path!r} {shape}"
    if len(shape) != 4 or shape[1] * shape[2] <= 1:
        return f"{where}: no spatial extent"
    later = [
        r.path
        for r in rows[index + 1 :]
        if isinstance(r.layer, _CONVS) and len(r.output_shape) == 4
        if r.output_shape[1] * r.output_shape[2] > 1
    ]
    if later:
        return f"{where}, but {len(later)} spatial convolutions follow it, the last {later[-1]!r}"
    if cam_layers is not None and layer.name not in cam_layers:
        return f"{where}; expected one of {list(cam_layers)} (the head pools their output)"
    return None


def subclassed_twin_check(method):
    """The subclassed model gives the same outputs as its Functional twin for `method`."""
    entry = BY_NAME["subclassed"]
    net = subclassed()
    twin = functional_twin(net)
    x = images_for(entry.shape, N_IMAGES, value_range=entry.value_range)
    np.testing.assert_allclose(twin.predict(x, verbose=0), net.predict(x, verbose=0), atol=1e-6)
    expected = run_method(method, entry, twin, x)
    got = run_method(method, entry, net, x)
    for kind in expected:
        np.testing.assert_allclose(got[kind], expected[kind], atol=1e-5, err_msg=kind)


def _two_output_calls():
    import keras_fer_viz as kfv
    from keras_fer_viz import metrics

    calls = {
        name: lambda m, x, name=name: explainer(name, m, x.shape[1:])
        for name in kfv.EXPLAINERS
        if name != "cam"  # CAM needs a GAP head: gap_head is checked instead
    }
    calls.update(
        {
            "gap_head": lambda m, x: kfv.gap_head(
                m, data=(x, labels_for(len(x))), validation_data=(x, labels_for(len(x))), verbose=0
            ),
            "deletion_curve": lambda m, x: metrics.deletion_curve(m, x, center_maps(x), steps=2),
            "insertion_curve": lambda m, x: metrics.insertion_curve(m, x, center_maps(x), steps=2),
            "randomization_check": lambda m, x: metrics.randomization_check(
                kfv.Saliency, m, x, layers=["emotion"]
            ),
        }
    )
    return calls


#: Every registered method but CAM, then gap_head, the curves and the sanity check.
TWO_OUTPUT_CALLS = tuple(n for n in _explainers() if n != "cam") + (
    "gap_head",
    "deletion_curve",
    "insertion_curve",
    "randomization_check",
)


def output_refused_check(name, model=None):
    """`name` on the two-output model without `output=` raises a ValueError naming both."""
    model = model or two_output()
    x = images_for((48, 48, 1), 2)
    try:
        _two_output_calls()[name](model, x)
    except ValueError as e:
        message = str(e)
        assert "emotion" in message and "valence" in message, (
            f"refused without naming the outputs: {message}"
        )
        return
    raise AssertionError(f"{name} accepted a two-output model without output=")


def output_selected_check(model=None):
    """``output=`` by index and by name explains that output."""
    import keras_fer_viz as kfv

    model = model or two_output()
    x = images_for((48, 48, 1), 2)
    valence = kfv.Saliency(model, output=1)
    assert valence.num_classes == 3, f"output=1 has {valence.num_classes} classes, expected 3"
    by_name = kfv.Saliency(model, output="valence").explain(x, target=2)
    np.testing.assert_allclose(valence.explain(x, target=2), by_name, atol=1e-6)
    emotion = kfv.Saliency(model, output="emotion").explain(x, target=2)
    assert not np.allclose(emotion, by_name), "output='emotion' and 'valence' gave the same maps"
    try:
        kfv.Saliency(model, output="arousal")
    except ValueError as e:
        assert "valence" in str(e), f"an unknown output's error does not list the outputs: {e}"
    else:
        raise AssertionError("output='arousal' (no such output) was accepted")


#: Every registered method whose calls the memory bound sizes (CAM needs a GAP
#: head; LIME calls the model once per image, with its own batches).
EXPANDING = tuple(n for n in _explainers() if n not in ("cam", "lime"))


def batch_size_none_check(name, model=None):
    """``batch_size=None`` (automatic) is accepted and gives the maps of batch_size=1."""
    model = model or plain_gray()
    x = images_for((48, 48, 1), 5)
    automatic = explainer(name, model, x.shape[1:], batch_size=None).explain(x)
    one_by_one = explainer(name, model, x.shape[1:], batch_size=1).explain(x)
    if keras.backend.backend() != "torch":
        np.testing.assert_allclose(automatic, one_by_one, atol=1e-5)
        return
    # PyTorch's CPU convolutions round differently for each batch size (2e-7
    # here), and where that moves a ReLU's input across zero the gradient over
    # its receptive field jumps: about 1% of the pixels of these ReLU maps
    # differ between batch sizes. Chunking itself must change nothing else.
    off = np.abs(automatic - one_by_one) > 1e-4
    assert off.mean() <= 0.02, f"{off.mean():.1%} of pixels differ by more than 1e-4"


def extra_checks() -> dict:
    """Name -> check (raises on failure), for the benchmark's table."""
    checks = {}
    for method in ("saliency", "grad_cam", "feature_maps"):
        checks[f"subclassed model = its Functional twin ({method})"] = lambda method=method: (
            subclassed_twin_check(method)
        )
    two = two_output()
    for name in TWO_OUTPUT_CALLS:
        checks[f"two outputs, no output=: {name} refuses, naming them"] = lambda name=name: (
            output_refused_check(name, two)
        )
    checks["two outputs: output=1 / 'valence' / unknown name"] = lambda: output_selected_check(two)
    gray = plain_gray()
    for name in EXPANDING:
        checks[f"{name}(batch_size=None): automatic, same maps"] = lambda name=name: (
            batch_size_none_check(name, gray)
        )
    return checks
