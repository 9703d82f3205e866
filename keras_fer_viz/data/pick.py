"""Picking images by class: a few seeded images of each class, in class order.

`pick_faces` chooses the images a figure or a callback explains (one or a
few per class); `class_index` reads a class given by name, matched exactly
or ignoring case, so the spec's "Angry" finds an image folder's ``angry/``.
numpy only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from keras_fer_viz.data.fer2013 import EMOTIONS

__all__ = ["class_index", "pick_faces"]


def class_index(name: str, class_names: Iterable[str]) -> int:
    """The label of class `name`: its position in `class_names`, matched exactly, else
    ignoring case (an image folder's ``angry/`` is the spec's "Angry").

    Raises:
        ValueError: if no class has that name.
    """
    names = [str(c) for c in class_names]
    if name in names:
        return names.index(name)
    folded = [n.casefold() for n in names]
    if str(name).casefold() in folded:
        return folded.index(str(name).casefold())
    raise ValueError(f"Expected a class name, one of {names}. Received: {name!r}")


def pick_faces(
    y: ArrayLike,
    classes: Literal["all"] | Iterable[str | int] = "all",
    images_per_class: int = 1,
    seed: int = 0,
    class_names: Sequence[str] = EMOTIONS,
) -> np.ndarray:
    """Indices of `images_per_class` images of each class, in class order, seeded.

    Args:
        y: integer labels (N,).
        classes: "all", or class names (matched as in `class_index`) and
            labels. Defaults to `"all"`.
        images_per_class: images picked per class. Defaults to `1`.
        seed: the random seed. Defaults to `0`.
        class_names: the names of the classes, any number. Defaults to
            `EMOTIONS`.

    Returns:
        int (K,) indices into `y`: each class's images in index order, the
        classes in the order asked. A class without images is left out.

    Raises:
        ValueError: if no class has images, or a class name is unknown.

    Example:

    >>> pick_faces([0, 1, 1, 2, 0], images_per_class=1, class_names=("a", "b", "c")).tolist()
    [4, 2, 3]
    """
    y = np.asarray(y)
    wanted = (
        range(len(class_names))
        if classes == "all"
        else [class_index(c, class_names) if isinstance(c, str) else int(c) for c in classes]
    )
    rng = np.random.default_rng(seed)
    chosen = []
    for c in wanted:  # a few classes: the loop is over classes, not images
        members = np.flatnonzero(y == c)
        if len(members):
            take = min(images_per_class, len(members))
            chosen.extend(sorted(rng.choice(members, take, replace=False).tolist()))
    if not chosen:
        raise ValueError(f"None of the classes {list(wanted)} has images in the data")
    return np.array(chosen)
