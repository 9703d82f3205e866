"""Do the maps fall on the pixels that carry the expression?

On 700 held-out synthetic faces, with the trained reference CNN and each
face's true class as target: the share of each method's map mass that lies
inside the evidence mask (the pixels of the class-bearing features),
divided by the mask's share of the image (what a map spread evenly would
get). The target for Saliency and Grad-CAM is a ratio >= 2.
"""

from __future__ import annotations

import numpy as np

from benchmarks._reference import held_out_faces, trained_reference
from benchmarks._timing import row
from keras_fer_viz import GradCAM, GradCAMPlusPlus, IntegratedGradients, Saliency, SmoothGrad

TARGETS = {"Saliency": 2.0, "GradCAM": 2.0}


def evidence_ratio(maps: np.ndarray, evidence: np.ndarray) -> tuple[float, float]:
    """(mean share of map mass inside the mask, mean share of the image the mask covers)."""
    mass = maps.reshape(len(maps), -1)
    inside = (mass * evidence.reshape(len(maps), -1)).sum(1) / np.maximum(mass.sum(1), 1e-12)
    return float(inside.mean()), float(evidence.mean())


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
    rows = []
    for name, explainer in methods.items():
        maps = explainer.explain(faces.images, target=faces.labels)
        inside, area = evidence_ratio(maps, faces.evidence)
        ratio = inside / area
        bound = TARGETS.get(name)
        rows.append(
            row(
                f"{name}: map mass inside the evidence mask / mask area share",
                f"{inside:.3f} / {area:.3f} = {ratio:.2f}x",
                f">= {bound:g}x" if bound else "-",
                None if bound is None else ratio >= bound,
                f"{len(faces.labels)} held-out faces, target = true class, "
                f"layer {explainer.layer.name}"
                if hasattr(explainer, "layer")
                else f"{len(faces.labels)} held-out faces, target = true class",
            )
        )
    return rows
