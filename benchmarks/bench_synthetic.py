"""Synthetic faces: 10,000 faces with evidence masks in <= 3 s."""

from __future__ import annotations

from benchmarks._timing import median_time, row
from keras_fer_viz.data import synthetic_faces


def run() -> list[dict]:
    seconds = median_time(lambda: synthetic_faces(10_000, seed=0), repeat=3)
    return [
        row(
            "synthetic_faces(10_000), median of 3",
            f"{seconds:.2f} s",
            "<= 3 s",
            seconds <= 3.0,
            "images, labels and evidence masks, 48x48",
        )
    ]
