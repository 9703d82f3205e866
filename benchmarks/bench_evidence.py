"""Do the maps fall on the pixels that carry the expression?

On 700 held-out synthetic faces, with the trained reference CNN and each
face's true class as target: the share of each method's map mass that lies
inside the evidence mask (the pixels of the class-bearing features), summed
over all maps, divided by the mask's share of the image (what a map spread
evenly would get). The target for Saliency and Grad-CAM is a ratio >= 2.
CAM is read from a GAP head trained by `gap_head` on the training faces.
The notes give the mean of the per-image shares and the number of blank
maps (all zero: Grad-CAM's weighted sum is negative everywhere before its
ReLU), which carry no mass.
"""

from __future__ import annotations

import numpy as np

from benchmarks._reference import held_out_faces, trained_reference
from benchmarks._timing import row
from keras_fer_viz import (
    CAM,
    GradCAM,
    GradCAMPlusPlus,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
    gap_head,
    synthetic_faces,
)

TARGETS = {"Saliency": 2.0, "GradCAM": 2.0, "CAM": 2.0}


def evidence_ratio(maps: np.ndarray, evidence: np.ndarray) -> dict:
    """Shares of map mass inside the evidence mask, and the mask's share of the image."""
    mass = maps.reshape(len(maps), -1).astype(np.float64)
    ev = evidence.reshape(len(maps), -1)
    total, inside = mass.sum(1), (mass * ev).sum(1)
    shown = total > 0
    return dict(
        pooled=float(inside.sum() / max(total.sum(), 1e-12)),
        per_image=float((inside[shown] / total[shown]).mean()) if shown.any() else 0.0,
        blank=int((~shown).sum()),
        area=float(ev.mean()),
    )


def run() -> list[dict]:
    model = trained_reference()
    faces = held_out_faces()
    methods = {
        "Saliency": Saliency(model),
        "SmoothGrad": SmoothGrad(model),
        "IntegratedGradients": IntegratedGradients(model),
        "GradCAM": GradCAM(model),
        "GradCAMPlusPlus": GradCAMPlusPlus(model),
    }
    # CAM needs a GAP head: trained on the training faces (seed 0), not the
    # held-out ones (seed 1).
    train = synthetic_faces(7000, seed=0)
    methods["CAM"] = CAM(gap_head(model, data=(train.images, train.labels), epochs=5))
    rows = []
    for name, explainer in methods.items():
        maps = explainer.explain(faces.images, target=faces.labels)
        r = evidence_ratio(maps, faces.evidence)
        ratio = r["pooled"] / r["area"]
        bound = TARGETS.get(name)
        where = f", layer {explainer.layer.name}" if hasattr(explainer, "layer") else ""
        rows.append(
            row(
                f"{name}: share of map mass inside the evidence mask / mask area share",
                f"{r['pooled']:.3f} / {r['area']:.3f} = {ratio:.2f}x",
                f">= {bound:g}x" if bound else "-",
                None if bound is None else ratio >= bound,
                f"{len(faces.labels)} held-out faces, target = true class{where}; mean of "
                f"per-image shares {r['per_image'] / r['area']:.2f}x over the "
                f"{len(faces.labels) - r['blank']} non-blank maps; {r['blank']} blank maps",
            )
        )
    return rows
