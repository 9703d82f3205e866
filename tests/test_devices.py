"""Several devices: a batch split over two devices gives the results of one.

Devices are set up per process (JAX's host device count, TensorFlow's
logical CPUs), so each check runs a script in a subprocess that computes the
same dataset explanation without and then with the distribution, and reports
the largest differences and how many devices the compiled calls ran on.
"""

import json
import os
import subprocess
import sys

import keras
import pytest
from conftest import FIXTURES

# Odd counts: 21 faces in chunks of 16 (16, 5): every call's batch is padded
# before it is split. Three methods, one of each kind of compiled call: a
# layer's gradient (Grad-CAM), an expanded batch of input gradients
# (SmoothGrad) and forward passes only (Occlusion).
COMMON = """
import json
import numpy as np
import keras
import keras_fer_viz as kfv
from keras_fer_viz import datasets

datasets.CHUNK = 16
faces = kfv.synthetic_faces(21, seed=5)
data = (faces.images, faces.labels)
model = keras.saving.load_model({model!r})
METHODS = {{
    "grad_cam": {{}},
    "smoothgrad": {{"samples": 6}},
    "occlusion": {{"patch": 12, "stride": 12}},
}}


def run():
    out = {{}}
    for name, options in METHODS.items():
        r = kfv.explain_dataset(name, model, data, verbose=False, **options)
        out[name] = (r.class_means, r.counts, r.predictions)
    cam = kfv.GradCAM(model)
    cam.explain(faces.images[:5])
    return out, cam._fn.devices()


def report(one, two, devices):
    print(json.dumps({{
        "devices": devices,
        "means": {{k: float(np.abs(one[0][k][0] - two[k][0]).max()) for k in METHODS}},
        "counts": {{k: bool((one[0][k][1] == two[k][1]).all()) for k in METHODS}},
        "predictions": {{k: bool((one[0][k][2] == two[k][2]).all()) for k in METHODS}},
        "one_device": one[1],
    }}))
"""

JAX = (
    COMMON
    + """
import jax

one = run()
keras.distribution.set_distribution(
    keras.distribution.DataParallel(devices=jax.devices("cpu"))
)
two, devices = run()
report(one, two, devices)
"""
)

TENSORFLOW = (
    """
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""
    + COMMON
    + """
one = run()
with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
    two, devices = run()
report(one, two, devices)
"""
)


def in_a_process(template, **env):
    script = template.format(model=str(FIXTURES / "fer_cnn_small.keras"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=900, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check(result):
    assert result["one_device"] == 1
    assert result["devices"] == 2  # the compiled calls ran on both devices
    assert all(result["counts"].values()), result["counts"]
    assert all(result["predictions"].values()), result["predictions"]
    # Per-row results do not depend on the split; only rounding (a smaller
    # matrix product per device) may differ.
    for name, diff in result["means"].items():
        assert diff < 1e-5, (name, diff)


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's DataParallel")
def test_two_jax_devices_equal_one():
    check(in_a_process(JAX, XLA_FLAGS="--xla_force_host_platform_device_count=2"))


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute is TensorFlow's")
def test_two_tensorflow_devices_equal_one():
    check(in_a_process(TENSORFLOW))
