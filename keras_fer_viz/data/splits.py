"""Train, validation and held-out splits of a data source: a FER2013 CSV file,
a folder of class folders of images, or synthetic faces.

`load_splits` is what the command line's ``--data`` reads: a FER2013 file's
Usage column (Training / PublicTest / PrivateTest) when it has one, a
folder's ``train``/``val``/``test`` sub-folders when it has them, and a
seeded 80/10/10 split otherwise, stratified by class whenever every class
has enough images (scikit-learn's ``train_test_split``). Keras is not
needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from keras_fer_viz.data.fer2013 import EMOTIONS, load_fer2013_usage
from keras_fer_viz.data.folders import class_folders, load_image_folder, split_folders
from keras_fer_viz.data.synthetic import synthetic_faces

__all__ = ["SYNTHETIC", "load_splits"]

#: The data source name of the built-in synthetic faces.
SYNTHETIC = "synthetic"


def _split(
    x, y, share: float, seed: int, min_count: int
) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """Splits `share` of (x, y) off: ``(kept, carved)``.

    Stratified by class when every class present has `min_count` images and
    both parts can hold one of each; a plain random split otherwise.
    """
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    present = counts[counts > 0]
    carved = int(np.ceil(share * len(y)))
    stratify = (
        y if present.min() >= min_count and min(carved, len(y) - carved) >= len(present) else None
    )
    x_a, x_b, y_a, y_b = train_test_split(
        x, y, test_size=share, random_state=seed, stratify=stratify
    )
    return (x_a, y_a), (x_b, y_b)


def _random_split(x, y, seed: int) -> tuple[tuple[Any, Any], tuple[Any, Any], tuple[Any, Any]]:
    """80/10/10 train/validation/test, stratified when every class has enough images."""
    train, rest = _split(x, y, 0.2, seed, min_count=3)
    val, test = _split(*rest, 0.5, seed, min_count=2)
    return train, val, test


def _carve(x, y, share: float, seed: int) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """Splits `share` of (x, y) off, stratified when it can be: (kept, carved)."""
    return _split(x, y, share, seed, min_count=2)


def _folder_splits(path: Path, seed: int, image_size, color_mode):
    found = split_folders(path)
    if found is None:
        x, y, names = load_image_folder(path, image_size, color_mode)
        train, val, test = _random_split(x, y, seed)
        how = "random 80/10/10 split"
    else:
        train_folder = cast(Path, found["train"])  # split_folders insists on one
        x, y, names = load_image_folder(train_folder, image_size, color_mode)
        mode: Literal["grayscale", "rgb"] = "grayscale" if x.shape[-1] == 1 else "rgb"
        read = {}
        for split in ("val", "test"):
            folder = found[split]
            if folder is None:
                continue
            extra = sorted(set(class_folders(folder)) - set(names))
            if extra:
                raise ValueError(
                    f"{folder} has class folders {extra} that {found['train']} lacks. Expected "
                    f"the classes of the training folder: {list(names)}."
                )
            size = image_size if image_size is not None else x.shape[1:3]
            read[split] = load_image_folder(folder, size, mode, names)[:2]
        train = (x, y)
        if "test" not in read:
            train, read["test"] = _carve(train[0], train[1], 0.1, seed)
        if "val" not in read:
            train, read["val"] = _carve(train[0], train[1], 0.1, seed)
        val, test = read["val"], read["test"]
        given = [f.name for f in (found["train"], found["val"], found["test"]) if f is not None]
        how = (
            "/, ".join(given)
            + "/ folders"
            + ("" if len(given) == 3 else "; missing splits carved from the training images")
        )
    return dict(
        train=train,
        val=val,
        test=test,
        evidence=None,
        class_names=names,
        source=f"{path.name}/ (image folder, {len(names)} classes from its folders; {how})",
    )


def load_splits(
    data: str,
    samples: int = 7000,
    seed: int = 0,
    image_size: Sequence[int] | None = None,
    color_mode: Literal["grayscale", "rgb"] | None = None,
) -> dict[str, Any]:
    """Train, validation and held-out splits of a data source.

    Args:
        data: a FER2013 CSV file, a folder of class folders of images (see
            `keras_fer_viz.data.load_image_folder`; sub-folders ``train``,
            ``val`` and ``test`` are taken as splits), or "synthetic".
        samples: synthetic training faces. Defaults to `7000`.
        seed: the seed of the synthetic faces and of random splits.
            Defaults to `0`.
        image_size: (height, width) to resize a folder's images to as they
            are read, or None to keep their size. Defaults to `None`.
        color_mode: a folder's colour mode (see `load_image_folder`).
            Defaults to `None`.

    Returns:
        A dict with keys "train", "val" and "test", each ``(x, y)`` of uint8
        images at the data's size, "evidence" (the held-out faces'
        ground-truth masks, synthetic data only, else None), "class_names"
        and "source", a short description.

    Raises:
        FileNotFoundError: if `data` is neither a file, a folder nor
            "synthetic".
        ValueError: if a file or folder cannot be read as images and labels.

    Example:

    >>> splits = load_splits("synthetic", samples=70)
    >>> [len(splits[k][1]) for k in ("train", "val", "test")], splits["class_names"][0]
    ([63, 7, 700], 'Angry')
    """
    if data == SYNTHETIC:
        faces = synthetic_faces(samples, seed=seed)
        held = synthetic_faces(max(700, samples // 5), seed=seed + 1)
        train, val = _carve(faces.images, faces.labels, 0.1, seed)
        return dict(
            train=train,
            val=val,
            test=(held.images, held.labels),
            evidence=held.evidence,
            class_names=EMOTIONS,
            source=f"synthetic faces (seed {seed})",
        )

    path = Path(data)
    if path.is_dir():
        return _folder_splits(path, seed, image_size, color_mode)
    if not path.is_file():
        raise FileNotFoundError(
            f"Expected data to be a FER2013 CSV file, a folder of class folders of images "
            f"or '{SYNTHETIC}'. Received: {data!r} (no such file or folder)"
        )
    x, y, usage = load_fer2013_usage(path)
    if usage is not None and {"Training", "PublicTest", "PrivateTest"} <= set(np.unique(usage)):
        pick = {u: usage == u for u in ("Training", "PublicTest", "PrivateTest")}
        return dict(
            train=(x[pick["Training"]], y[pick["Training"]]),
            val=(x[pick["PublicTest"]], y[pick["PublicTest"]]),
            test=(x[pick["PrivateTest"]], y[pick["PrivateTest"]]),
            evidence=None,
            class_names=EMOTIONS,
            source=f"{path.name} (Training / PublicTest / PrivateTest)",
        )
    train, val, test = _random_split(x, y, seed)
    return dict(
        train=train,
        val=val,
        test=test,
        evidence=None,
        class_names=EMOTIONS,
        source=f"{path.name} (random 80/10/10 split)",
    )
