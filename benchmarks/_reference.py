"""The trained reference CNN that benchmarks explain, trained once and cached.

The model is trained as the demo trains it (`keras_fer_viz.train` on 7,000
synthetic faces, 5 epochs) and cached in benchmarks/.cache/ under a name
that hashes the code it depends on, so a change to the model, the training
recipe or the faces trains it anew.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras

from keras_fer_viz import _io
from keras_fer_viz.data import synthetic_faces
from keras_fer_viz.models import fer_cnn
from keras_fer_viz.training import train

CACHE = Path(__file__).resolve().parent / ".cache"
_SOURCES = ("models.py", "training.py", "data/synthetic.py")


def _code_hash() -> str:
    package = Path(__file__).resolve().parent.parent / "keras_fer_viz"
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:12]


def trained_reference(seed: int = 0) -> keras.Model:
    """The reference CNN trained on 7,000 synthetic faces for 5 epochs."""
    path = CACHE / f"fer_cnn-{_code_hash()}-seed{seed}.keras"
    if path.exists():
        return keras.saving.load_model(path)
    keras.utils.set_random_seed(seed)
    faces = synthetic_faces(7000, seed=seed)
    model = fer_cnn()
    train(model, faces.images, faces.labels, epochs=5, verbose=2)
    _io.save_model(model, path)
    return model


def held_out_faces(n: int = 700, seed: int = 1):
    """Faces the reference model was not trained on."""
    return synthetic_faces(n, seed=seed)
