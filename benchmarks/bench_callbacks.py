"""What the training callbacks cost: fit with and without them, same run.

The reference CNN is fitted on 7,000 synthetic faces (`keras_fer_viz.train`,
batch 32) for 2 epochs, with SaliencyCallback and GradCAMCallback on 16
probe faces at every epoch, and without callbacks; the two are run in turn
(without, with, without, with) so that drift in the machine's speed hits
both, and the total times are compared. Target: <= 5% more time. The notes
give the callbacks' own time on the training thread (computing the maps)
per epoch; drawing and writing run on a background thread.
"""

from __future__ import annotations

import tempfile
import time

import keras

from benchmarks._timing import row
from keras_fer_viz import fer_cnn, synthetic_faces, train
from keras_fer_viz.callbacks import GradCAMCallback, SaliencyCallback, probe_faces

EPOCHS = 2


class _Timed:
    """Wraps a callback's on_epoch_end to time the training thread's share."""

    def __init__(self, callback):
        self.seconds = 0.0
        inner = callback.on_epoch_end

        def on_epoch_end(epoch, logs=None):
            start = time.perf_counter()
            inner(epoch, logs)
            self.seconds += time.perf_counter() - start

        callback.on_epoch_end = on_epoch_end


def _fit(faces, with_callbacks, out_dir):
    keras.utils.set_random_seed(0)
    callbacks, timers = [], []
    if with_callbacks:
        images, labels = probe_faces(faces.images, faces.labels, per_class=3)
        images, labels = images[:16], labels[:16]
        callbacks = [
            SaliencyCallback(images, labels, out_dir=out_dir),
            GradCAMCallback(images, labels, out_dir=out_dir),
        ]
        timers = [_Timed(c) for c in callbacks]
    start = time.perf_counter()
    train(fer_cnn(), faces.images, faces.labels, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    seconds = time.perf_counter() - start
    files = sum(len(c.written) for c in callbacks)
    return seconds, sum(t.seconds for t in timers), files


def run() -> list[dict]:
    faces = synthetic_faces(7000, seed=0)
    plain, watched, inline, files = [], [], 0.0, 0
    with tempfile.TemporaryDirectory() as out_dir:
        for _ in range(2):
            plain.append(_fit(faces, False, out_dir)[0])
            seconds, on_thread, written = _fit(faces, True, out_dir)
            watched.append(seconds)
            inline += on_thread
            files += written
    overhead = sum(watched) / sum(plain) - 1
    return [
        row(
            f"fit fer_cnn, 7,000 faces, {EPOCHS} epochs: with SaliencyCallback + GradCAMCallback "
            "(16 probe faces, every epoch) vs without",
            f"{sum(watched):.1f} s vs {sum(plain):.1f} s: {overhead:+.1%}",
            "<= +5%",
            overhead <= 0.05,
            f"2 fits each, alternated; {files} figures written; maps computed on the training "
            f"thread in {1000 * inline / (2 * EPOCHS):.0f} ms per epoch; per fit without: "
            + ", ".join(f"{s:.1f} s" for s in plain)
            + "; with: "
            + ", ".join(f"{s:.1f} s" for s in watched),
        )
    ]
