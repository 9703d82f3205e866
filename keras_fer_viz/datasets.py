"""Explaining whole datasets: class-average maps with memory independent of their size.

`explain_dataset` streams a dataset through one registered method and
keeps, per pair (true class i, predicted class j), the sum of the maps and
their count: the mean map of each cell of the confusion matrix, which
answers "where does the model look when it gets Happy right, and when it
takes Fear for Surprise?" over a whole test set. Only one batch of maps is
in memory at a time. With ``out=DIR`` every map is also written to disk as
it goes, and a run that was interrupted (killed at any moment) resumes from
its last completed chunk.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import keras

    from keras_fer_viz._explainer import Explainer

__all__ = ["DatasetExplanation", "explain_dataset"]

#: Images per chunk when the data are arrays (a chunk is the unit of resuming).
CHUNK = 512
_TARGETS = ("label", "predicted")
_ENGINES = ("local", "ray")


@dataclass
class DatasetExplanation:
    """What `explain_dataset` found over a dataset.

    Attributes:
        method: the registered name of the method (``kfv.EXPLAINERS``).
        class_means: (C, C, H, W) float32: the mean map over the images of
            true class i predicted as j (zeros where there are none).
        counts: (C, C) int64: how many images of true class i were predicted
            as j (the confusion matrix).
        predictions: (N,) int64 predicted classes, in the data's order.
        labels: (N,) int64 true classes, in the data's order.
        out: the folder holding ``maps.npy`` (N, H, W), ``predictions.npy``
            and ``labels.npy``, or None when nothing was written.
    """

    method: str
    class_means: np.ndarray
    counts: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    out: Path | None = None

    def class_mean(self, true: int, predicted: int | None = None) -> np.ndarray:
        """The mean map of true class `true` (all its images when `predicted` is None).

        Example:

        >>> import numpy as np
        >>> from keras_fer_viz.datasets import DatasetExplanation
        >>> means = np.zeros((2, 2, 1, 1), np.float32)
        >>> means[0, 0], means[0, 1] = 1.0, 4.0
        >>> counts = np.array([[3, 1], [0, 2]])
        >>> r = DatasetExplanation("saliency", means, counts, np.zeros(6), np.zeros(6))
        >>> float(r.class_mean(0)[0, 0])  # (3 * 1.0 + 1 * 4.0) / 4
        1.75
        """
        if predicted is not None:
            return self.class_means[true, predicted]
        n = self.counts[true]
        total = np.tensordot(n.astype(np.float64), self.class_means[true], axes=1)
        return (total / max(int(n.sum()), 1)).astype(np.float32)


def explain_dataset(
    method: str | type[Explainer],
    model: keras.Model | str | os.PathLike[str],
    data: tuple[ArrayLike, ArrayLike] | Iterable[Any],
    *,
    target: Literal["label", "predicted"] = "label",
    out: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    engine: Literal["local", "ray"] = "local",
    num_workers: int | None = None,
    verbose: bool | Literal["auto"] = "auto",
    **options: Any,
) -> DatasetExplanation:
    """Explains every image of a dataset and averages the maps per true and predicted class.

    The data stream through the model in chunks: memory holds one chunk's
    maps and the (C, C, H, W) sums, whatever the number of images. With
    `out`, the maps are also written as they are made; if the run is
    interrupted, calling again with the same arguments resumes after the
    last completed chunk and ends with the results of an uninterrupted run.
    A folder that holds a run with other arguments is refused. No file is
    ever half-written: chunks are written atomically, and ``maps.npy``,
    ``predictions.npy`` and ``labels.npy`` appear only once complete.

    Args:
        method: a registered method's name (``"grad_cam"``, see
            ``kfv.EXPLAINERS``) or an explainer class.
        model: a Keras model, or the path of a ``.keras`` or ``.h5`` file
            (loaded in Keras' safe mode, uncompiled).
        data: the images and their true classes: a pair of arrays ``(x, y)``
            (taken in chunks of 512), a ``tf.data.Dataset`` of ``(x, y)``
            batches, a ``keras.utils.PyDataset``, or any iterable of
            ``(x, y)`` batches (a third element, sample weights, is
            ignored). ``y`` holds class indices or one-hot rows. Every
            source gives the same result.
        target: ``"label"`` (explain each image's true class) or
            ``"predicted"`` (its predicted class). Defaults to `"label"`.
        out: a folder for ``maps.npy`` (N, H, W) float32,
            ``predictions.npy`` and ``labels.npy`` (N,) int64, or None to
            keep only the class means. Defaults to `None`.
        batch_size: model inputs per compiled call, passed to the method;
            None sizes calls by image size. Defaults to `None`.
        engine: ``"local"`` (this process; several devices when a
            ``keras.distribution.DataParallel`` (JAX) or a ``tf.distribute``
            strategy scope (TensorFlow) is active: each call's batch is split
            over them) or ``"ray"``: chunks go to Ray actors that each load
            the model (shipped through Ray's object store) and explain whole
            chunks; Ray is started locally unless ``ray.init(address=...)``
            connected to a cluster first. Needs the ``ray`` extra. The result
            equals the local run's. Defaults to `"local"`.
        num_workers: Ray actors (one CPU each) for ``engine="ray"``; None
            for one per CPU of the Ray cluster. Defaults to `None`.
        verbose: ``"auto"`` (a progress bar when `out` is set), True or
            False. Defaults to `"auto"`.
        **options: options of the method's constructor (``layer=``,
            ``samples=``, ``output=`` for a multi-output model, ...).

    Returns:
        A `DatasetExplanation`.

    Raises:
        ValueError: if the method, target, options or data are invalid (a
            label out of range, images of another size than the first
            batch's), or `out` holds a run with other arguments.

    Example:

    >>> import keras_fer_viz as kfv
    >>> faces = kfv.synthetic_faces(14, seed=0)
    >>> model = kfv.fer_cnn(width=0.25)
    >>> r = kfv.explain_dataset("grad_cam", model, (faces.images, faces.labels))
    >>> r.class_means.shape, int(r.counts.sum()), r.labels.shape
    ((7, 7, 48, 48), 14, (14,))
    """
    from keras_fer_viz._explainer import check_batch_size

    name, cls = _resolve_method(method)
    if target not in _TARGETS:
        raise ValueError(f"Expected target in {_TARGETS}. Received: target={target!r}")
    if verbose not in ("auto", True, False):
        raise ValueError(f"Expected verbose 'auto', True or False. Received: {verbose!r}")
    check_batch_size(batch_size)
    accepted = _constructor_options(cls)
    unknown = [key for key in options if key not in accepted]
    if unknown:
        raise ValueError(f"Expected options of {name!r} among {accepted}. Received: {unknown}")
    engine = _check_engine(engine, num_workers)
    path = model if isinstance(model, (str, os.PathLike)) else None
    model = _load(model)
    work = _ChunkWork(model, cls, options, batch_size, target)
    num_classes = work.explainer.num_classes
    chunks = _chunks(data)
    verbose = (out is not None) if verbose == "auto" else bool(verbose)

    run = _Run(out, _fingerprint(name, model, target, options, batch_size)) if out else None
    if run is not None and run.complete():
        return run.result(name, num_classes)
    done = 0 if run is None else run.completed()
    state = _State(name, num_classes, run, _progress(data, verbose))
    runner = (
        _Local(work)
        if engine == "local"
        else _ray_runner(model, path, cls, options, batch_size, target, num_workers)
    )
    # (chunk index, labels, the runner's handle or the chunk's results, new or not)
    pending: collections.deque[tuple[int, np.ndarray, Any, bool]] = collections.deque()
    try:
        for index, (x, y) in enumerate(chunks):
            if run is not None and index < done:  # written by an earlier, interrupted run
                maps, pred, labels = run.load(index)
                if not np.array_equal(labels, _labels(y, len(labels), num_classes, index)):
                    raise ValueError(
                        f"Expected the data of the interrupted run in {str(run.dir)!r}. "
                        f"Received: other labels in batch {index}. Pass the same data, or "
                        "another `out`."
                    )
                pending.append((index, labels, (maps, pred), False))
            else:
                x = _images(x, model)
                labels = _labels(y, len(x), num_classes, index)
                pending.append((index, labels, runner.submit(x, labels), True))
            while len(pending) > runner.window:
                state.add(*pending.popleft(), runner)
        while pending:
            state.add(*pending.popleft(), runner)
    finally:
        runner.close()
    sums, counts = state.sums, state.counts
    if sums is None or counts is None:  # set together, by the first chunk
        raise ValueError("Expected at least one image in `data`. Received: none")
    means = (sums / np.maximum(counts, 1)[:, :, None, None]).astype(np.float32)
    predictions, labels = np.concatenate(state.predictions), np.concatenate(state.labels)
    if run is not None:
        run.finish(len(state.predictions), predictions, labels, sums.shape[2:])
    return DatasetExplanation(
        name, means, counts, predictions, labels, None if out is None else Path(out)
    )


class _ChunkWork:
    """Explains one chunk: the model's predictions, then the maps of the chosen targets."""

    def __init__(self, model, cls, options, batch_size, target):
        self.model, self.batch_size, self.target = model, batch_size, target
        self.output = options.get("output")
        self.explainer = cls(model, batch_size=batch_size, **options)

    def __call__(self, x, labels):
        from keras_fer_viz import _gradients

        # Most methods' compiled pass also gives the predicted classes (see
        # Explainer.explain); for the others, one forward pass more.
        self.explainer._last_predictions = None
        maps = self.explainer.explain(x, labels if self.target == "label" else None)
        pred = getattr(self.explainer, "_last_predictions", None)
        if pred is None or len(pred) != len(x):
            scores = _gradients.predict(
                self.model, x, batch_size=self.batch_size, output=self.output
            )
            pred = scores.argmax(axis=-1)
        return np.asarray(maps, np.float32), np.asarray(pred, np.int64)


class _Local:
    """Chunks explained in this process, one at a time."""

    window = 0  # nothing is left pending: a chunk is done when submitted

    def __init__(self, work):
        self.work = work

    def submit(self, x, labels):
        return self.work(x, labels)

    def result(self, handle):
        return handle

    def close(self):
        pass


class _State:
    """The running sums, counts and per-image arrays; writes each new chunk of a run."""

    def __init__(self, name, num_classes, run, progress):
        self.name, self.num_classes, self.run, self.progress = name, num_classes, run, progress
        self.sums: np.ndarray | None = None
        self.counts: np.ndarray | None = None
        self.predictions, self.labels = [], []

    def add(self, index, labels, handle, new, runner):
        maps, pred = runner.result(handle) if new else handle
        if new and self.run is not None:
            self.run.save(index, maps, pred, labels)
        if self.sums is None:
            c = self.num_classes
            self.sums = np.zeros((c, c, *maps.shape[1:]), np.float64)
            self.counts = np.zeros((c, c), np.int64)
        elif maps.shape[1:] != self.sums.shape[2:]:
            raise ValueError(
                f"Expected every batch of images to have the first batch's size "
                f"{tuple(self.sums.shape[2:])}. Received: maps of {tuple(maps.shape[1:])} in "
                f"batch {index}. Resize the images to one size first (kfv.adapt_images)."
            )
        _accumulate(self.sums, self.counts, maps, labels, pred)
        self.predictions.append(pred)
        self.labels.append(labels)
        if self.progress is not None:
            self.progress.add(len(labels))


def _progress(data, verbose):
    """A Keras progress bar over the images (its total when the data tell it), or None."""
    if not verbose:
        return None
    import keras

    total = None
    if _is_arrays(data):
        total = len(data[0])
    return keras.utils.Progbar(total, unit_name="image")


def _check_engine(engine, num_workers):
    from keras_fer_viz._explainer import check_positive_int

    if engine not in _ENGINES:
        raise ValueError(f"Expected engine in {_ENGINES}. Received: engine={engine!r}")
    check_positive_int(num_workers, "num_workers", allow_none=True)
    if engine == "local" and num_workers not in (None, 1):
        raise ValueError(
            "Expected num_workers=None with engine='local' (one process; several devices are "
            f"used through keras.distribution). Received: num_workers={num_workers!r}. Pass "
            "engine='ray' to use several workers."
        )
    return engine


def _ray_runner(model, path, cls, options, batch_size, target, num_workers):
    try:
        import ray
    except ImportError:
        raise ImportError(
            "Expected Ray for engine='ray'. Received: no module named 'ray'. Install it with "
            "`pip install 'keras-fer-viz[ray]'`, or pass engine='local'."
        ) from None
    return _Ray(ray, model, path, cls, options, batch_size, target, num_workers)


class _Ray:
    """Chunks explained by Ray actors, each holding the model (shipped through Ray's store).

    Ray is started locally unless the caller connected first (``ray.init(address=...)``
    for a cluster). At most two chunks per worker are in flight, so memory stays bounded
    however long the data; results are taken in the data's order.
    """

    def __init__(self, ray, model, path, cls, options, batch_size, target, num_workers):
        import tempfile

        import keras

        self.ray = ray
        if not ray.is_initialized():
            # A local instance with a CPU for each worker asked for (each actor
            # takes one): more workers than cores would otherwise wait forever.
            cpus = max(os.cpu_count() or 1, num_workers or 0)
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        if num_workers is None:
            num_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if path is not None:
            suffix, blob = Path(path).suffix, Path(path).read_bytes()
        else:
            with tempfile.TemporaryDirectory() as folder:
                saved = Path(folder) / "model.keras"
                model.save(saved)
                suffix, blob = ".keras", saved.read_bytes()
        blob = ray.put(blob)
        remote = ray.remote(num_cpus=1)(_RayWorker).options(
            runtime_env={"env_vars": {"KERAS_BACKEND": keras.backend.backend()}}
        )
        self.actors = [
            remote.remote(blob, suffix, cls, options, batch_size, target)
            for _ in range(num_workers)
        ]
        self.window = 2 * num_workers
        self.next = 0

    def submit(self, x, labels):
        actor = self.actors[self.next % len(self.actors)]
        self.next += 1
        return actor.explain.remote(x, labels)

    def result(self, handle):
        return self.ray.get(handle)

    def close(self):
        for actor in self.actors:
            self.ray.kill(actor)


class _RayWorker:
    """A Ray actor: loads the model once, then explains the chunks it is sent."""

    def __init__(self, blob, suffix, cls, options, batch_size, target):
        import tempfile

        import keras

        with tempfile.TemporaryDirectory() as folder:
            saved = Path(folder) / f"model{suffix}"
            saved.write_bytes(blob)
            model = keras.saving.load_model(saved, compile=False)
        self.work = _ChunkWork(model, cls, options, batch_size, target)

    def explain(self, x, labels):
        return self.work(x, labels)


def _accumulate(sums, counts, maps, labels, predictions):
    """Adds each map to its (true, predicted) cell: one sum per pair present, not per image."""
    pairs = labels * counts.shape[1] + predictions
    for pair in np.unique(pairs):
        chosen = pairs == pair
        i, j = divmod(int(pair), counts.shape[1])
        sums[i, j] += maps[chosen].sum(axis=0, dtype=np.float64)
        counts[i, j] += int(chosen.sum())


def _constructor_options(cls):
    """The keyword options of an explainer's constructor (all but the model and batch size)."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    return [
        p
        for p, v in params.items()
        if p not in ("self", "model", "batch_size")
        and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)
    ]


def _resolve_method(method):
    """(registered name, class) of a method given by name or class."""
    from keras_fer_viz._explainer import Explainer
    from keras_fer_viz.registry import EXPLAINERS

    if isinstance(method, str):
        if method not in EXPLAINERS:
            raise ValueError(
                f"Expected a registered method: one of {sorted(EXPLAINERS)}. "
                f"Received: method={method!r}"
            )
        cls = EXPLAINERS[method]
        return cls.name, cls
    if isinstance(method, type) and issubclass(method, Explainer):
        return getattr(method, "name", method.__name__), method
    raise ValueError(
        "Expected `method` to be a registered name (see kfv.EXPLAINERS) or an Explainer "
        f"class. Received: {method!r}"
    )


def _load(model):
    """A Keras model, or one loaded from a path (safe mode, uncompiled)."""
    import keras

    if isinstance(model, keras.Model):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise ValueError(
                f"Expected a Keras model or the path of a model file. No such file: {str(path)!r}"
            )
        return keras.saving.load_model(path, compile=False)
    raise ValueError(
        "Expected a Keras model or the path of a .keras or .h5 file. "
        f"Received: {type(model).__name__}"
    )


def _pair(batch, index):
    """(x, y) of one batch; a third element (sample weights) is ignored."""
    if isinstance(batch, dict) or not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError(
            f"Expected each batch of `data` to be (images, labels). Received in batch {index}: "
            f"{type(batch).__name__}"
        )
    return np.asarray(batch[0]), np.asarray(batch[1])


def _is_arrays(data):
    if not isinstance(data, tuple) or len(data) != 2:
        return False
    x, y = data
    return hasattr(x, "shape") and hasattr(y, "shape") and len(x) == len(y) and np.ndim(x) >= 3


def _chunks(data):
    """The data as an iterable of (x, y) numpy batches, the same on every pass."""
    import keras

    if _is_arrays(data):
        x, y = data
        return _ArrayChunks(x, y)
    if hasattr(data, "as_numpy_iterator"):  # a tf.data.Dataset
        return _Mapped(data.as_numpy_iterator)
    if isinstance(data, keras.utils.PyDataset):
        return _Mapped(lambda: (data[i] for i in range(len(data))))
    if hasattr(data, "__iter__") and not isinstance(data, (str, bytes, np.ndarray)):
        return _Mapped(lambda: iter(data))
    raise ValueError(
        "Expected `data` to be arrays (x, y), a tf.data.Dataset, a keras.utils.PyDataset or an "
        f"iterable of (x, y) batches. Received: {type(data).__name__}"
    )


class _ArrayChunks:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        for start in range(0, len(self.x), CHUNK):
            yield (
                np.asarray(self.x[start : start + CHUNK]),
                np.asarray(self.y[start : start + CHUNK]),
            )


class _Mapped:
    def __init__(self, make):
        self.make = make

    def __iter__(self):
        for index, batch in enumerate(self.make()):
            yield _pair(batch, index)


def _images(x, model):
    from keras_fer_viz._explainer import as_images
    from keras_fer_viz.layers import input_shape

    return as_images(x, input_shape(model), model.name)


def _labels(y, n, num_classes, index):
    """(n,) int64 true classes from class indices or one-hot rows."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape == (n, num_classes):
        y = y.argmax(axis=1)
    if y.shape != (n,) or not (np.issubdtype(y.dtype, np.integer) or _integral(y)):
        raise ValueError(
            f"Expected labels of shape ({n},) (class indices) or ({n}, {num_classes}) (one-hot) "
            f"in batch {index}. Received: shape={y.shape}, dtype={y.dtype}"
        )
    y = y.astype(np.int64)
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        raise ValueError(
            f"Expected labels in [0, {num_classes}) for a model with {num_classes} classes. "
            f"Received: {int(y[bad][0])} in batch {index}"
        )
    return y


def _integral(y):
    return (
        np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y))
    )


def _fingerprint(name, model, target, options, batch_size) -> str:
    """What a resumed run must share with the interrupted one: method, options, weights."""
    digest = hashlib.sha256()
    spec = {
        "method": name,
        "target": target,
        "options": {k: repr(v) for k, v in sorted(options.items())},
        "batch_size": batch_size,
        "model": model.name,
        "chunk": CHUNK,
    }
    digest.update(json.dumps(spec, sort_keys=True).encode())
    for variable in model.weights:
        digest.update(np.asarray(variable.numpy()).tobytes())
    return digest.hexdigest()


class _Run:
    """The files of a run with ``out=``: atomic chunks, a progress record, the final arrays."""

    def __init__(self, out, fingerprint):
        self.dir = Path(out)
        self.parts = self.dir / "parts"
        self.fingerprint = fingerprint
        self.progress = self.dir / "progress.json"
        if self.progress.exists():
            state = json.loads(self.progress.read_text())
            if state.get("fingerprint") != fingerprint:
                raise ValueError(
                    f"Expected {str(self.dir)!r} to hold a run of the same method, options and "
                    "model (to resume it). Received: a run with other arguments or weights. Pass "
                    "another `out`, or delete the folder to start again."
                )
        else:
            for final in ("maps.npy", "predictions.npy", "labels.npy"):
                if (self.dir / final).exists():
                    raise ValueError(
                        f"Expected `out` to be a new folder or one of an interrupted run. "
                        f"Received: {str(self.dir)!r}, which already holds {final} from a run "
                        "this one cannot check. Pass another `out` or delete the folder."
                    )
            self._write_progress(0)

    def _write_progress(self, chunks):
        from keras_fer_viz import _io

        _io.write_text(
            self.progress, json.dumps({"fingerprint": self.fingerprint, "chunks": chunks})
        )

    def complete(self) -> bool:
        """Whether an earlier run with these arguments finished (its arrays are written)."""
        return bool(json.loads(self.progress.read_text()).get("complete"))

    def result(self, name, num_classes):
        """The finished run's results, from its files, a chunk of maps at a time."""
        labels = np.load(self.dir / "labels.npy")
        predictions = np.load(self.dir / "predictions.npy")
        maps = np.load(self.dir / "maps.npy", mmap_mode="r")
        sums = np.zeros((num_classes, num_classes, *maps.shape[1:]), np.float64)
        counts = np.zeros((num_classes, num_classes), np.int64)
        for start in range(0, len(labels), CHUNK):
            part = slice(start, start + CHUNK)
            _accumulate(sums, counts, np.asarray(maps[part]), labels[part], predictions[part])
        means = (sums / np.maximum(counts, 1)[:, :, None, None]).astype(np.float32)
        shutil.rmtree(self.parts, ignore_errors=True)  # left if killed while cleaning up
        return DatasetExplanation(name, means, counts, predictions, labels, self.dir)

    def completed(self) -> int:
        """How many chunks an earlier run completed (0 for a new one, all for a finished one)."""
        return int(json.loads(self.progress.read_text())["chunks"])

    def _part(self, index):
        return self.parts / f"part-{index:07d}.npz"

    def load(self, index):
        with np.load(self._part(index)) as part:
            return part["maps"], part["predictions"], part["labels"]

    def save(self, index, maps, predictions, labels):
        from keras_fer_viz import _io

        with _io.atomic_path(self._part(index)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, maps=maps, predictions=predictions, labels=labels)
        self._write_progress(index + 1)

    def finish(self, chunks, predictions, labels, size):
        """Writes maps.npy (streamed from the chunks), predictions.npy and labels.npy."""
        from keras_fer_viz import _io

        # The .npy header, then each chunk's bytes: plain writes, not a memory
        # map, whose written pages would count in this process's memory.
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
            "fortran_order": False,
            "shape": (len(labels), *size),
        }
        with _io.atomic_path(self.dir / "maps.npy") as tmp, open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            for index in range(chunks):
                part, _, _ = self.load(index)
                f.write(np.ascontiguousarray(part, np.float32).tobytes())
        for name, values in (("predictions", predictions), ("labels", labels)):
            with _io.atomic_path(self.dir / f"{name}.npy") as tmp:
                np.save(tmp, values)
        _io.write_text(
            self.progress,
            json.dumps({"fingerprint": self.fingerprint, "chunks": chunks, "complete": True}),
        )
        shutil.rmtree(self.parts, ignore_errors=True)  # maps.npy holds them now
