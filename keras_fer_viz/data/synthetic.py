"""Synthetic grayscale faces whose expression is known pixel by pixel.

`synthetic_faces` draws FER2013-like 48x48 faces procedurally. The emotion
is carried *only* by the features people read (eye opening, brow height and
angle, mouth curve, opening and width, a sneer, nose wrinkles); everything
else (face position, size, tilt, skin tone, lighting, background, hair,
contrast, noise, gaze) is drawn at random, independently of the class. The
`evidence` mask marks the pixels of the class-bearing features, so an
explanation can be scored against a known truth. With
``neutral_features=True`` the same faces are drawn with every class-bearing
feature in its Neutral form while the labels are kept: a control on which no
model can beat chance.

Everything is computed on whole batches with numpy (no loop over faces),
in chunks to keep memory bounded.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from keras_fer_viz.data.fer2013 import EMOTIONS

__all__ = ["SyntheticFaces", "synthetic_faces", "EXPRESSIONS"]

# Class-bearing parameters of each emotion, in face units (the head is an
# ellipse of half-width 0.8 and half-height 1.0; v grows downwards):
#   eye_open     eye half-height, as a multiple of 0.12
#   brow_raise   how far the brows sit above their rest position
#   brow_tilt    slope of the brow; > 0 lifts the inner ends (sad, fear),
#                < 0 pulls them down into a V (anger)
#   brow_arch    curvature of the brow (raised arches in surprise)
#   mouth_curve  > 0 lifts the mouth corners (smile), < 0 drops them
#   mouth_open   half-height of the opening, as a multiple of 0.13
#   mouth_width  half-width, as a multiple of 0.3
#   sneer        one-sided lift of the upper lip (disgust)
#   wrinkle      darkness of the wrinkles across the nose bridge
# fmt: off
EXPRESSIONS: dict[str, dict[str, float]] = {
    "Angry": dict(eye_open=0.55, brow_raise=-0.07, brow_tilt=-0.55, brow_arch=0.0,
                  mouth_curve=-0.35, mouth_open=0.0, mouth_width=0.85, sneer=0.0,
                  wrinkle=0.55),
    "Disgust": dict(eye_open=0.45, brow_raise=-0.04, brow_tilt=-0.15, brow_arch=0.0,
                    mouth_curve=-0.6, mouth_open=0.3, mouth_width=0.9, sneer=1.0,
                    wrinkle=1.0),
    "Fear": dict(eye_open=1.15, brow_raise=0.1, brow_tilt=0.5, brow_arch=0.0,
                 mouth_curve=-0.25, mouth_open=0.45, mouth_width=1.15, sneer=0.0,
                 wrinkle=0.0),
    "Happy": dict(eye_open=0.55, brow_raise=0.02, brow_tilt=0.0, brow_arch=0.3,
                  mouth_curve=1.0, mouth_open=0.4, mouth_width=1.2, sneer=0.0,
                  wrinkle=0.0),
    "Sad": dict(eye_open=0.65, brow_raise=0.02, brow_tilt=0.7, brow_arch=0.0,
                mouth_curve=-0.9, mouth_open=0.0, mouth_width=0.9, sneer=0.0,
                wrinkle=0.0),
    "Surprise": dict(eye_open=1.25, brow_raise=0.15, brow_tilt=0.0, brow_arch=1.0,
                     mouth_curve=0.0, mouth_open=1.0, mouth_width=0.65, sneer=0.0,
                     wrinkle=0.0),
    "Neutral": dict(eye_open=0.8, brow_raise=0.0, brow_tilt=0.0, brow_arch=0.3,
                    mouth_curve=0.0, mouth_open=0.0, mouth_width=1.0, sneer=0.0,
                    wrinkle=0.0),
}
_FEATURES = tuple(EXPRESSIONS["Neutral"])
# Per-face jitter of each class-bearing parameter (standard deviation): the
# classes overlap a little, as real expressions do.
_JITTER = dict(eye_open=0.08, brow_raise=0.02, brow_tilt=0.1, brow_arch=0.15,
               mouth_curve=0.12, mouth_open=0.06, mouth_width=0.06, sneer=0.1,
               wrinkle=0.1)
# fmt: on

_CHUNK = 128  # faces rendered at once: keeps the working arrays in cache


class SyntheticFaces(NamedTuple):
    """Faces from `synthetic_faces`: unpacks as ``images, labels, evidence``."""

    images: np.ndarray
    """uint8 (N, H, W, 1) grayscale faces."""
    labels: np.ndarray
    """int64 (N,) emotion indices into `EMOTIONS`."""
    evidence: np.ndarray
    """bool (N, H, W): pixels of the class-bearing features."""


def synthetic_faces(
    n: int, seed: int = 0, image_size: int = 48, *, neutral_features: bool = False
) -> SyntheticFaces:
    """Draws grayscale faces whose emotion is carried only by facial features.

    Use them to train and test without FER2013, and to check explanations
    against a known truth: `evidence` marks the eyes, brows, mouth and the
    nose bridge (where disgust and anger wrinkle the nose), the only places
    where the class can be read. Everything else varies at random and carries
    no class. Classes are balanced (counts differ by at most one) and shuffled.
    The output is a pure function of the arguments.

    Args:
        n: number of faces, >= 1.
        seed: seed of the random generator. Defaults to `0`.
        image_size: height and width in pixels, >= 16. Defaults to `48`.
        neutral_features: draw every class-bearing feature in its Neutral
            form while keeping the labels and everything else: a control set
            on which a model can only reach chance. Defaults to `False`.

    Returns:
        A `SyntheticFaces` tuple ``(images, labels, evidence)``: uint8
        (n, image_size, image_size, 1), int64 (n,) in ``[0, 7)`` and bool
        (n, image_size, image_size).

    Raises:
        ValueError: if `n`, `seed` or `image_size` is not an integer in range.

    Example:

    >>> faces = synthetic_faces(14, seed=1)
    >>> faces.images.shape, faces.images.dtype, faces.labels[:3].dtype
    ((14, 48, 48, 1), dtype('uint8'), dtype('int64'))
    >>> sorted(np.bincount(faces.labels).tolist())
    [2, 2, 2, 2, 2, 2, 2]
    """
    n = _check_int("n", n, minimum=1)
    image_size = _check_int("image_size", image_size, minimum=16)
    seed = _check_int("seed", seed, minimum=0)
    param_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    labels = param_rng.permutation(np.arange(n) % len(EMOTIONS)).astype(np.int64)
    params = _draw_params(param_rng, labels, neutral_features)

    images = np.empty((n, image_size, image_size, 1), np.uint8)
    evidence = np.empty((n, image_size, image_size), bool)
    for start in range(0, n, _CHUNK):
        part = slice(start, min(start + _CHUNK, n))
        chunk = {k: v[part] for k, v in params.items()}
        img, ev = _render(chunk, image_size, noise_rng)
        images[part, ..., 0] = img
        evidence[part] = ev
    return SyntheticFaces(images, labels, evidence)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Expected `{name}` to be an integer >= {minimum}. Received: {value!r}")
    return int(value)


def _draw_params(rng: np.random.Generator, labels: np.ndarray, neutral: bool) -> dict:
    """All per-face parameters, as float32 arrays of shape (n, 1, 1)."""
    n = len(labels)

    def u(lo, hi):
        return rng.uniform(lo, hi, n)

    p = dict(
        # Pose and identity: independent of the class.
        cx=u(-0.1, 0.1),
        cy=u(-0.04, 0.12),
        scale=u(0.8, 0.95),
        tilt=np.deg2rad(u(-10, 10)),
        eye_dx=u(-0.025, 0.025),
        eye_dy=u(-0.03, 0.03),
        mouth_dy=u(-0.04, 0.04),
        gaze_x=u(-0.05, 0.05),
        gaze_y=u(-0.02, 0.02),
        # Appearance.
        skin=u(0.45, 0.85),
        light=u(0.0, 0.35),
        light_angle=u(0, 2 * np.pi),
        bg=u(0.05, 0.95),
        bg_gx=u(-0.2, 0.2),
        bg_gy=u(-0.2, 0.2),
        hair=u(0.04, 0.45),
        hairline=u(-0.95, -0.62),
        hair_wave=u(0.0, 0.08),
        hair_phase=u(0, 2 * np.pi),
        hair_len=u(-0.3, 1.0),
        has_hair=rng.random(n) < 0.85,
        contrast=u(0.75, 1.2),
        brightness=u(-0.08, 0.08),
        noise=u(0.005, 0.05),
        sneer_side=rng.choice([-1.0, 1.0], n),
    )
    # Expression: the class prototype plus jitter. The jitter is drawn in
    # both modes so that neutral_features changes nothing but the class.
    table = np.array([[EXPRESSIONS[e][f] for f in _FEATURES] for e in EMOTIONS])
    protos = (
        table[labels]
        if not neutral
        else np.broadcast_to(table[EMOTIONS.index("Neutral")], (n, len(_FEATURES)))
    )
    jitter = rng.standard_normal((n, len(_FEATURES))) * np.array([_JITTER[f] for f in _FEATURES])
    for i, f in enumerate(_FEATURES):
        p[f] = protos[:, i] + jitter[:, i]
    for f in ("mouth_open", "sneer", "wrinkle"):
        p[f] = np.clip(p[f], 0.0, None)
    p["eye_open"] = np.clip(p["eye_open"], 0.25, None)
    p["mouth_width"] = np.clip(p["mouth_width"], 0.4, None)
    return {k: np.asarray(v, np.float32).reshape(n, 1, 1) for k, v in p.items()}


def _soft(d, inv_aa):
    """Anti-aliased inside mask of a shape with signed distance `d` (< 0 inside).

    `inv_aa` is one over the pixel size: the edge is one pixel wide.
    """
    m = d * -inv_aa
    m += 0.5
    return np.clip(m, 0.0, 1.0, out=m)


def _blend(img, mask, value):
    img += mask * (value - img)


def _render(p: dict, size: int, noise_rng: np.random.Generator):
    """Renders one chunk of faces; returns float images in [0, 255] and evidence."""
    f32 = np.float32
    n = p["cx"].shape[0]
    coords = (np.arange(size, dtype=f32) + f32(0.5)) * f32(2.0 / size) - f32(1.0)
    X, Y = coords[None, None, :], coords[:, None][None]
    aa = f32(2.0 / size) / p["scale"]  # one pixel, in face units
    inv_aa = 1.0 / aa

    # Face frame: translate, rotate and scale the image grid.
    cos, sin = np.cos(p["tilt"]), np.sin(p["tilt"])
    dx, dy = X - p["cx"], Y - p["cy"]
    u = (dx * cos + dy * sin) / p["scale"]
    v = (dy * cos - dx * sin) / p["scale"]
    au = np.abs(u)  # the face is symmetric: one formula draws both eyes and brows

    img = p["bg"] + p["bg_gx"] * X + p["bg_gy"] * Y + np.zeros((n, size, size), f32)

    # Hair behind the head: a larger oval cut at a random length.
    hair = p["hair"] * p["has_hair"]
    back = np.maximum(np.sqrt((u / 0.98) ** 2 + ((v + 0.08) / 1.12) ** 2) - 1.0, v - p["hair_len"])
    _blend(img, _soft(back, inv_aa) * p["has_hair"], hair)

    # Head, lit from a random side.
    head = np.sqrt((u / 0.8) ** 2 + v**2)
    shade = p["skin"] * (
        1.0 + p["light"] * (np.cos(p["light_angle"]) * u + np.sin(p["light_angle"]) * v) * 0.6
    )
    _blend(img, _soft((head - 1.0) * 0.8, inv_aa), shade)

    # Fringe: the head above a wavy hairline.
    line = p["hairline"] + p["hair_wave"] * np.cos(u * 7.0 + p["hair_phase"])
    _blend(img, _soft(np.maximum(v - line, (head - 1.0) * 0.8), inv_aa) * p["has_hair"], hair)

    skin = p["skin"]
    # Brows: a thick stroke above each eye; height, tilt and arch carry the class.
    ex = 0.33 + p["eye_dx"]
    ey = -0.14 + p["eye_dy"]
    t = (au - ex) / 0.17
    brow_v = (
        ey
        - 0.24
        - p["brow_raise"]
        + (p["brow_tilt"] * 0.1) * t
        - (p["brow_arch"] * 0.05) * (1.0 - t * t)
    )
    brow_d = np.maximum(np.abs(v - brow_v) - 0.035, (np.abs(t) - 1.0) * 0.17)
    brow = _soft(brow_d, inv_aa)
    _blend(img, brow, np.minimum(hair, skin * 0.45) + 0.04)

    # Eyes: sclera, iris clipped by the lids, and a dark lash line.
    rx, ry = f32(0.19), 0.12 * p["eye_open"]
    eu, ev = au - ex, v - ey
    eye_r = np.sqrt((eu / rx) ** 2 + (ev / ry) ** 2)
    eye_d = (eye_r - 1.0) * np.minimum(ry, rx)
    _blend(img, _soft(eye_d - 0.02, inv_aa), skin * 0.35)  # lid outline
    eye = _soft(eye_d, inv_aa)
    _blend(img, eye, 0.88)
    iris_d = np.sqrt((eu - p["gaze_x"] * np.sign(u)) ** 2 + (ev - p["gaze_y"]) ** 2) - 0.085
    _blend(img, _soft(iris_d, inv_aa) * eye, 0.18)

    # Nose: nostrils (identity) and wrinkles across the bridge (class).
    nostril = np.sqrt((au - 0.09) ** 2 + ((v - 0.24) / 0.7) ** 2) - 0.035
    _blend(img, _soft(nostril, inv_aa), skin * 0.55)
    bridge = np.abs(v - ey - 0.16)  # the bridge, between the eyes and the nostrils
    wrinkle_zone = np.maximum(au - 0.13, bridge - 0.09)
    lines = np.maximum(np.abs(bridge - 0.045) - 0.014, au - 0.11)
    _blend(img, _soft(lines, inv_aa) * np.minimum(p["wrinkle"], 1.0), skin * 0.45)

    # Mouth: a curved line (smile or frown), an opening, and an optional sneer.
    my = 0.5 + p["mouth_dy"]
    mw = 0.3 * p["mouth_width"]
    s = u / mw
    s2 = np.minimum(s * s, 1.0)
    centre = (
        my
        - 0.1 * p["mouth_curve"] * (s2 - 0.4)
        - 0.05 * p["sneer"] * np.maximum(s * p["sneer_side"], 0.0)
    )
    half_open = 0.13 * p["mouth_open"] * np.sqrt(1.0 - s2)
    ends = (np.abs(s) - 1.0) * mw
    lips_d = np.maximum(np.abs(v - centre) - half_open - 0.028, ends)
    _blend(img, _soft(lips_d, inv_aa), skin * 0.62)
    inside_d = np.maximum(np.abs(v - centre) - half_open + 0.004, ends + 0.03)
    _blend(img, _soft(inside_d, inv_aa), 0.08)

    img = (img - 0.5) * p["contrast"] + 0.5 + p["brightness"]
    img += noise_rng.standard_normal(img.shape, dtype=f32) * p["noise"]
    np.clip(img, 0.0, 1.0, out=img)
    image = (img * 255.0 + 0.5).astype(np.uint8)

    margin = aa  # a pixel around each feature still belongs to it
    evidence = (
        (brow_d < margin) | (eye_d - 0.02 < margin) | (wrinkle_zone < margin) | (lips_d < margin)
    )
    return image, evidence
