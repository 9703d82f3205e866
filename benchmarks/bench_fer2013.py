"""FER2013 parsing: the vectorised loader vs. the usual per-row split() loop.

Target: >= 5x faster on a 35,887-row file in the FER2013 format (written
from synthetic faces, with the real file's Usage split), same arrays.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks._timing import median_time, row
from keras_fer_viz.data import load_fer2013, synthetic_faces

ROWS = 35_887
SPLIT = {"Training": 28_709, "PublicTest": 3_589, "PrivateTest": 3_589}


def write_fer2013(path: Path, n: int = ROWS, seed: int = 0) -> None:
    """Writes an n-row FER2013-format CSV from synthetic faces."""
    faces = synthetic_faces(n, seed=seed)
    usage = np.repeat(list(SPLIT), [round(n * v / ROWS) for v in SPLIT.values()])
    usage = np.resize(usage, n)
    names = np.array([str(i) for i in range(256)])
    with open(path, "w") as f:
        f.write("emotion,pixels,Usage\n")
        for img, label, use in zip(faces.images.reshape(n, -1), faces.labels, usage, strict=True):
            f.write(f"{label},{' '.join(names[img].tolist())},{use}\n")


def baseline(path):
    """How the file is usually read: one split() per row, one array per row."""
    images, labels = [], []
    with open(path) as f:
        next(f)
        for line in f:
            emotion, pixels, _usage = line.rstrip("\n").split(",")
            labels.append(int(emotion))
            images.append(np.array(pixels.split(), dtype=np.uint8))
    return np.stack(images).reshape(-1, 48, 48, 1), np.array(labels, np.int64)


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fer2013.csv"
        write_fer2013(path)
        size_mb = path.stat().st_size / 1e6
        ours = load_fer2013(path)
        ref = baseline(path)
        same = np.array_equal(ours[0], ref[0]) and np.array_equal(ours[1], ref[1])
        t_ours = median_time(lambda: load_fer2013(path), repeat=3)
        t_base = median_time(lambda: baseline(path), repeat=3, warmup=0)
    speedup = t_base / t_ours
    return [
        row(
            f"load_fer2013, {ROWS:,} rows ({size_mb:.0f} MB) vs per-row split() loop",
            f"{t_ours:.2f} s vs {t_base:.2f} s: {speedup:.1f}x",
            ">= 5x",
            speedup >= 5 and same,
            "identical arrays" if same else "ARRAYS DIFFER",
        )
    ]


if __name__ == "__main__":
    for r in run():
        print(r)
