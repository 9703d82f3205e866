"""Image folders: one sub-folder of images per class, as Keras reads them.

`load_image_folder` reads the layout of
`keras.utils.image_dataset_from_directory`::

    DIR/
      cat/  a.png  b.jpg ...
      dog/  c.png ...

into numpy arrays: class names are the sub-folders' names, sorted (label
``i`` is ``class_names[i]``, as Keras numbers them), images are every
``.bmp``, ``.gif``, ``.jpeg``, ``.jpg`` or ``.png`` file below a class
folder (searched recursively, like Keras), read with Pillow on a small
thread pool. `split_folders` finds data already split into
``train/``, ``val/`` (or ``validation/``) and ``test/`` folders, each in
that layout (the Kaggle image-folder edition of FER2013 has ``train/`` and
``test/``).

Neither needs Keras or TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "SPLIT_NAMES", "class_folders", "load_image_folder", "split_folders"]

#: File endings read as images, those of keras.utils.image_dataset_from_directory.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
#: Folder names taken as splits by `split_folders`: split -> accepted names.
SPLIT_NAMES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
_COLOR_MODES = (None, "grayscale", "rgb")


def class_folders(path: str | os.PathLike[str]) -> list[str]:
    """The class names of an image folder: its sub-folders' names, sorted (as Keras)."""
    root = Path(path)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for parent, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(
            Path(parent) / n
            for n in sorted(names)
            if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")
        )
    return found


def split_folders(path: str | os.PathLike[str]) -> dict[str, Path | None] | None:
    """The split folders of `path`, if it holds data split into train/val/test.

    Args:
        path: a folder.

    Returns:
        ``{"train": Path, "val": Path or None, "test": Path or None}`` when
        every sub-folder of `path` is named as a split (``train``/``training``,
        ``val``/``valid``/``validation``, ``test``/``testing``, any case) and
        one of them is the training split; None otherwise (then `path` is a
        folder of class folders).

    Raises:
        ValueError: if two sub-folders name the same split (``val`` and
            ``validation``).
    """
    root = Path(path)
    subdirs = class_folders(root)
    if not subdirs:
        return None
    found: dict[str, Path] = {}
    for name in subdirs:
        split = next((s for s, names in SPLIT_NAMES.items() if name.lower() in names), None)
        if split is None:
            return None
        if split in found:
            raise ValueError(
                f"{root} has two folders for the {split} split: {found[split].name!r} and "
                f"{name!r}. Expected one. Rename or move one of them."
            )
        found[split] = root / name
    if "train" not in found:
        return None
    return {s: found.get(s) for s in SPLIT_NAMES}


def _read(file: Path, mode: str, size):
    from PIL import Image

    try:
        with Image.open(file) as image:
            image.seek(0)  # the first frame of a GIF
            image = image.convert(mode)
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except OSError as err:
        raise ValueError(
            f"Cannot read {file} as an image: {err}. Expected a .bmp, .gif, .jpeg, .jpg or "
            ".png image file; remove or fix the file."
        ) from None


def load_image_folder(
    path: str | os.PathLike[str],
    image_size: Sequence[int] | None = None,
    color_mode: Literal["grayscale", "rgb"] | None = None,
    class_names: Iterable[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Reads a folder of class folders of images into arrays.

    The layout is Keras' (`keras.utils.image_dataset_from_directory`):
    ``path/<class name>/<image>``, class names sorted, images found
    recursively below each class folder, files other than images ignored.

    Args:
        path: the folder.
        image_size: (height, width) to resize every image to (bilinear), or
            None to keep the files' size, which must then be the same for
            all. Defaults to `None`.
        color_mode: "grayscale" (1 channel), "rgb" (3 channels; an alpha
            channel is dropped), or None: "grayscale" when every image is
            gray (even if stored as RGB), else "rgb". Defaults to `None`.
        class_names: the classes, in label order, to read instead of every
            sub-folder (as Keras' `class_names`): each must be a sub-folder,
            and may hold no image. Use it to read a test split with the
            classes of the training split. Defaults to `None`.

    Returns:
        A tuple ``(images, labels, class_names)``: uint8 images (N, H, W, C),
        int64 labels (N,) indexing `class_names`, and the class names
        (a tuple of str).

    Raises:
        FileNotFoundError: if `path` is not a folder.
        ValueError: if it has no class folder or no image, if an image cannot
            be read, if sizes differ and `image_size` is None, or if an
            argument is invalid.

    Example:

    >>> x, y, names = load_image_folder("flowers/", image_size=(64, 64))  # doctest: +SKIP
    >>> x.shape, names  # doctest: +SKIP
    ((3670, 64, 64, 3), ('daisy', 'dandelion', 'roses', 'sunflowers', 'tulips'))
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Expected a folder of class folders (DIR/<class name>/<images>). "
            f"Received: {str(path)!r}, which is not a folder."
        )
    if color_mode not in _COLOR_MODES:
        raise ValueError(
            f"Expected `color_mode` to be one of {_COLOR_MODES}. Received: {color_mode!r}"
        )
    if image_size is not None:
        try:
            size = tuple(int(s) for s in image_size)
        except (TypeError, ValueError):
            size = ()
        if len(size) != 2 or min(size) < 1:
            raise ValueError(
                "Expected `image_size` to be (height, width), two positive ints, or None. "
                f"Received: image_size={image_size!r}"
            )
        image_size = size
    subdirs = class_folders(root)
    if class_names is None:
        names = subdirs
    else:
        names = [str(c) for c in class_names]
        missing = [c for c in names if c not in subdirs]
        if missing or len(set(names)) != len(names):
            raise ValueError(
                f"Expected `class_names` to be distinct sub-folders of {root}. "
                f"Received: {names}; the sub-folders are {subdirs}"
            )
    if len(names) < 1:
        raise ValueError(
            f"{root} has no class folder. Expected the layout DIR/<class name>/<images> "
            "(one sub-folder of images per class, as keras.utils.image_dataset_from_directory "
            "reads), e.g. DIR/cat/1.png and DIR/dog/2.png."
        )
    files, labels = [], []
    for label, name in enumerate(names):
        found = _image_files(root / name)
        files.extend(found)
        labels.extend([label] * len(found))
    if not files:
        raise ValueError(
            f"{root} has class folders {names} but no image in them. Expected files ending "
            f"in {', '.join(IMAGE_EXTENSIONS)}."
        )

    mode = "L" if color_mode == "grayscale" else "RGB"
    workers = min(4, os.cpu_count() or 1, len(files))
    with ThreadPoolExecutor(workers) as pool:
        arrays = list(pool.map(lambda f: _read(f, mode, image_size), files))
    shapes: dict[tuple[int, ...], Path] = {}
    for file, a in zip(files, arrays, strict=True):
        shapes.setdefault(a.shape[:2], file)
    if len(shapes) > 1:
        (s1, f1), (s2, f2) = list(shapes.items())[:2]
        raise ValueError(
            f"The images in {root} have {len(shapes)} different sizes, e.g. "
            f"{f1.relative_to(root)} is {s1[0]}x{s1[1]} and {f2.relative_to(root)} is "
            f"{s2[0]}x{s2[1]}. Expected one size; pass image_size=(height, width) to resize "
            "them all as they are read."
        )
    images = np.stack(arrays)
    if images.ndim == 3:
        images = images[..., None]
    elif color_mode is None and (images == images[..., :1]).all():
        images = np.ascontiguousarray(images[..., :1])  # every image is gray
    return images, np.asarray(labels, np.int64), tuple(names)
