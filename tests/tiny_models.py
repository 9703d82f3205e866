"""Small models with hand-set weights, whose explanations can be computed by hand.

In the spirit of captum's ``BasicModel_ConvNet_One_Conv``: every weight is
chosen, so a test can assert exact values.
"""

import keras
import numpy as np


def conv_gap_dense(head="softmax", filters=2, size=4, classes=3, seed=None):
    """Input (size, size, 1) -> Conv2D(filters, 3x3, same, ReLU) -> GAP -> Dense(classes).

    With `seed` None the conv kernels are fixed: filter 0 all ones, filter 1
    a vertical edge detector; biases are 0 and -1. The Dense weights are
    ``W[k, c] = (k + 1) * (c - 1)`` with bias ``(0.5, 0, -0.5)`` for three
    classes. `head`: "softmax" (Dense with softmax), "layer" (linear Dense,
    then a separate Softmax layer) or "linear".
    """
    inputs = keras.Input((size, size, 1), name="pixels")
    conv = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name="conv")
    x = conv(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    dense = keras.layers.Dense(
        classes, activation="softmax" if head == "softmax" else None, name="dense"
    )
    out = dense(x)
    if head == "layer":
        out = keras.layers.Softmax(name="softmax")(out)
    model = keras.Model(inputs, out, name=f"conv_gap_dense_{head}")
    rng = np.random.default_rng(seed)
    if seed is None:
        kernel = np.zeros((3, 3, 1, filters), "float32")
        kernel[..., 0] = 1.0
        if filters > 1:
            kernel[:, 0, 0, 1], kernel[:, 2, 0, 1] = -1.0, 1.0
        bias = np.array([0.0, -1.0] + [0.0] * (filters - 2), "float32")[:filters]
        w = np.array([[(k + 1) * (c - 1) for c in range(classes)] for k in range(filters)], "f4")
        b = np.linspace(0.5, -0.5, classes).astype("float32")
    else:
        kernel = rng.normal(size=(3, 3, 1, filters)).astype("float32")
        bias = rng.normal(size=filters).astype("float32") * 0.1
        w = rng.normal(size=(filters, classes)).astype("float32")
        b = rng.normal(size=classes).astype("float32")
    conv.set_weights([kernel, bias])
    dense.set_weights([w, b])
    return model


def linear(shape=(4, 4, 2), classes=3, seed=0, softmax=True):
    """Flatten -> Dense(classes): the logit gradient with respect to the input is W."""
    inputs = keras.Input(shape)
    x = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(classes, activation="softmax" if softmax else None, name="dense")
    model = keras.Model(inputs, dense(x), name="linear")
    rng = np.random.default_rng(seed)
    dense.set_weights(
        [
            rng.normal(size=(int(np.prod(shape)), classes)).astype("float32"),
            rng.normal(size=classes).astype("float32"),
        ]
    )
    return model


def conv_reference(x, kernel, bias):
    """'same' 3x3 convolution + ReLU in plain numpy: (N, H, W, 1) -> (N, H, W, F)."""
    n, h, w, _ = x.shape
    padded = np.pad(x[..., 0], ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, h, w, kernel.shape[-1]))
    for i in range(3):
        for j in range(3):
            out += padded[:, i : i + h, j : j + w, None] * kernel[i, j, 0][None, None, None]
    return np.maximum(out + bias, 0.0)


def smooth_cnn(shape=(8, 8, 1), classes=4, seed=0):
    """A small CNN with smooth (tanh) activations, for integration tests."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name="conv1")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, out, name="smooth_cnn")
