"""How far to trust each method's maps, on the trained reference CNN.

Every registered method (kfv.EXPLAINERS) is checked on held-out synthetic
faces, targets = true class:

- deletion and insertion AUC (Petsiuk et al. 2018; 70 faces, 20 steps,
  removed pixels set to the face's mean, revealed on a blurred face), with
  the random order as reference;
- pointing game and evidence mass against the faces' ground-truth masks
  (70 faces), with the chance level;
- mean rank correlation to the original maps once every layer of a copy of
  the model is re-initialised (cascading randomisation, Adebayo et al. 2018;
  14 faces; 0 is what an explanation of the model should reach).

There is no pass/fail target: the notes say where a method fails a check
(deletion AUC not below the random order's, insertion AUC not above it,
pointing game under twice chance, rank correlation above 0.2 after full
randomisation, or above 0.9 once the top layer is randomised: a map that
ignores the output layer cannot be class-specific) and where it passes
only narrowly (an AUC within a fifth of the random order's, a pointing
game under three times chance).
"""

from __future__ import annotations

from benchmarks._reference import held_out_faces, trained_reference
from benchmarks._timing import row
from keras_fer_viz import EXPLAINERS, gap_head, synthetic_faces
from keras_fer_viz.data import pick_faces
from keras_fer_viz.metrics import (
    deletion_curve,
    evidence_scores,
    insertion_curve,
    random_maps,
    randomization_check,
)


def run() -> list[dict]:
    model = trained_reference()
    faces = held_out_faces()
    index = pick_faces(faces.labels, "all", 10, seed=0)
    x, y, evidence = faces.images[index], faces.labels[index], faces.evidence[index]
    few = pick_faces(faces.labels, "all", 2, seed=1)
    train = synthetic_faces(7000, seed=0)
    cam_model = gap_head(model, data=(train.images, train.labels), epochs=5, verbose=0)
    # Every registered method, with its defaults (LIME: 500 samples per face).
    factories = {
        cls.__name__: (
            cam_model if name == "cam" else model,
            (lambda m, cls=cls: cls(m, samples=500, verbose=0)) if name == "lime" else cls,
        )
        for name, cls in EXPLAINERS.items()
    }
    noise = random_maps(x, seed=0)
    ref_del = deletion_curve(model, x, noise, y).mean_auc
    ref_ins = insertion_curve(model, x, noise, y).mean_auc
    rows = [
        row(
            "random order (reference)",
            f"deletion AUC {ref_del:.3f}, insertion AUC {ref_ins:.3f}",
            "-",
            None,
            f"{len(y)} faces; evidence chance level {evidence.mean():.3f}",
        )
    ]
    for name, (owner, factory) in factories.items():
        maps = factory(owner).explain(x, target=y)
        d = deletion_curve(model, x, maps, y).mean_auc
        i = insertion_curve(model, x, maps, y).mean_auc
        scores = evidence_scores(maps, evidence).mean()
        check = randomization_check(factory, owner, faces.images[few], faces.labels[few])
        rho = check.final_spearman
        problems = []
        if d >= ref_del:
            problems.append("deletion no better than random order")
        if i <= ref_ins:
            problems.append("insertion no better than random order")
        if scores["pointing"] < 2 * scores["chance"]:
            problems.append("pointing game under twice chance")
        if rho > 0.2:
            problems.append(f"maps survive full randomisation (rank corr. {rho:.2f})")
        first = check.spearman.mean(axis=1)
        if first[0] > 0.9:
            problems.append(
                f"maps barely change when the top layer is randomised (rank corr. {first[0]:.2f})"
            )
        weak = []
        if ref_del > d > 0.8 * ref_del:
            weak.append("deletion close to the random order")
        if ref_ins < i < 1.2 * ref_ins:
            weak.append("insertion close to the random order")
        if 2 * scores["chance"] <= scores["pointing"] < 3 * scores["chance"]:
            weak.append("pointing game under three times chance")
        rows.append(
            row(
                f"{name}: deletion / insertion AUC, pointing game, evidence mass, rank corr. "
                "after full randomisation",
                f"{d:.3f} / {i:.3f}, {scores['pointing']:.2f}, {scores['mass']:.2f}, {rho:.2f}",
                "-",
                None,
                ("fails: " + "; ".join(problems) if problems else "passes every check")
                + ("; narrowly: " + ", ".join(weak) if weak else "")
                + f". Rank corr. after the first {min(4, len(first))} randomised layers "
                + ", ".join(f"{v:.2f}" for v in first[:4]),
            )
        )
    return rows
