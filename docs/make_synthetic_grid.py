"""Draws docs/synthetic_faces.png: five synthetic faces per emotion and their evidence.

Run from the repository root: ``python docs/make_synthetic_grid.py``.
"""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from keras_fer_viz.data import EMOTIONS, synthetic_faces

OUT = Path(__file__).resolve().parent / "synthetic_faces.png"


def main(per_class: int = 3, seed: int = 3) -> None:
    faces = synthetic_faces(7 * 10, seed=seed)
    fig = Figure(figsize=(7 * 1.2, 2 * per_class * 1.25), layout="constrained")
    axes = fig.subplots(2 * per_class, 7)
    for c, name in enumerate(EMOTIONS):
        for r, i in enumerate(np.flatnonzero(faces.labels == c)[:per_class]):
            axes[2 * r, c].imshow(faces.images[i, ..., 0], cmap="gray", vmin=0, vmax=255)
            axes[2 * r + 1, c].imshow(faces.evidence[i], cmap="gray", vmin=0, vmax=1)
        axes[0, c].set_title(name, fontsize=10)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
