"""Layer introspection for Sequential, Functional and nested Keras 3 models.

Explaining a model needs the output of an inner layer and the class score
from one forward pass. Keras 3 makes the obvious route,
``keras.Model(model.inputs, [layer.output, model.output])``, fail on the
models people have: a Sequential model has no usable graph of its own, and
the layers of a nested backbone (a ``keras.applications`` model inside a
Sequential) belong to the backbone's graph, not to the outer one ("Graph
disconnected"). This module replays the model's layers on a fresh
`keras.Input` instead, entering nested Sequential and Functional models as if
their layers were the outer model's, so one flat graph holds every layer. The
caller's model and layers are used, never modified: the replayed graph shares
their weights.

- `resolve_layer` turns a name, a path (``"backbone/Conv_1"``), a `Layer`,
  an index or None into a layer of the model.
- `conv_layers`, `last_conv_layer` and `spatial_layers` list the layers that
  Grad-CAM, CAM, feature maps and filter visualisation can use.
- `submodel` builds a model that returns chosen layer outputs together with
  the class score, the pre-softmax logit by default.

Subclassed models (``class Net(keras.Model)`` with a ``call``) have no graph
to replay. Once called on a batch, they are probed by calling them as they
are, with the chosen layers' ``call`` intercepted for the duration of that
call (on the layer object, restored at once): the layer's output is read
and, for gradients, shifted by a zero input of its own shape. Every layer
call of one traced forward pass is recorded the same way, which gives their
order, output shapes and the softmax head, as the replay does for graphs.

Every tensor, input and layer the probe adds is named ``kfv_*`` and checked
against every name in the model: Keras' automatic names (``add_1``) depend
on what the process built before, and a model loaded from a file may
already use them.
"""

from __future__ import annotations

import contextlib
import difflib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import keras
from keras import ops

__all__ = [
    "LayerInfo",
    "all_layers",
    "conv_layers",
    "last_conv_layer",
    "resolve_layer",
    "spatial_layers",
    "submodel",
    "score_kind",
    "output_layer",
    "output_names",
    "input_shape",
]

# Convolutions proper: the layers whose filters gradient ascent visualises.
_CONV_TYPES = (
    keras.layers.Conv2D,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Conv2DTranspose,
)
# Shape-preserving layers that commonly follow a convolution (BN, then the
# activation): Grad-CAM reads the map after them, where the features are.
_FOLLOWERS = (
    keras.layers.BatchNormalization,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.PReLU,
)
_SCORES = ("logit", "probability")


@dataclass(frozen=True)
class LayerInfo:
    """A layer as seen in a model's flattened graph.

    Attributes:
        layer: the `keras.layers.Layer` object (the caller's own).
        path: its name, prefixed by the names of the models that contain it
            (``"backbone/Conv_1"``).
        output_shape: its symbolic output shape, batch dimension first.
        input_ids: positions, in the replay's list of calls, of the calls
            whose outputs it consumes (used to follow a conv into its
            activation).
    """

    layer: keras.layers.Layer
    path: str
    output_shape: tuple[int | None, ...]
    input_ids: tuple[int, ...] = ()

    @property
    def is_spatial(self) -> bool:
        """True for an (N, h, w, C) output."""
        return len(self.output_shape) == 4

    @property
    def is_conv(self) -> bool:
        return self.is_spatial and isinstance(self.layer, _CONV_TYPES)


def _check_model(model) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a `keras.Model`. Received: {type(model).__name__}")
    if not is_graph(model):
        _called_shape(model)  # raises if the model was never called
        return
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            f"Model {model.name!r} has no defined input: build it first, e.g. start a "
            "Sequential model with `keras.Input(shape)` or call `model.build((None, H, W, C))`."
        )
    if len(inputs) != 1:
        raise ValueError(
            f"Expected a model with one image input. Received: model {model.name!r} with "
            f"{len(inputs)} inputs"
        )


def is_graph(model: keras.Model) -> bool:
    """True for Sequential and Functional models (their layers can be replayed)."""
    return isinstance(model, keras.Sequential) or _is_functional(model)


def _called_shape(model) -> tuple:
    """The (N, H, W, C) shape a subclassed model was first called (or built) with."""
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    shapes = [tuple(v) for v in shapes.values() if v is not None]
    if not model.built or len(shapes) != 1:
        raise ValueError(
            f"Subclassed model {model.name!r} ({type(model).__name__}) has not been called on "
            "images yet, so its input shape is unknown. Call it once on a batch first, e.g. "
            "`model(images[:1])`, or `model.build((None, H, W, C))`. Received: "
            + ("an unbuilt model" if not model.built else f"build shapes {shapes}")
        )
    return (None, *shapes[0][1:])


def input_shape(model: keras.Model) -> tuple[int | None, ...]:
    """The (H, W, C) input shape of a one-input image model (dims may be None)."""
    _check_model(model)
    full = tuple(model.inputs[0].shape) if is_graph(model) else _called_shape(model)
    shape = full[1:]
    if len(shape) != 3:
        raise ValueError(
            f"Expected a model taking images of shape (N, H, W, C). Received: model "
            f"{model.name!r} with input shape {full}"
        )
    return shape


def _model_names(model) -> set:
    """Every layer and operation name inside `model`, nested models entered."""
    names, stack, seen = set(), [model], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        names.add(getattr(item, "name", None))
        children = list(getattr(item, "operations", None) or [])
        if isinstance(item, keras.layers.Layer):
            children += list(item._flatten_layers(include_self=False, recursive=False))
        stack.extend(children)
    return names


def _fresh_name(base, taken: set) -> str:
    """``kfv_<base>`` (then ``_1``, ``_2``...) not among `taken`; reserved in it."""
    name, k = f"kfv_{base}", 0
    while name in taken:
        k += 1
        name = f"kfv_{base}_{k}"
    taken.add(name)
    return name


class _Replay:
    """Calls a model's layers on new symbolic inputs, flattening nested models.

    `hooks` maps ``id(layer)`` to ``fn(tensor) -> tensor``, applied to that
    layer's output (its first call) before the rest of the graph uses it.
    """

    # The model's output and its names, set by `_trace`.
    output: Any
    output_names: list[str]

    def __init__(self, hooks=None):
        self.hooks = hooks or {}
        self.rows: list[LayerInfo] = []
        self.outputs: dict[int, Any] = {}  # id(layer) -> its (hooked) output
        self._producer: dict[int, tuple] = {}  # id(tensor) -> (row index, call args, tensor)

    def run(self, model, inputs, prefix=""):
        if isinstance(model, keras.Sequential):
            x = inputs
            for layer in model.layers:
                x = self._call(layer, prefix, x)
            return x
        if _is_functional(model):
            # Run the model's own graph on `inputs`, one call per node, with
            # each layer called through `_call`. This is what Functional.call
            # and clone_model's `call_function` do; calling it directly builds
            # no intermediate Model, so hooks may add inputs of their own.
            def wrap(layer):
                return lambda *a, **k: self._call(layer, prefix, *a, **k)

            out = model._run_through_graph(inputs, operation_fn=wrap)
            flat = keras.tree.flatten(out)
            return flat[0] if len(flat) == 1 else flat
        raise ValueError(
            f"Cannot look inside model {model.name!r} of type {type(model).__name__}: "
            "only Sequential and Functional models (nested or not) are supported. Wrap a "
            "subclassed model's layers in a Functional model."
        )

    def _call(self, layer, prefix, *args, **kwargs):
        if isinstance(layer, keras.layers.InputLayer):
            return args[0]
        path = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model) and (
            isinstance(layer, keras.Sequential) or _is_functional(layer)
        ):
            out = self.run(layer, args[0], prefix=f"{path}/")
        else:
            out = layer(*args, **kwargs)
        first = id(layer) not in self.outputs
        if first and id(layer) in self.hooks:
            out = self.hooks[id(layer)](out)
        flat_in = [t for t in keras.tree.flatten((args, kwargs)) if id(t) in self._producer]
        row = LayerInfo(
            layer,
            path,
            tuple(out.shape) if hasattr(out, "shape") else (),
            tuple(self._producer[id(t)][0] for t in flat_in),
        )
        self.rows.append(row)
        if first:
            self.outputs[id(layer)] = out
        for t in keras.tree.flatten(out):
            # The tensor is kept alive with its entry, so its id stays unique.
            self._producer[id(t)] = (len(self.rows) - 1, args, t)
        return out

    def producer(self, tensor):
        """(LayerInfo, call args) of the layer that made `tensor`, or None."""
        hit = self._producer.get(id(tensor))
        return None if hit is None else (self.rows[hit[0]], hit[1])

    def consumers(self, i):
        """Indices of the calls that take call `i`'s output as an input."""
        return [j for j, r in enumerate(self.rows) if i in r.input_ids]


def _is_functional(model) -> bool:
    # Functional models (and keras.applications) keep their graph; a
    # subclassed model does not.
    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth")


def _fresh_input(model, taken=None):
    taken = _model_names(model) if taken is None else taken
    return keras.Input(input_shape(model), name=_fresh_name("image", taken))


def all_layers(model: keras.Model) -> list[LayerInfo]:
    """Every layer of the model in graph order, nested models entered.

    A nested model appears after its own layers, as the layer producing
    their final output.

    Args:
        model: a Sequential or Functional `keras.Model` with one image input.

    Returns:
        A list of `LayerInfo` (layer, path, output shape).

    Example:

    >>> from keras_fer_viz.models import fer_cnn
    >>> [info.path for info in all_layers(fer_cnn())][-2:]
    ['dense3_dropout', 'predictions']
    """
    seen, rows = set(), []
    for row in _trace(model).rows:  # a shared layer is listed once, at its first call
        if id(row.layer) not in seen:
            seen.add(id(row.layer))
            rows.append(row)
    return rows


def spatial_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers with an (N, h, w, C) output, nested models entered, in order."""
    return [r.layer for r in all_layers(model) if r.is_spatial and not _is_container(r.layer)]


def conv_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The convolution layers with an (N, h, w, C) output, in graph order.

    Convolutions of nested models (a backbone inside a Sequential) are
    included. These are the layers whose filters `maximize_activation`
    visualises; the "third conv layer" of the study is ``conv_layers(m)[2]``.

    Example:

    >>> from keras_fer_viz.models import fer_cnn
    >>> [layer.name for layer in conv_layers(fer_cnn())][:3]
    ['block1_conv1', 'block1_conv2', 'block2_conv1']
    """
    return [r.layer for r in all_layers(model) if r.is_conv]


def last_conv_layer(model: keras.Model) -> keras.layers.Layer:
    """The layer Grad-CAM and CAM use by default.

    The last convolution whose output still has the image's spatial grid
    (convolutions after global pooling, flattening or a reshape, such as the
    1x1 "logits" convolution of MobileNetV3, are passed over: their map is
    constant), then forward through what keeps its grid until the head:
    batch normalisation and activations (``Conv -> BN -> ReLU``), residual
    additions and concatenations (ResNet's ``post_relu``, DenseNet's final
    ``relu``), dropout; the map is read where the features the head pools
    are, as Selvaraju et al. (2017) read it. A squeeze-and-excitation gate
    (a pooled branch multiplied back onto the grid) does not end the grid.
    Pooling that halves the grid ends the walk: the reference CNN's map is
    read at its last convolution (12x12), not after its last pooling (6x6).

    Raises:
        ValueError: if the model has no convolution layer before its
            spatial grid collapses.

    Example:

    >>> from keras_fer_viz.models import fer_cnn
    >>> last_conv_layer(fer_cnn()).name
    'block3_conv2'
    """
    replay = _trace(model)
    rows = replay.rows
    collapsed = _collapsed(rows)
    convs = [i for i, r in enumerate(rows) if r.is_conv and not collapsed[i]]
    if not convs:
        spatial = [
            r.path
            for i, r in enumerate(rows)
            if r.is_spatial and not collapsed[i] and not _is_container(r.layer)
        ]
        raise ValueError(
            f"Model {model.name!r} has no convolution layer with an (N, h, w, C) output "
            "before global pooling or flattening. "
            + (
                f"Pass a spatial layer explicitly; candidates: {_listing(spatial)}"
                if spatial
                else "Grad-CAM and CAM need a spatial layer: this model has none."
            )
        )
    i = convs[-1]
    grid = rows[i].output_shape[1:3]
    while True:
        consumers = [j for j in replay.consumers(i) if not _is_container(rows[j].layer)]
        if len(consumers) != 1:
            break
        j = consumers[0]
        nxt = rows[j]
        if (
            not isinstance(nxt.layer, keras.layers.Layer)  # a bare op (a Functional `+`)
            or collapsed[j]
            or not nxt.is_spatial
            or nxt.output_shape[1:3] != grid
        ):
            break
        i = j
    return rows[i].layer


# Layers after which a tensor no longer has the image's spatial grid, whatever
# its rank (GlobalAveragePooling2D(keepdims=True) keeps a (N, 1, 1, C) tensor).
_COLLAPSING = (
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Flatten,
    keras.layers.Reshape,
)


def _collapsed(rows) -> list[bool]:
    """For each call, whether its output has lost the image's grid.

    A collapsing layer's output has; so has a call whose inputs all have (a
    convolution on pooled features). A call with one input still on the grid
    has not: a squeeze-and-excitation gate multiplies a pooled branch back
    onto the grid.
    """
    out: list[bool] = []
    for i, r in enumerate(rows):
        if _is_container(r.layer) and i > 0:
            out.append(out[i - 1])  # a nested model is listed after its last layer
            continue
        inputs = [out[j] for j in r.input_ids if j < i]
        out.append(
            isinstance(r.layer, _COLLAPSING) or not r.is_spatial or (bool(inputs) and all(inputs))
        )
    return out


def _trace(model):
    """The layer calls of one forward pass: a `_Replay` (graphs) or a `_CallTrace`."""
    if not is_graph(model):
        return _CallTrace(model)
    replay = _Replay()
    replay.output = replay.run(model, _fresh_input(model))
    replay.output_names = output_names(model)
    return replay


def _is_container(layer) -> bool:
    return isinstance(layer, keras.Model)


def resolve_layer(
    model: keras.Model, ref: str | int | keras.layers.Layer | None = None
) -> keras.layers.Layer:
    """Finds a layer of a model, nested models included.

    Args:
        model: a Sequential or Functional `keras.Model`.
        ref: the layer's name; a path through nested models such as
            ``"mobilenetv2_1.00_96/Conv_1"``; a `keras.layers.Layer` of the
            model; an int indexing ``model.layers`` (as
            `keras.Model.get_layer` does, negative from the end); or None
            for `last_conv_layer`. Defaults to `None`.

    Returns:
        The `keras.layers.Layer` (the model's own object).

    Raises:
        ValueError: if no layer or several layers match; the message lists
            the candidates.

    Example:

    >>> from keras_fer_viz.models import fer_cnn
    >>> model = fer_cnn()
    >>> resolve_layer(model, "block2_conv1").filters
    64
    >>> resolve_layer(model, -1).name
    'predictions'
    """
    if ref is None:
        return last_conv_layer(model)
    rows = all_layers(model)
    if isinstance(ref, keras.layers.Layer):
        if any(r.layer is ref for r in rows):
            return ref
        raise ValueError(
            f"Layer {ref.name!r} is not part of model {model.name!r}. "
            f"Layers of the model: {_listing([r.path for r in rows])}"
        )
    if isinstance(ref, bool) or not isinstance(ref, (str, int)):
        raise TypeError(
            "Expected a layer name, a path, a Layer, an int index or None. "
            f"Received: {type(ref).__name__} {ref!r}"
        )
    if isinstance(ref, int):
        n = len(model.layers)
        if not -n <= ref < n:
            raise ValueError(
                f"Layer index {ref} is out of range: model {model.name!r} has {n} layers "
                f"(indices {-n} to {n - 1}). Layers: {_listing([la.name for la in model.layers])}"
            )
        return model.layers[ref]
    matches = [r for r in rows if r.path == ref]
    if not matches:
        matches = [r for r in rows if r.layer.name == ref]
    if len(matches) == 1:
        return matches[0].layer
    paths = [r.path for r in rows]
    if len(matches) > 1:
        raise ValueError(
            f"Layer name {ref!r} is ambiguous in model {model.name!r}: it matches "
            f"{[r.path for r in matches]}. Pass one of these paths instead."
        )
    close = difflib.get_close_matches(ref, paths + [r.layer.name for r in rows], n=3)
    hint = f" Did you mean {close}?" if close else ""
    raise ValueError(
        f"No layer named {ref!r} in model {model.name!r}.{hint} Layers: {_listing(paths)}"
    )


def _listing(names, limit=40) -> str:
    names = list(names)
    if len(names) <= limit:
        return str(names)
    return f"{names[:limit]} and {len(names) - limit} more"


# --- outputs ----------------------------------------------------------------


def output_names(model: keras.Model) -> list[str]:
    """The names of a model's outputs, in the order Keras flattens them.

    A Functional model's outputs are named by their layers (or by the keys
    of a dict of outputs); a subclassed model's by the keys of the dict its
    ``call`` returns, or ``"0"``, ``"1"``... for a list.
    """
    if isinstance(model, keras.Sequential):
        return [model.layers[-1].name] if model.layers else ["0"]
    if is_graph(model):
        struct = getattr(model, "_outputs_struct", None)
        if isinstance(struct, dict):
            return sorted(struct)
        return list(model.output_names)
    return _CallTrace(model).output_names


def _output_index(model, output, names) -> int:
    n = len(names)
    if output is None:
        if n == 1:
            return 0
        raise ValueError(
            f"Model {model.name!r} has {n} outputs: {names}. Pass `output=` (one of these "
            f"names, or an index 0 to {n - 1}) to choose the one to explain."
        )
    if isinstance(output, bool) or not isinstance(output, (int, str)):
        raise TypeError(
            f"Expected `output` to be an output's name or index. Received: "
            f"{type(output).__name__} {output!r}"
        )
    if isinstance(output, int):
        if not -n <= output < n:
            raise ValueError(
                f"Output index {output} is out of range: model {model.name!r} has {n} "
                f"output(s): {names}"
            )
        return output % n
    aliases = list(names)
    layer_names = getattr(model, "output_names", None) if is_graph(model) else None
    if layer_names and list(layer_names) != aliases:
        aliases = list(layer_names)  # layer names as well as dict keys
    for candidates in (names, aliases):
        if output in candidates:
            return list(candidates).index(output)
    raise ValueError(
        f"Model {model.name!r} has no output named {output!r}. Its outputs: {names}"
        + (f" (layers {aliases})" if aliases != names else "")
    )


def _select(model, out, output, names=None):
    """The chosen tensor of a (possibly multi-output) model's flat outputs.

    `names` are the model's output names when the caller has them (a trace).
    """
    flat = keras.tree.flatten(out)
    if len(flat) == 1 and output in (None, 0, -1):
        return flat[0]
    names = output_names(model) if names is None else names
    return flat[_output_index(model, output, names)]


def output_layer(model: keras.Model, output: str | int | None = None) -> keras.layers.Layer:
    """The innermost layer that produces the model's (chosen) output, nested models entered."""
    trace = _trace(model)
    out = _select(model, trace.output, output, trace.output_names)
    hit = trace._producer.get(id(out))
    if hit is None:
        raise ValueError(f"Model {model.name!r} has no layer producing its output")
    rows, i = trace.rows, hit[0]
    while isinstance(rows[i].layer, keras.Model) and i > 0:
        i -= 1  # a nested model is listed right after its last layer
    return rows[i].layer


def score_kind(
    model: keras.Model, output: str | int | None = None
) -> Literal["softmax-dense", "softmax-layer", "none"]:
    """How the model's output relates to logits.

    Returns:
        ``"softmax-dense"`` when the last layer is a Dense layer with a
        softmax activation, ``"softmax-layer"`` when it is a separate Softmax
        (or softmax Activation) layer, and ``"none"`` otherwise (the output
        is explained as it is).
    """
    trace = _trace(model)
    return _head(trace, _select(model, trace.output, output, trace.output_names))[0]


def _is_softmax(fn) -> bool:
    return fn is keras.activations.softmax or getattr(fn, "__name__", "") == "softmax"


def _head(replay, out):
    hit = replay.producer(out)
    if hit is None:
        return "none", None
    row, args = hit
    layer = row.layer
    if isinstance(layer, keras.layers.Dense) and _is_softmax(layer.activation):
        return "softmax-dense", (layer, args[0])
    if isinstance(layer, keras.layers.Softmax) or (
        isinstance(layer, keras.layers.Activation) and _is_softmax(layer.activation)
    ):
        return "softmax-layer", (layer, args[0])
    return "none", None


def _dense_logits(dense, x):
    """The pre-activation output of a Dense layer, in float32 (its weights, unmodified)."""
    kernel = ops.cast(dense.kernel, "float32")
    y = ops.matmul(ops.cast(x, "float32"), kernel)
    if dense.use_bias:
        y = ops.add(y, ops.cast(dense.bias, "float32"))
    return y


class _DenseLogits(keras.layers.Layer):
    """The pre-activation output of a softmax Dense layer, sharing its weights.

    The Dense layer is tracked (so a stateless call sees its variables) and
    never modified.
    """

    def __init__(self, dense, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.dense = dense

    def call(self, x):
        return _dense_logits(self.dense, x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.dense.units,)


def _check_score(score):
    if score not in _SCORES + (None,):
        raise ValueError(f"Expected score 'logit', 'probability' or None. Received: {score!r}")


# --- subclassed models: calls intercepted ------------------------------------

_INTERCEPT_LOCK = threading.RLock()


@contextlib.contextmanager
def _intercepting(hooks):
    """Runs with ``layer.call`` wrapped for each ``id(layer) -> (layer, fn)`` in `hooks`.

    ``fn(args, kwargs, out)`` returns what the layer's call returns. The
    wrapper is an attribute of the layer object for the duration of the
    block only (the class and every other object are untouched), then
    removed, whatever happens inside.
    """
    with _INTERCEPT_LOCK:
        saved = []
        try:
            for layer, fn in hooks.values():
                own = layer.__dict__.get("call", None)
                original = layer.call

                def wrapped(*args, __original=original, __fn=fn, **kwargs):
                    return __fn(args, kwargs, __original(*args, **kwargs))

                saved.append((layer, own))
                object.__setattr__(layer, "call", wrapped)
            yield
        finally:
            for layer, own in reversed(saved):
                if own is None:
                    object.__delattr__(layer, "call")
                else:
                    object.__setattr__(layer, "call", own)


def _leaf_layers(model):
    """Every layer inside a model (at any depth), except the model itself."""
    return list(model._flatten_layers(include_self=False, recursive=True))


class _CallTrace:
    """The layer calls of a subclassed model, recorded from one forward pass.

    Every layer inside the model is intercepted (see `_intercepting`) while
    the model is called on one zero image: each call becomes a `LayerInfo`
    row, in the order the calls finish (a layer holding others comes after
    them, as a nested model does in the replay), with the rows whose outputs
    it consumed. It answers the questions `_Replay` answers for graphs.
    """

    def __init__(self, model):
        self.model = model
        self.rows: list[LayerInfo] = []
        self._producer: dict[int, tuple] = {}
        self._keep: list[Any] = []  # the traced tensors, so that their ids stay unique
        shape = input_shape(model)

        def record(layer):
            def fn(args, kwargs, out):
                flat_in = [t for t in keras.tree.flatten((args, kwargs)) if id(t) in self._producer]
                row = LayerInfo(
                    layer,
                    layer.name,
                    (None, *tuple(out.shape)[1:]) if hasattr(out, "shape") else (),
                    tuple(self._producer[id(t)][0] for t in flat_in),
                )
                self.rows.append(row)
                for t in keras.tree.flatten(out):
                    self._producer[id(t)] = (len(self.rows) - 1, args, t)
                self._keep.append((args, out))
                return out

            return fn

        hooks = {id(la): (la, record(la)) for la in _leaf_layers(model)}
        image = ops.zeros((1, *shape), dtype="float32")
        with _no_grad(), _intercepting(hooks):
            out = model(image, training=False)
        self.output = out
        self._keep.append(out)
        if isinstance(out, dict):
            self.output_names = sorted(out)
        else:
            self.output_names = [str(i) for i in range(len(keras.tree.flatten(out)))]

    def producer(self, tensor):
        hit = self._producer.get(id(tensor))
        return None if hit is None else (self.rows[hit[0]], hit[1])

    def consumers(self, i):
        return [j for j, r in enumerate(self.rows) if i in r.input_ids]


@contextlib.contextmanager
def _no_grad():
    if keras.backend.backend() == "torch":
        import torch

        with torch.no_grad():
            yield
    else:
        yield


class _CallProbe:
    """A probe for a subclassed model: the model called as it is, layers intercepted.

    Called like the probe models of `build_probe` (``probe(inputs,
    training=False)`` with ``inputs = image`` or ``[image, *deltas]``), it
    returns ``[*layer_outputs, score]``. Its `variables` are the model's.
    """

    def __init__(self, model, layers, score, perturb, output):
        self.model, self.layers, self.score, self.perturb = model, list(layers), score, perturb
        self.output = output
        trace = _CallTrace(model)
        chosen = _select(model, trace.output, output, trace.output_names)
        self._index = _output_index(model, output, trace.output_names) if output is not None else 0
        self._head: tuple[str, Any] = _head(trace, chosen) if score == "logit" else ("none", None)
        first: dict[int, LayerInfo] = {}
        for row in trace.rows:
            first.setdefault(id(row.layer), row)
        missing = [la.name for la in self.layers if id(la) not in first]
        if missing:
            raise ValueError(
                f"Layers {missing} are not called when model {model.name!r} runs. Layers it "
                f"calls: {_listing([r.path for r in trace.rows])}"
            )
        self.shapes = [first[id(la)].output_shape for la in self.layers]
        score_shape = tuple(chosen.shape)
        self.name = f"{model.name}_probe"
        self.outputs = [keras.KerasTensor(s) for s in self.shapes]
        if score is not None:
            self.outputs.append(keras.KerasTensor((None, *score_shape[1:])))

    @property
    def variables(self):
        return self.model.variables

    def __call__(self, inputs, training=False):
        if self.perturb:
            image, *deltas = inputs
        else:
            image, deltas = inputs, []
        taps = {}
        hooks = {}
        for k, layer in enumerate(self.layers):

            def tap(args, kwargs, out, k=k):
                if k in taps:  # a shared layer: its first call, as in the replay
                    return out
                if self.perturb:
                    out = ops.add(out, ops.cast(deltas[k], out.dtype))
                taps[k] = out
                return out

            hooks[id(layer)] = (layer, tap)
        kind, head = self._head
        if kind != "none":
            layer = head[0]
            inner = hooks.get(id(layer))

            def logits(args, kwargs, out, inner=inner):
                taps.setdefault(
                    "logit",
                    _dense_logits(layer, args[0]) if kind == "softmax-dense" else args[0],
                )
                return inner[1](args, kwargs, out) if inner else out

            hooks[id(layer)] = (layer, logits)
        with _intercepting(hooks):
            out = self.model(image, training=training)
        flat = keras.tree.flatten(out)
        chosen = flat[self._index]
        outputs = [ops.cast(taps[k], "float32") for k in range(len(self.layers))]
        if self.score == "logit":
            outputs.append(ops.cast(taps.get("logit", chosen), "float32"))
        elif self.score == "probability":
            outputs.append(ops.cast(chosen, "float32"))
        return outputs


# --- probes -------------------------------------------------------------------


def build_probe(
    model: keras.Model,
    layers: Sequence[keras.layers.Layer] = (),
    score: Literal["logit", "probability"] | None = "logit",
    perturb: bool = False,
    output: str | int | None = None,
) -> tuple[Any, list[tuple[Any, ...]]]:
    """Builds the probe that explainers differentiate.

    Args:
        model: the caller's model (not modified).
        layers: layers (already resolved) whose outputs are returned.
        score: "logit", "probability", or None for no score output.
        perturb: if True, each chosen layer's output gets an added input of
            its own shape (fed with zeros): the gradient with respect to that
            input is the gradient with respect to the layer's output, on
            every backend.
        output: the output to explain, by name or index; None for a model
            with one output (a multi-output model is refused, naming its
            outputs). Not needed when `score` is None.

    Returns:
        ``(probe, shapes)``: a callable with inputs ``[image, *deltas]``
        (just ``image`` when `perturb` is False) and outputs
        ``[*layer_outputs, score]`` (the score left out when `score` is
        None), and the output shapes of the chosen layers. For Sequential
        and Functional models the probe is a `keras.Model` built on a fresh
        `keras.Input`; for a subclassed model it calls the model itself.
        Layer outputs and scores are float32 whatever the model's dtype
        policy (mixed precision).
    """
    _check_score(score)
    layers = list(layers)
    if not is_graph(model):
        probe = _CallProbe(model, layers, score, perturb, output)
        return probe, probe.shapes
    taken = _model_names(model)
    image = _fresh_input(model, taken)
    deltas: list[Any] = []

    def make_hook(layer):
        def hook(out):
            if not perturb:
                return out
            if not hasattr(out, "shape") or len(out.shape) < 2:
                raise ValueError(f"Layer {layer.name!r} has no single tensor output")
            delta = keras.Input(
                tuple(out.shape[1:]), name=_fresh_name(f"delta_{len(deltas)}", taken)
            )
            deltas.append(delta)
            # A named layer, not `ops.add`: an op would take Keras' next automatic
            # name ("add_1"), which the model may already use.
            return keras.layers.Add(dtype="float32", name=_fresh_name("tap", taken))([out, delta])

        return hook

    replay = _Replay({id(la): make_hook(la) for la in layers})
    out = replay.run(model, image)
    missing = [la.name for la in layers if id(la) not in replay.outputs]
    if missing:
        raise ValueError(f"Layers {missing} are not on the path from the input to the output")
    taps = [replay.outputs[id(la)] for la in layers]
    outputs = list(taps)
    if score is not None:
        chosen = _select(model, out, output)
        if score == "logit":
            kind, head = _head(replay, chosen)
            if kind == "softmax-dense":
                outputs.append(_DenseLogits(head[0], name=_fresh_name("logits", taken))(head[1]))
            elif kind == "softmax-layer":
                outputs.append(head[1])
            else:
                outputs.append(chosen)
        else:
            outputs.append(chosen)
    inputs = [image, *deltas] if perturb else image
    probe = keras.Model(inputs, outputs, name=_fresh_name("probe", taken))
    return probe, [tuple(t.shape) for t in taps]


def submodel(
    model: keras.Model,
    layers: str | int | keras.layers.Layer | Sequence[str | int | keras.layers.Layer] = (),
    score: Literal["logit", "probability"] | None = "logit",
    output: str | int | None = None,
) -> keras.Model:
    """A model returning chosen layer outputs together with the class score.

    Built on a fresh `keras.Input` by replaying the caller's layers (shared
    weights, nothing modified), so it works on Sequential, Functional and
    nested models alike.

    Args:
        model: a Sequential or Functional `keras.Model` with one image input.
        layers: layer references (see `resolve_layer`) whose outputs come
            first. Defaults to `()`.
        score: ``"logit"`` (the input of the final softmax, when the model
            ends in one; the output otherwise), ``"probability"`` (the
            model's output), or None (layer outputs only). Defaults to
            `"logit"`.
        output: a multi-output model's output (name or index). Defaults to
            `None`.

    Returns:
        A `keras.Model` mapping images to ``[*layer_outputs, score]`` (a
        single tensor when only one output is asked for).

    Example:

    >>> from keras_fer_viz.models import fer_cnn
    >>> sub = submodel(fer_cnn(), ["block3_conv2"])
    >>> [tuple(o.shape) for o in sub.outputs]
    [(None, 12, 12, 128), (None, 7)]
    """
    _check_score(score)
    if isinstance(layers, (str, int, keras.layers.Layer)):
        layers = [layers]
    resolved = [resolve_layer(model, ref) for ref in layers]
    if not resolved and score is None:
        raise ValueError("Expected at least one layer, or a score.")
    probe, _ = build_probe(model, resolved, score=score, output=output)
    return probe
