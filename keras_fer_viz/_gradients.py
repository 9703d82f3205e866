"""Compiled gradients: the only module that knows which backend Keras runs on.

Every explainer writes its computation once, in `keras.ops`, as a function
of numpy-shaped tensors, and asks this module for two things:

- `value_and_grad(probe)`: a function that runs a probe model (see
  `keras_fer_viz.layers.build_probe`) in inference mode and returns its
  outputs, the gradients of the summed target scores with respect to each of
  its inputs, and the targets (a negative target means the predicted class);
- `compile(fn, model, specs)`: `fn` compiled, called with numpy arrays and
  returning numpy arrays.

How each backend compiles:

- TensorFlow: a `tf.function` with a batch dimension of None, so that a new
  batch size does not trace again. Gradients are always taken inside it:
  eager gradients through some real models abort TensorFlow inside oneDNN,
  compiled ones do not, and compiled ones are faster.
- JAX: `jax.jit` of a pure function of the model's variable values (mapped
  onto the model through a `keras.StatelessScope`), so every call sees the
  variables as they are now (a model being trained, or randomised by a
  sanity check) without tracing again. XLA compiles once per input shape,
  so a call's batch is padded to the next power of two (`padded_size`):
  any sequence of batch sizes up to B costs at most log2(B) + 1 compiles.
- PyTorch: eager execution (PyTorch's own way of running a Keras model; no
  graph compiler is needed on CPU), forward-only functions under
  `torch.no_grad`, gradients with `torch.autograd.grad`, which leaves the
  model's parameters' `.grad` untouched.

Several devices: under a `keras.distribution` with a batch axis (JAX's
`DataParallel`) or inside a `tf.distribute` strategy's scope (TensorFlow), a
call's batch is split over the devices (padded to a multiple of their
number) and the variables are read as they are; the results are those of one
device.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol, cast

import keras
import numpy as np
from keras import ops

__all__ = [
    "backend",
    "compile",
    "forward",
    "grad",
    "value_and_grad",
    "gather_scores",
    "predict",
    "no_distribution",
    "padded_size",
    "call_size",
]

_PREDICT: weakref.WeakKeyDictionary[Any, dict[Any, Compiled]] = weakref.WeakKeyDictionary()

#: Pad JAX calls' batches to powers of two (bounded compiles). A switch for the
#: benchmark that measures what it saves; leave it on.
PAD_JAX_BATCHES = True


def backend() -> str:
    return keras.backend.backend()


def padded_size(n: int) -> int:
    """The batch size a compiled call of `n` inputs runs at.

    On JAX (which compiles once per input shape) the next power of two, and
    a multiple of the devices a `keras.distribution` splits batches over:
    any sequence of batch sizes up to B then costs at most log2(B) + 1
    compiles. On TensorFlow and PyTorch, `n` (neither compiles per size).
    """
    n = int(n)
    if backend() != "jax" or n == 0:
        return n
    size = 1 << (n - 1).bit_length() if PAD_JAX_BATCHES else n
    devices = len(_jax_mesh_devices() or ())
    if devices > 1:
        size = -(-size // devices) * devices
    return size


def call_size(step: int) -> int:
    """Inputs per call for a memory bound of `step`: on JAX the largest power of two in it.

    Padded to `padded_size`, a call never exceeds the bound: a full call is a
    power of two already, and a ragged last one pads to at most the same.
    """
    step = max(1, int(step))
    if backend() != "jax" or not PAD_JAX_BATCHES:
        return step
    return 1 << (step.bit_length() - 1)


def gather_scores(scores, targets):
    """``scores[i, targets[i]]`` with negative targets replaced by the argmax.

    Returns:
        ``(selected, targets)``: (N,) scores and the (N,) int32 targets used.
    """
    scores = ops.cast(scores, "float32")  # mixed precision: float16 scores
    predicted = ops.cast(ops.argmax(scores, axis=-1), "int32")
    targets = ops.where(targets < 0, predicted, targets)
    selected = ops.take_along_axis(scores, ops.expand_dims(targets, -1), axis=-1)[:, 0]
    return selected, targets


def forward(probe: keras.Model):
    """``f(inputs) -> outputs``: the probe in inference mode, outputs as a list."""

    def f(inputs):
        outputs = _as_list(probe(inputs[0] if len(inputs) == 1 else inputs, training=False))
        return [ops.cast(o, "float32") for o in outputs]

    return f


def predict(model: keras.Model, images, batch_size=None, output=None) -> np.ndarray:
    """The model's (chosen) output for `images`, float32, in compiled batches.

    Unlike `model.predict`, it takes any number of images under a
    `keras.distribution` (JAX's DataParallel needs batches that divide
    evenly between devices), leaves the model's predict function alone, and
    works on a subclassed model.

    Args:
        model: a Keras model with one image input.
        images: (N, H, W, C) images.
        batch_size: images per call; None sizes calls by image size (see
            `keras_fer_viz._explainer.inputs_per_call`). Defaults to `None`.
        output: a multi-output model's output (name or index). Defaults to
            `None`.
    """
    from keras_fer_viz._explainer import inputs_per_call
    from keras_fer_viz.layers import build_probe, input_shape

    images = np.asarray(images, dtype=np.float32)
    cache = _PREDICT.setdefault(model, {})
    fn = cache.get(output)
    if fn is None:
        probe, _ = build_probe(model, (), score="probability", output=output)
        run = forward(probe)
        shape = (None, *input_shape(model))
        fn = cache[output] = compile(
            lambda x: run([x])[-1], model, [(shape, "float32")], batch=(0,)
        )
    step = inputs_per_call(images.shape[1:3], batch_size)
    parts = [fn(images[i : i + step]) for i in range(0, len(images), step)]
    return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


def value_and_grad(probe: keras.Model, wrt=None):
    """Forward and backward pass through a probe model.

    Args:
        probe: the probe model (the class scores its last output).
        wrt: indices of the probe's inputs to differentiate with respect to;
            None for all. The backward pass stops at those inputs: a CAM,
            which needs the gradient at one layer only, does not pay for the
            layers below it. Defaults to `None`.

    Returns:
        A function ``vg(inputs, targets) -> (outputs, grads, targets)``:
        `inputs` is the list of the probe's inputs, `outputs` the list of its
        outputs (the class scores last), `grads` the gradients of
        ``sum_i scores[i, targets[i]]`` with respect to each input (None at
        the inputs not in `wrt`), and `targets` the targets used. It must run
        inside `compile`.
    """
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        def vg(inputs, targets):
            chosen = _chosen(inputs, wrt)
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch([inputs[i] for i in chosen])
                outputs = _as_float32(
                    probe(inputs[0] if len(inputs) == 1 else inputs, training=False)
                )
                selected, targets = gather_scores(outputs[-1], targets)
                total = tf.reduce_sum(selected)
            grads = tape.gradient(total, [inputs[i] for i in chosen])
            return outputs, _spread(grads, chosen, len(inputs)), targets

        return vg
    if name == "jax":
        import jax

        def vg(inputs, targets):
            inputs = list(inputs)
            chosen = _chosen(inputs, wrt)

            def total(variables):
                full = list(inputs)
                for i, v in zip(chosen, variables, strict=True):
                    full[i] = v
                outputs = _as_float32(probe(full[0] if len(full) == 1 else full, training=False))
                selected, used = gather_scores(outputs[-1], targets)
                return ops.sum(selected), (outputs, used)

            (_, (outputs, used)), grads = jax.value_and_grad(total, has_aux=True)(
                [inputs[i] for i in chosen]
            )
            return outputs, _spread(grads, chosen, len(inputs)), used

        return vg
    if name == "torch":
        import torch

        def vg(inputs, targets):
            chosen = _chosen(inputs, wrt)
            with torch.enable_grad():
                inputs = [x.detach().requires_grad_(i in chosen) for i, x in enumerate(inputs)]
                outputs = _as_float32(
                    probe(inputs[0] if len(inputs) == 1 else inputs, training=False)
                )
                selected, used = gather_scores(outputs[-1], targets)
                grads = torch.autograd.grad(
                    selected.sum(), [inputs[i] for i in chosen], allow_unused=True
                )
            grads = [
                torch.zeros_like(inputs[i]) if g is None else g
                for i, g in zip(chosen, grads, strict=True)
            ]
            return [o.detach() for o in outputs], _spread(grads, chosen, len(inputs)), used

        return vg
    raise RuntimeError(_unsupported(name))


def _chosen(inputs, wrt):
    """The input indices to differentiate: all, or `wrt` checked against the inputs."""
    if wrt is None:
        return list(range(len(inputs)))
    chosen = sorted({int(i) for i in wrt})
    if not chosen or chosen[0] < 0 or chosen[-1] >= len(inputs):
        raise ValueError(
            f"Expected `wrt` to be indices of the probe's {len(inputs)} inputs. Received: {wrt!r}"
        )
    return chosen


def _spread(grads, chosen, n):
    """Gradients at the chosen inputs, placed in a list of `n` (None elsewhere)."""
    out = [None] * n
    for i, g in zip(chosen, grads, strict=True):
        out[i] = g
    return out


def grad(fn):
    """``g(x, *args) -> (fn(x, *args), d fn / d x)`` for a scalar `fn`; use inside `compile`."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        def g(x, *args):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = fn(x, *args)
            return value, tape.gradient(value, x)

        return g
    if name == "jax":
        import jax

        def g(x, *args):
            return jax.value_and_grad(fn)(x, *args)

        return g
    if name == "torch":
        import torch

        def g(x, *args):
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)
                value = fn(x, *args)
                (gradient,) = torch.autograd.grad(value, [x], allow_unused=True)
            return value.detach(), torch.zeros_like(x) if gradient is None else gradient

        return g
    raise RuntimeError(_unsupported(name))


class Compiled(Protocol):
    """What `compile` returns: a function of numpy arrays, with two counters."""

    def __call__(self, *args: Any) -> Any: ...

    trace_count: Callable[[], int]
    devices: Callable[[], int]


def _compiled(
    call: Callable[..., Any], trace_count: Callable[[], int], devices: Callable[[], int]
) -> Compiled:
    """`call` with its `trace_count()` and `devices()`."""
    out = cast(Compiled, call)
    out.trace_count = trace_count
    out.devices = devices
    return out


def compile(fn, model: keras.Model, specs, batch=None) -> Compiled:
    """Compiles `fn` once per input signature.

    Args:
        fn: a function of tensors written in `keras.ops` (and `value_and_grad`).
        model: the model whose variables `fn` reads (their current values are
            used at every call, so a model being trained is seen as it is).
        specs: one ``(shape, dtype)`` per argument of `fn`, None for a
            dimension that may change between calls.
        batch: indices of the arguments whose first axis is the batch (one
            length in a call), or None. Then every output's first axis is the
            batch too, and each row of the outputs depends only on the same
            row of those arguments: the batch may be padded (JAX: to
            `padded_size`, with copies of its last row, cut off again) and
            split over the devices of an active `keras.distribution` or
            `tf.distribute` strategy. Defaults to `None`.

    Returns:
        A function of numpy arrays returning numpy arrays (a tuple of them if
        `fn` returns several), with a `trace_count()` method: how many times
        `fn` was traced (TensorFlow: once for any batch size; JAX: once per
        input shape; PyTorch: never, it runs eagerly), and `devices()`: how
        many devices its last call ran on.
    """
    batch = () if batch is None else tuple(batch)
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        signature = [tf.TensorSpec(shape, dtype) for shape, dtype in specs]
        # functools.partial: TensorFlow counts traces by the function's code
        # object, which every explainer of a class shares, so explainers made
        # one after another (a randomisation check, a report) would each
        # trace once and yet be warned of "excessive retracing". A partial
        # has no code object of its own: it is counted by itself.
        compiled = tf.function(
            functools.partial(fn), input_signature=signature, reduce_retracing=True
        )
        used = [1]

        def call(*given):
            args = [np.asarray(a) for a in given]
            _batch_length(args, batch)
            strategy = _tf_strategy() if batch else None
            if strategy is None:
                used[0] = 1
                out = compiled(*args)
                return keras.tree.map_structure(lambda t: t.numpy(), out)
            used[0] = replicas = strategy.num_replicas_in_sync
            n = len(args[batch[0]])
            args = _pad(args, batch, -(-n // replicas) * replicas)
            per = len(args[batch[0]]) // replicas

            def shard(context):
                i = context.replica_id_in_sync_group
                return tuple(
                    a[i * per : (i + 1) * per] if k in batch else a for k, a in enumerate(args)
                )

            values = strategy.experimental_distribute_values_from_function(shard)
            out = strategy.run(lambda parts: compiled(*parts), args=(values,))
            out = keras.tree.map_structure(
                lambda v: np.concatenate(
                    [t.numpy() for t in strategy.experimental_local_results(v)]
                )[:n],
                out,
            )
            return out

        return _compiled(call, compiled.experimental_get_tracing_count, lambda: used[0])
    dtypes = [dtype for _, dtype in specs]
    if name == "jax":
        import jax

        variables = _variables(model)
        traces, used = [0], [1]

        def pure(values, *args):
            traces[0] += 1
            # Traced without the user's keras.distribution (its layouts would
            # constrain every layer's batch axis): the batch is split over the
            # devices by the sharding of the arguments instead (see below).
            with (
                no_distribution(),
                keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))),
            ):
                return fn(*args)

        jitted = jax.jit(pure)

        def call(*given):
            values = [v.value for v in variables]
            args = [np.asarray(a, d) for a, d in zip(given, dtypes, strict=True)]
            n = len(args[batch[0]]) if batch else None
            if n is not None:  # a batch
                args = _pad(args, batch, padded_size(n))
            mesh = _jax_mesh() if batch else None
            if mesh is not None and len(args[batch[0]]) % mesh.size == 0:
                values, args = _jax_shard(mesh, values, args, batch)
                used[0] = mesh.size
            else:
                used[0] = 1
            out = keras.tree.map_structure(np.asarray, jitted(values, *args))
            if batch and len(args[batch[0]]) != n:
                out = keras.tree.map_structure(lambda a: a[:n], out)
            return out

        return _compiled(call, lambda: traces[0], lambda: used[0])
    if name == "torch":
        import torch

        def call(*args):
            _batch_length(args, batch)
            with torch.no_grad():
                out = fn(
                    *[
                        ops.convert_to_tensor(np.asarray(a, d))
                        for a, d in zip(args, dtypes, strict=True)
                    ]
                )
            return keras.tree.map_structure(lambda t: t.detach().cpu().numpy(), out)

        return _compiled(call, lambda: 0, lambda: 1)
    raise RuntimeError(_unsupported(name))


def _batch_length(args, batch):
    """The length the batch arguments share (None without any); else a ValueError."""
    if not batch:
        return None
    lengths = [len(args[k]) for k in batch]
    if len(set(lengths)) > 1:
        raise ValueError(
            f"Expected the batch arguments {batch} to have one length. Received: {lengths}"
        )
    return lengths[0]


def _pad(args, batch, size):
    """`args` with the batch arguments padded to `size` rows (copies of their last row)."""
    n = _batch_length(args, batch)
    if size == n or n == 0:
        return args
    return [
        np.concatenate([a, np.repeat(a[-1:], size - n, axis=0)]) if k in batch else a
        for k, a in enumerate(args)
    ]


def _tf_strategy():
    """The `tf.distribute` strategy whose scope is active (several replicas), or None."""
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context() is False:
        return None
    strategy = tf.distribute.get_strategy()
    return strategy if strategy.num_replicas_in_sync > 1 else None


def _jax_mesh_devices():
    """The devices an active `keras.distribution` splits the batch over (JAX), or None."""
    distribution = keras.distribution.distribution()
    if distribution is None or getattr(distribution, "batch_dim_name", None) is None:
        return None
    import jax

    if jax.process_count() > 1:  # each process holds its own batch: run on local devices
        return None
    mesh = distribution.device_mesh
    axis = list(mesh.axis_names).index(distribution.batch_dim_name)
    devices = np.asarray(mesh.devices)
    return list(np.moveaxis(devices, axis, 0).reshape(devices.shape[axis], -1)[:, 0])


def _jax_mesh():
    """A one-axis `jax.sharding.Mesh` over the batch devices, or None for one device."""
    devices = _jax_mesh_devices()
    if devices is None or len(devices) < 2:
        return None
    import jax

    resolved = []
    for device in devices:
        if isinstance(device, str):
            platform, _, index = device.partition(":")
            device = jax.devices(platform)[int(index or 0)]
        resolved.append(device)
    return jax.sharding.Mesh(np.array(resolved), ("batch",))


def _jax_shard(mesh, values, args, batch):
    """Variables replicated over the mesh, batch arguments split along their first axis."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec("batch"))
    values = jax.device_put(values, replicated)
    args = [jax.device_put(a, split if k in batch else replicated) for k, a in enumerate(args)]
    return values, args


@contextlib.contextmanager
def no_distribution() -> Iterator[None]:
    """Runs without the user's `keras.distribution` (JAX), restored afterwards.

    Compiled functions are traced without it: its layouts would constrain
    every layer's batch axis to divide evenly between the devices, which a
    batch of any size (7 probe faces) need not; `compile` splits the batch
    itself, through the sharding of its arguments.
    """
    current = keras.distribution.distribution()
    if current is None:
        yield
        return
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


def _variables(model):
    """Every variable `model` reads, each once (shared ones included once)."""
    seen, out = set(), []
    for v in model.variables:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _as_float32(outputs):
    """A probe's outputs (called in inference mode) as a list of float32 tensors."""
    return [ops.cast(o, "float32") for o in _as_list(outputs)]


def _unsupported(name):
    return (
        f"keras-fer-viz computes gradients on the TensorFlow, JAX and PyTorch backends of "
        f"Keras. Received: KERAS_BACKEND={name!r}. Set KERAS_BACKEND to tensorflow, jax or "
        f"torch before importing Keras."
    )
