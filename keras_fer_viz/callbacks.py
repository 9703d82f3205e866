"""Keras callbacks that draw the explanation figures while a model trains.

Attach them to `model.fit` to watch what the model learns to look at::

    model.fit(x, y, epochs=20, callbacks=[
        kfv.callbacks.GradCAMCallback(probe_images, labels=probe_labels, out_dir="viz"),
    ])

Each writes ``{out_dir}/{name}/epoch_{epoch:04d}.png`` (epochs counted from
1, as Keras prints them) every `every` epochs, atomically, and optionally
an image summary to TensorBoard. The maps are computed on the training
thread from the model as it is at the end of that epoch; drawing and
writing run on a background thread, and `on_train_end` waits for them, so
every file is complete when `fit` returns. A figure that fails (a bad
layer, a full or read-only disk) warns once with its cause and training
goes on; ``strict=True`` raises instead. In multi-worker training only the
chief draws and writes.

The callbacks follow Keras' own: settings are checked in `__init__`, state
is reset in `on_train_begin`, and only epoch and train hooks are used (a
batch hook would switch off Keras' asynchronous dispatch).
"""

from __future__ import annotations

import abc
import importlib.util
import json
import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import keras
import numpy as np
from numpy.typing import ArrayLike

from keras_fer_viz import _gradients, _io, figures
from keras_fer_viz._explainer import check_positive_int
from keras_fer_viz.data.fer2013 import EMOTIONS
from keras_fer_viz.registry import EXPLAINERS, spec_options

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from keras_fer_viz._explainer import Explainer
    from keras_fer_viz.lime import Lime, LimeExplanation

__all__ = [
    "FigureCallback",
    "MapCallback",
    "SaliencyCallback",
    "GradCAMCallback",
    "CAMCallback",
    "FilterCallback",
    "FeatureMapCallback",
    "LimeCallback",
    "ConfusionMatrixCallback",
    "TrainingCurvesCallback",
    "probe_faces",
    "is_chief",
]


def probe_faces(
    images: ArrayLike,
    labels: ArrayLike,
    per_class: int = 1,
    seed: int = 0,
    class_names: Sequence[str] = EMOTIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """Picks `per_class` images of each class from a labelled set, in class order.

    Returns:
        ``(images, labels)`` of the chosen faces: the probe set a callback
        explains at every epoch.

    Example:

    >>> from keras_fer_viz.data import synthetic_faces
    >>> faces = synthetic_faces(70)
    >>> images, labels = probe_faces(faces.images, faces.labels)
    >>> images.shape, labels.tolist()
    ((7, 48, 48, 1), [0, 1, 2, 3, 4, 5, 6])
    """
    from keras_fer_viz.data import pick_faces

    images, labels = np.asarray(images), np.asarray(labels)
    if len(images) != len(labels):
        raise ValueError(
            f"Expected one label per image. Received: {len(images)} images, {len(labels)} labels"
        )
    index = pick_faces(labels, "all", per_class, seed, class_names)
    return images[index], labels[index]


def is_chief() -> bool:
    """True unless TF_CONFIG says this process is a non-chief worker.

    The chief is the "chief" task, or worker 0 when the cluster has no
    chief; without TF_CONFIG every process is its own chief.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    try:
        config = json.loads(raw)
    except ValueError:
        return True
    cluster, task = config.get("cluster") or {}, config.get("task") or {}
    if not cluster or not task:
        return True
    kind, index = task.get("type"), int(task.get("index", 0))
    if kind == "chief":
        return True
    if "chief" in cluster:
        return False
    return kind == "worker" and index == 0


def _tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _check_images(images, name="images"):
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or not len(x) or not np.issubdtype(x.dtype, np.number):
        raise ValueError(
            f"Expected probe {name} of shape (N, H, W, C) with N >= 1. Received: "
            f"shape={np.asarray(images).shape}, dtype={np.asarray(images).dtype}"
        )
    return x


def _check_labels(labels, n):
    if labels is None:
        return None
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"Expected one integer label per probe image: shape ({n},). Received: "
            f"shape={y.shape}, dtype={y.dtype}"
        )
    return y


class FigureCallback(keras.callbacks.Callback, metaclass=abc.ABCMeta):
    """Base class: draws a figure every `every` epochs into `out_dir`/`name`.

    Subclasses implement `compute(epoch, logs)`, which runs on the training
    thread and returns what the figure needs (the model is read there, as
    it is at that epoch), and `draw(data, epoch)`, which returns a
    `matplotlib.figure.Figure` and may run on a background thread.

    Args:
        out_dir: the folder; figures go to ``out_dir/name/epoch_0001.png``
            and so on. Defaults to `"viz"`.
        every: draw every this many epochs (epochs 'every', '2 * every',
            ...). Defaults to `1`.
        tensorboard_dir: also write each figure as a TensorBoard image
            summary there (needs TensorFlow, whatever the Keras backend), or
            None. Defaults to `None`.
        strict: raise on a failing figure instead of warning once and going
            on. Defaults to `False`.
        background: draw and write on a background thread. Defaults to
            `True`.
        name: the subfolder and summary name; None for the class's.
            Defaults to `None`.

    Attributes:
        written: ``[(epoch, path), ...]`` of the files written in this fit.
        failures: ``[(epoch, message), ...]`` of the figures that failed.

    Raises:
        ValueError: if an option is invalid, or `tensorboard_dir` is set and
            TensorFlow cannot be imported.
    """

    #: The subfolder and summary name when `name` is None.
    default_name: str | None = "figure"

    def __init__(
        self,
        out_dir: str | os.PathLike[str] = "viz",
        every: int = 1,
        tensorboard_dir: str | os.PathLike[str] | None = None,
        strict: bool = False,
        background: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__()
        every = check_positive_int(every, "every")
        if not isinstance(out_dir, (str, os.PathLike)):
            raise ValueError(f"Expected `out_dir` to be a path. Received: {out_dir!r}")
        if tensorboard_dir is not None and not _tensorflow_available():
            raise ValueError(
                "tensorboard_dir needs TensorFlow for tf.summary, and it cannot be imported. "
                "Install it (pip install tensorflow) or leave tensorboard_dir=None. Received: "
                f"tensorboard_dir={str(tensorboard_dir)!r}"
            )
        self.out_dir = Path(out_dir)
        self.every = every
        self.tensorboard_dir = tensorboard_dir
        self.strict = bool(strict)
        self.background = bool(background)
        # "" (refused just below) only when `name` and `default_name` are both None.
        self.name: str = name or self.default_name or ""
        if not self.name or "/" in self.name or "\\" in self.name or self.name.startswith("."):
            raise ValueError(f"Expected `name` to be a plain folder name. Received: {name!r}")

    # --- what subclasses provide -------------------------------------------
    @abc.abstractmethod
    def compute(self, epoch: int, logs: dict[str, Any] | None = None) -> Any:
        """What the figure of `epoch` needs, read from `self.model` now."""

    @abc.abstractmethod
    def draw(self, data: Any, epoch: int) -> Figure:
        """The `matplotlib.figure.Figure` of `compute`'s result."""

    def make_figure(self, epoch: int, logs: dict[str, Any] | None = None) -> Figure:
        """The figure for `epoch` (0-based, as Keras passes it), drawn now.

        Usable outside `fit` on a model set with `set_model`.
        """
        if not hasattr(self, "written"):
            self._reset_state()
        return self.draw(self.compute(epoch, logs), epoch)

    # --- Keras hooks ---------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset_state()
        self._chief = is_chief()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"kfv-{self.name}")

    def _reset_state(self) -> None:
        self.written: list[tuple[int, Path]] = []
        self.failures: list[tuple[int, str]] = []
        self._warned = False
        self._pending: list[Future[None]] = []
        self._lock = threading.Lock()
        self._writer: Any = None  # tf.summary's file writer, made on first use
        self.reset()

    def reset(self) -> None:
        """Clears what a subclass keeps between epochs; called at train begin."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._chief or (epoch + 1) % self.every:
            return
        self._raise_pending_if_strict()
        try:
            data = self.compute(epoch, dict(logs or {}))
        except Exception as err:  # a figure must not kill training unless strict
            self._fail(epoch, err)
            return
        if self.background:
            self._pending.append(self._executor.submit(self._finish, data, epoch))
        else:
            self._finish(data, epoch)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        for future in self._pending:
            future.result()  # _finish handles its own errors
        self._pending = []
        self._executor.shutdown(wait=True)
        if self._writer is not None:
            self._writer.close()
        self._raise_pending_if_strict()

    # --- internals -----------------------------------------------------------
    def _finish(self, data, epoch):
        try:
            fig = self.draw(data, epoch)
            path = self.out_dir / self.name / f"epoch_{epoch + 1:04d}.png"
            with _io.atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=100, format="png")
            with self._lock:
                self.written.append((epoch + 1, path))
            if self.tensorboard_dir is not None:
                self._summary(path.read_bytes(), fig, epoch)
        except Exception as err:
            self._fail(epoch, err)

    def _summary(self, png, fig, epoch):
        """Writes the PNG as a TensorBoard image summary.

        Uses `tf.summary.write` with the image plugin's layout (width,
        height, encoded image), so it needs TensorFlow but not the
        tensorboard package, which tensorflow-cpu does not bring.
        """
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        width, height = (int(round(v)) for v in fig.get_size_inches() * 100)
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="images")
        )
        with self._lock:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(str(self.tensorboard_dir))
            with self._writer.as_default():
                tf.summary.write(
                    self.name,
                    tf.constant([str(width), str(height), png]),
                    step=epoch + 1,
                    metadata=metadata,
                )
            self._writer.flush()

    def _fail(self, epoch, err):
        message = f"{type(err).__name__}: {err}"
        with self._lock:
            self.failures.append((epoch + 1, message))
            first = not self._warned
            self._warned = True
        if self.strict:
            if threading.current_thread() is threading.main_thread():
                raise err
            return  # raised on the training thread by _raise_pending_if_strict
        if first:
            warnings.warn(
                f"{type(self).__name__}: the figure for epoch {epoch + 1} failed ({message}). "
                "Training goes on; later failures of this callback are not repeated (see its "
                "`failures`). Pass strict=True to raise instead.",
                RuntimeWarning,
                stacklevel=2,
            )

    def _raise_pending_if_strict(self):
        if self.strict and self.failures:
            epoch, message = self.failures[0]
            raise RuntimeError(
                f"{type(self).__name__}: the figure for epoch {epoch} failed: {message}"
            )


class _ProbeCallback(FigureCallback):
    """A callback that explains fixed probe images."""

    #: The figure title; None for the method's.
    title: str | None
    #: The method of ``kfv.EXPLAINERS`` this callback draws.
    method: str
    # A new explainer of the method for `self.model` (a subclass's).
    build_explainer: Callable[[], Explainer]

    def __init__(
        self,
        images: ArrayLike,
        labels: ArrayLike | None = None,
        class_names: Sequence[str] = EMOTIONS,
        output: str | int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.images = _check_images(images)
        self.labels = _check_labels(labels, len(self.images))
        self.class_names = tuple(class_names)
        self.output = output

    def reset(self) -> None:
        self._explainer: Explainer | None = None
        self.maps_by_epoch: dict[int, np.ndarray] = {}

    def _predictions(self):
        probs = _gradients.predict(self.model, self.images, output=self.output)
        return probs.argmax(axis=1), probs.max(axis=1)

    def _map_grid(self, grid, maps, predicted, confidence, title):
        """`grid` (saliency_grid or overlay_grid) of the probe faces and their maps."""
        return grid(
            self.images,
            maps,
            self.labels,
            predicted,
            confidence,
            self.class_names,
            title=title,
            blank_reason=self.blank_reason(),
        )

    def blank_reason(self) -> str | None:
        """Why a map of this callback's method can be blank, said on such a panel."""
        # A map callback's method; CAMCallback's is its default name, "cam".
        method = EXPLAINERS.get(getattr(self, "method", None) or type(self).default_name or "")
        return None if method is None else method.blank_reason

    def explainer(self) -> Explainer:
        """Builds the explainer once per fit (the model is known from then on)."""
        if self._explainer is None or self._explainer.model is not self.model:
            self._explainer = self.build_explainer()
        return self._explainer

    def compute(self, epoch: int, logs: dict[str, Any] | None = None) -> tuple[Any, ...]:
        maps = self.explainer().explain(self.images, target=self.labels)
        predicted, confidence = self._predictions()
        self.maps_by_epoch[epoch + 1] = maps
        return maps, predicted, confidence

    def epoch_maps(self) -> dict[str, Any]:
        """The maps kept so far, for `keras_fer_viz.figures.epoch_grid` and reports.

        Returns:
            ``{"images", "labels", "epochs", "maps"}`` with maps (E, N, H, W).
        """
        epochs = sorted(self.maps_by_epoch)
        return dict(
            images=self.images,
            labels=self.labels,
            epochs=epochs,
            maps=np.stack([self.maps_by_epoch[e] for e in epochs]) if epochs else None,
        )

    def _title(self, epoch):
        return f"{self.title} after epoch {epoch + 1}"


# Figure titles of the methods whose callbacks titled them before the
# registry; any other method is titled by its class name (XGradCAM, ...).
_TITLES = {"grad_cam": "Grad-CAM", "grad_cam_plus_plus": "Grad-CAM++"}


def _dedicated_callbacks() -> dict:
    """Method name -> the callback that draws it alone (its figure is no plain map grid)."""
    return {cls.method: cls for cls in (CAMCallback, LimeCallback)}


class MapCallback(_ProbeCallback):
    """Maps of probe images by any registered method, every `every` epochs.

    The generic map callback: `method` names a method of
    ``kfv.EXPLAINERS``, and its maps are drawn over the faces
    (`keras_fer_viz.figures.overlay_grid`) for a coarse map of the CAM
    family (the method's `overlay` attribute), under them
    (`keras_fer_viz.figures.saliency_grid`) otherwise. CAM and LIME have
    callbacks of their own (`CAMCallback`, `LimeCallback`); every other
    registered method is accepted (`methods()` lists them), including the
    ones registered after this callback was written. The maps are kept
    (`epoch_maps`) so a report can show attention forming across epochs.

    Args:
        images: probe images (N, H, W, C) as the model takes them (e.g. from
            `probe_faces`).
        labels: their classes, explained (None: the predicted class), or
            None. Defaults to `None`.
        method: the method's name in ``kfv.EXPLAINERS``. Defaults to
            `"saliency"`.
        class_names: names of the classes. Defaults to `EMOTIONS`.
        output: a multi-output model's output to explain (name or index).
            Defaults to `None`.
        method_options: options of the method's constructor, e.g.
            ``{"samples": 16}`` for ``"smoothgrad"`` or ``{"layer":
            "block2_conv2"}`` for ``"guided_grad_cam"``
            (`keras_fer_viz.registry.spec_options` lists a method's), or
            None for its defaults. Defaults to `None`.
        **kwargs: `FigureCallback` options (out_dir, every, tensorboard_dir,
            strict, background, name; the name defaults to the method's).

    Raises:
        ValueError: if `method` is not one this callback draws (the message
            lists them) or an option is not the method's (the message lists
            its options).

    Example:

    >>> import keras_fer_viz as kfv
    >>> faces = kfv.synthetic_faces(140)
    >>> images, labels = kfv.callbacks.probe_faces(faces.images, faces.labels)
    >>> callback = kfv.callbacks.MapCallback(
    ...     images, labels, method="smoothgrad", method_options={"samples": 16}
    ... )
    >>> callback.name, callback.title
    ('smoothgrad', 'SmoothGrad')
    >>> "grad_cam" in kfv.callbacks.MapCallback.methods()
    True
    """

    #: The folder and summary name; None for the method's name.
    default_name: str | None = None
    #: The figure title; None for the method's.
    title: str | None = None
    #: Constructor options that the callback takes as arguments of its own.
    own_options: tuple[str, ...] = ()

    def __init__(
        self,
        images: ArrayLike,
        labels: ArrayLike | None = None,
        method: str = "saliency",
        class_names: Sequence[str] = EMOTIONS,
        output: str | int | None = None,
        method_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.method = self._check_method(method)
        explainer = EXPLAINERS[self.method]
        kwargs["name"] = kwargs.get("name") or self.default_name or self.method
        super().__init__(images, labels, class_names, output, **kwargs)
        self.method_options = self._check_options(method_options)
        self.overlay = bool(explainer.overlay)
        self.title = type(self).title or _TITLES.get(self.method, explainer.__name__)

    # --- the methods drawn -------------------------------------------------
    @classmethod
    def methods(cls) -> tuple[str, ...]:
        """The names of the registered methods this callback draws, in registry order."""
        dedicated = _dedicated_callbacks()
        return tuple(
            name
            for name, explainer in EXPLAINERS.items()
            if name not in dedicated and cls._draws(explainer)
        )

    @classmethod
    def _draws(cls, explainer: type[Explainer]) -> bool:
        """Whether this callback draws the maps of `explainer` (a registered class)."""
        return True

    @classmethod
    def _check_method(cls, method: object) -> str:
        """The registered name of `method` (aliases resolved); else a ValueError listing them."""
        explainer = EXPLAINERS.get(method) if isinstance(method, str) else None
        accepted = cls.methods()
        if explainer is not None and explainer.name in accepted:
            return explainer.name
        hint = ""
        if explainer is not None:
            elsewhere = _dedicated_callbacks().get(explainer.name) or next(
                c
                for c in (SaliencyCallback, GradCAMCallback, MapCallback)
                if explainer.name in c.methods()
            )
            hint = f" Draw {explainer.name!r} with {elsewhere.__name__}."
        raise ValueError(
            f"Expected `method` to be one of the methods of kfv.EXPLAINERS that "
            f"{cls.__name__} draws: {list(accepted)}. Received: method={method!r}.{hint}"
        )

    def _check_options(self, options: object) -> dict[str, Any]:
        """`method_options` as a dict, its keys checked against the method's options."""
        if options is None:
            return {}
        if not isinstance(options, Mapping):
            raise ValueError(
                f"Expected `method_options` to be a dict of options of {self.method!r}. "
                f"Received: {type(options).__name__}"
            )
        accepted = [o for o in spec_options(EXPLAINERS[self.method]) if o not in self.own_options]
        unknown = [key for key in options if key not in accepted]
        if unknown:
            own = [key for key in unknown if key in self.own_options]
            hint = (
                f" Pass {', '.join(f'{k}=' for k in own)} to {type(self).__name__} itself."
                if own
                else ""
            )
            raise ValueError(
                f"Expected `method_options` among the options of {self.method!r}: {accepted}. "
                f"Received: {unknown}.{hint}"
            )
        return dict(options)

    # --- the figure ------------------------------------------------------------
    def _explainer_options(self) -> dict[str, Any]:
        return dict(self.method_options)

    def build_explainer(self) -> Explainer:
        explainer = EXPLAINERS[self.method]
        return explainer(self.model, **self._explainer_options(), output=self.output)

    def draw(self, data: tuple[np.ndarray, np.ndarray, np.ndarray], epoch: int) -> Figure:
        grid = figures.overlay_grid if self.overlay else figures.saliency_grid
        return self._map_grid(grid, *data, title=self._title(epoch))


class SaliencyCallback(MapCallback):
    """Saliency maps of probe faces at the end of every `every` epochs.

    A `MapCallback` for the pixel-level methods: any registered method
    whose maps are drawn beside the faces rather than over them (``overlay``
    False), such as ``"saliency"``, ``"smoothgrad"`` and
    ``"integrated_gradients"``; `SaliencyCallback.methods()` lists them.
    Whatever the method, the figures go to the ``saliency`` folder and are
    titled "Saliency" (pass ``name=`` to keep two apart).

    Args:
        images: probe images (N, H, W, C) as the model takes them (e.g. from
            `probe_faces`).
        labels: their classes, explained (None: the predicted class), or
            None. Defaults to `None`.
        method: the method's name in ``kfv.EXPLAINERS``. Defaults to
            `"saliency"`.
        class_names: names of the classes. Defaults to `EMOTIONS`.
        output: a multi-output model's output to explain (name or index).
            Defaults to `None`.
        method_options: options of the method, as in `MapCallback`.
            Defaults to `None`.
        **kwargs: `FigureCallback` options (out_dir, every, tensorboard_dir,
            strict, background, name).

    Raises:
        ValueError: if `method` is not one of `methods()` or an option is
            not the method's.

    Example:

    >>> import keras_fer_viz as kfv
    >>> faces = kfv.synthetic_faces(140)
    >>> images, labels = kfv.callbacks.probe_faces(faces.images, faces.labels)
    >>> callback = kfv.callbacks.SaliencyCallback(images, labels, out_dir="viz", every=5)
    >>> callback.name
    'saliency'
    >>> kfv.callbacks.SaliencyCallback.methods()[:3]
    ('saliency', 'smoothgrad', 'integrated_gradients')
    """

    default_name = "saliency"
    title = "Saliency"

    @classmethod
    def _draws(cls, explainer: type[Explainer]) -> bool:
        return not explainer.overlay


class GradCAMCallback(MapCallback):
    """Grad-CAM (or another CAM of a layer) over probe faces every `every` epochs.

    A `MapCallback` for the coarse maps of a spatial layer: any registered
    method drawn over the image (``overlay``) that takes a ``layer``, such
    as ``"grad_cam"``, ``"grad_cam_plus_plus"``, ``"xgrad_cam"``,
    ``"hires_cam"``, ``"layer_cam"`` and ``"eigen_cam"``;
    `GradCAMCallback.methods()` lists them. Whatever the method, the figures
    go to the ``grad_cam`` folder (pass ``name=`` to keep two apart); the
    title names the method. The maps are kept (`epoch_maps`) so a report can
    show attention forming across epochs.

    Args:
        images: probe images (N, H, W, C).
        labels: their classes, or None for the predicted ones. Defaults to `None`.
        layer: the spatial layer (see `keras_fer_viz.resolve_layer`), None
            for the last conv layer. Defaults to `None`.
        plus_plus: True stands for ``method="grad_cam_plus_plus"`` (kept for
            older code; prefer `method`); it may not be combined with another
            method, nor False with that one. Defaults to `None`.
        class_names: names of the classes. Defaults to `EMOTIONS`.
        output: a multi-output model's output to explain (name or index).
            Defaults to `None`.
        method: the method's name in ``kfv.EXPLAINERS``. Defaults to
            `"grad_cam"`.
        method_options: the method's other options (not ``layer``, an
            argument of its own here), as in `MapCallback`. Defaults to
            `None`.
        **kwargs: `FigureCallback` options.

    Raises:
        ValueError: if `method` is not one of `methods()`, contradicts
            `plus_plus`, or an option is not the method's.

    Example:

    >>> import keras_fer_viz as kfv
    >>> faces = kfv.synthetic_faces(140)
    >>> images, labels = kfv.callbacks.probe_faces(faces.images, faces.labels)
    >>> callback = kfv.callbacks.GradCAMCallback(images, labels, method="xgrad_cam")
    >>> callback.name, callback.title
    ('grad_cam', 'XGradCAM')
    >>> kfv.callbacks.GradCAMCallback(images, plus_plus=True).method
    'grad_cam_plus_plus'
    """

    default_name = "grad_cam"
    own_options = ("layer",)

    def __init__(
        self,
        images: ArrayLike,
        labels: ArrayLike | None = None,
        layer: str | int | keras.layers.Layer | None = None,
        plus_plus: bool | None = None,
        class_names: Sequence[str] = EMOTIONS,
        output: str | int | None = None,
        method: str = "grad_cam",
        method_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = self._check_method(method)
        if plus_plus is not None and bool(plus_plus) != (name == "grad_cam_plus_plus"):
            if not plus_plus or name != "grad_cam":
                raise ValueError(
                    f"Expected `plus_plus` to agree with `method`: plus_plus=True means "
                    f"method='grad_cam_plus_plus'. Received: plus_plus={plus_plus!r}, "
                    f"method={method!r}. Pass `method` alone."
                )
            name = "grad_cam_plus_plus"  # plus_plus=True with the default method
        super().__init__(images, labels, name, class_names, output, method_options, **kwargs)
        self.layer = layer
        self.plus_plus = self.method == "grad_cam_plus_plus"

    @classmethod
    def _draws(cls, explainer: type[Explainer]) -> bool:
        return bool(explainer.overlay) and "layer" in spec_options(explainer)

    def _explainer_options(self) -> dict[str, Any]:
        return {**self.method_options, "layer": self.layer}


class CAMCallback(_ProbeCallback):
    """CAM of probe faces: a GAP head retrained on `data` every `every` epochs.

    At each drawing epoch, `keras_fer_viz.gap_head` fits a new global
    average pooling head on a frozen copy of the model's base as it is at
    that epoch (the model being trained is not touched), and CAM is read
    from it.

    Args:
        images: probe images (N, H, W, C).
        data: ``(x, y)`` to fit the head on (a few thousand images suffice).
        labels: the probe images' classes, or None. Defaults to `None`.
        layer: the layer to pool, None for the last conv layer. Defaults to `None`.
        epochs: head-training epochs. Defaults to `3`.
        class_names: names of the classes. Defaults to `EMOTIONS`.
        output: a multi-output model's classifier output (name or index).
            Defaults to `None`.
        **kwargs: `FigureCallback` options.
    """

    default_name = "cam"
    title = "CAM"
    #: The method of ``kfv.EXPLAINERS`` this callback draws.
    method = "cam"

    def __init__(
        self,
        images: ArrayLike,
        data: tuple[ArrayLike, ArrayLike],
        labels: ArrayLike | None = None,
        layer: str | int | keras.layers.Layer | None = None,
        epochs: int = 3,
        class_names: Sequence[str] = EMOTIONS,
        output: str | int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(images, labels, class_names, output, **kwargs)
        try:
            x, y = data
        except (TypeError, ValueError):
            raise ValueError(f"Expected `data=(x, y)`. Received: {type(data).__name__}") from None
        self.data = (_check_images(x, "data x"), np.asarray(y))
        if len(self.data[1]) != len(self.data[0]):
            raise ValueError(
                f"Expected one label per image in `data`. Received: {len(self.data[0])} images, "
                f"{len(self.data[1])} labels"
            )
        epochs = check_positive_int(epochs, "epochs")
        self.layer, self.epochs = layer, epochs

    def compute(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        from keras_fer_viz.cam import CAM, gap_head

        cam_model = gap_head(
            self.model,
            self.layer,
            data=self.data,
            epochs=self.epochs,
            verbose=0,
            output=self.output,
        )
        maps = CAM(cam_model).explain(self.images, target=self.labels)
        predicted, confidence = self._predictions()
        self.maps_by_epoch[epoch + 1] = maps
        return maps, predicted, confidence, cam_model.head_report["head_accuracy"]

    def draw(self, data: tuple[np.ndarray, np.ndarray, np.ndarray, float], epoch: int) -> Figure:
        maps, predicted, confidence, accuracy = data
        title = f"{self._title(epoch)} (GAP head accuracy {accuracy:.2f})"
        return self._map_grid(figures.overlay_grid, maps, predicted, confidence, title=title)


class FilterCallback(FigureCallback):
    """Gradient-ascent images of a layer's filters every `every` epochs.

    Args:
        layer: the layer (see `keras_fer_viz.resolve_layer`).
        filters: filter indices, or None for all. Defaults to `None`.
        steps: ascent steps. Defaults to `50`.
        seed: seed of the start images: the same at every epoch, so the
            figures differ only by what the filters learnt. Defaults to `0`.
        columns: panels per row. Defaults to `8`.
        output: for a multi-output model whose output layer is `layer`,
            that output (name or index). Defaults to `None`.
        **kwargs: `FigureCallback` options.
    """

    default_name = "filters"

    def __init__(
        self,
        layer: str | int | keras.layers.Layer | None,
        filters: int | Sequence[int] | np.ndarray | None = None,
        steps: int = 50,
        seed: int = 0,
        columns: int = 8,
        output: str | int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.output = output
        steps = check_positive_int(steps, "steps")
        self.layer, self.filters, self.steps, self.seed = layer, filters, steps, seed
        self.columns = columns

    def compute(self, epoch: int, logs: dict[str, Any] | None = None) -> tuple[np.ndarray, str]:
        from keras_fer_viz.filters import maximize_activation
        from keras_fer_viz.layers import resolve_layer

        layer = resolve_layer(self.model, self.layer)
        images = maximize_activation(
            self.model,
            layer,
            self.filters,
            steps=self.steps,
            seed=self.seed,
            verbose=0,
            model_output=self.output,
        )
        return images, layer.name

    def draw(self, data: tuple[np.ndarray, str], epoch: int) -> Figure:
        images, name = data
        return figures.filter_grid(
            images,
            self.filters,
            columns=self.columns,
            title=f"Filters of {name} after epoch {epoch + 1}",
        )


class FeatureMapCallback(FigureCallback):
    """A layer's outputs for one probe face, top filters framed, every `every` epochs.

    Args:
        image: the face (H, W, C), as the model takes it.
        layer: a spatial layer (see `keras_fer_viz.resolve_layer`).
        top: filters to frame. Defaults to `8`.
        label: the face's class name, for the title, or None. Defaults to `None`.
        **kwargs: `FigureCallback` options.
    """

    default_name = "feature_maps"

    def __init__(
        self,
        image: ArrayLike,
        layer: str | int | keras.layers.Layer | None,
        top: int = 8,
        label: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image = _check_images(image, "image")[:1]
        self.layer, self.top, self.label = layer, top, label

    def compute(self, epoch: int, logs: dict[str, Any] | None = None) -> tuple[np.ndarray, str]:
        from keras_fer_viz.filters import feature_maps
        from keras_fer_viz.layers import resolve_layer

        layer = resolve_layer(self.model, self.layer)
        return feature_maps(self.model, layer, self.image)[0], layer.name

    def draw(self, data: tuple[np.ndarray, str], epoch: int) -> Figure:
        maps, name = data
        return figures.feature_map_grid(
            maps,
            image=self.image[0],
            top=self.top,
            label=self.label,
            title=f"Outputs of {name} after epoch {epoch + 1}",
        )


class LimeCallback(_ProbeCallback):
    """LIME superpixels for and against each probe face's class every `every` epochs.

    Args:
        images: probe images (N, H, W, C).
        labels: their classes, or None for the predicted ones. Defaults to `None`.
        samples: LIME perturbations per image. Defaults to `500`.
        segmentation: see `keras_fer_viz.Lime`. Defaults to `"slic"`.
        num_features: superpixels shown on each side. Defaults to `5`.
        class_names: names of the classes. Defaults to `EMOTIONS`.
        output: a multi-output model's output to explain (name or index).
            Defaults to `None`.
        **kwargs: `FigureCallback` options.
    """

    default_name = "lime"
    title = "LIME"
    #: The method of ``kfv.EXPLAINERS`` this callback draws.
    method = "lime"

    def __init__(
        self,
        images: ArrayLike,
        labels: ArrayLike | None = None,
        samples: int = 500,
        segmentation: Literal["slic", "quickshift", "felzenszwalb", "grid"]
        | Callable[[np.ndarray], ArrayLike] = "slic",
        num_features: int = 5,
        class_names: Sequence[str] = EMOTIONS,
        output: str | int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(images, labels, class_names, output, **kwargs)
        self.samples, self.segmentation, self.num_features = samples, segmentation, num_features

    def build_explainer(self) -> Lime:
        from keras_fer_viz.lime import Lime

        return Lime(
            self.model,
            segmentation=self.segmentation,
            samples=self.samples,
            verbose=0,
            output=self.output,
        )

    def compute(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> tuple[list[LimeExplanation], np.ndarray, np.ndarray]:
        lime = cast("Lime", self.explainer())  # built by build_explainer
        results = lime.explanations(self.images, target=self.labels)
        predicted, confidence = self._predictions()
        return results, predicted, confidence

    def draw(
        self, data: tuple[list[LimeExplanation], np.ndarray, np.ndarray], epoch: int
    ) -> Figure:
        results, predicted, confidence = data
        return figures.lime_grid(
            self.images,
            [r.segments for r in results],
            [r.weights for r in results],
            self.labels,
            predicted,
            confidence,
            self.class_names,
            num_features=self.num_features,
            title=self._title(epoch),
        )


class ConfusionMatrixCallback(FigureCallback):
    """The confusion matrix on validation data every `every` epochs.

    Args:
        x_val: validation images (a Keras 3 callback gets no validation data
            from `fit`, so they are given here).
        y_val: their integer labels.
        class_names: names of the classes. Defaults to `EMOTIONS`.
        batch_size: prediction batch size; None sizes it by image size.
            Defaults to `None`.
        output: a multi-output model's classifier output (name or index).
            Defaults to `None`.
        **kwargs: `FigureCallback` options.
    """

    default_name = "confusion_matrix"

    def __init__(
        self,
        x_val: ArrayLike,
        y_val: ArrayLike,
        class_names: Sequence[str] = EMOTIONS,
        batch_size: int | None = None,
        output: str | int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.output = output
        self.x_val = _check_images(x_val, "x_val")
        self.y_val = _check_labels(y_val, len(self.x_val))
        if self.y_val is None:
            raise ValueError("Expected y_val. Received: None")
        self.class_names, self.batch_size = tuple(class_names), batch_size

    def compute(self, epoch: int, logs: dict[str, Any] | None = None) -> np.ndarray:
        probs = _gradients.predict(self.model, self.x_val, self.batch_size, output=self.output)
        return probs.argmax(axis=1)

    def draw(self, predicted: np.ndarray, epoch: int) -> Figure:
        return figures.confusion_matrix(
            self.y_val,
            predicted,
            self.class_names,
            title=f"Confusion matrix after epoch {epoch + 1}",
        )


class TrainingCurvesCallback(FigureCallback):
    """Loss and accuracy curves so far, redrawn every `every` epochs.

    Takes the options of `FigureCallback` (``out_dir``, ``every``, ...).
    """

    default_name = "training_curves"

    def reset(self) -> None:
        self.logs: dict[str, list[float]] = {}
        self.epochs: list[int] = []  # 1-based; a resumed fit starts after initial_epoch

    def compute(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> tuple[list[int], dict[str, list[float]]]:
        self.epochs.append(epoch + 1)
        logs = logs or {}
        # One value per epoch for every key, NaN where an epoch did not log it
        # (validation_freq > 1), so that each value stays at its epoch.
        for key in logs.keys() - self.logs.keys():
            self.logs[key] = [float("nan")] * (len(self.epochs) - 1)
        for key, values in self.logs.items():
            values.append(float(logs[key]) if key in logs else float("nan"))
        return list(self.epochs), {k: list(v) for k, v in self.logs.items()}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # Curves need every epoch's logs, drawn or not.
        if self._chief and (epoch + 1) % self.every:
            self.compute(epoch, logs)
            return
        super().on_epoch_end(epoch, logs)

    def draw(self, data: tuple[list[int], dict[str, list[float]]], epoch: int) -> Figure:
        epochs, logs = data
        return figures.training_curves(
            logs, title=f"Training curves after epoch {epoch + 1}", epochs=epochs
        )
