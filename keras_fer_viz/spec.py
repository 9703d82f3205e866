"""The figure spec: which figures a report holds, read from spec/figures.toml.

The spec is a contract shared by the report (`keras-fer-viz report`) and
the figure tests (one pytest-mpl baseline per entry). Each ``[[figure]]``
entry names an ``id``, a ``title``, the study ``question`` it answers, a
``method`` and an output ``file``, and may hold ``description`` and
``[figure.parameters]``. Entries are checked when read: an unknown method
or parameter, a wrong type, a duplicate id or a file name that would land
outside the report folder raises a `SpecError` that names the entry and the
key.

A ``method`` is a figure kind of `FIGURE_KINDS` (filters, confusion matrix,
the trust figures, the class means of a registered method over the whole
data, ...) or any method of the registry, ``kfv.EXPLAINERS`` (its maps,
drawn over or beside each face). A method's entry may set the
faces (``classes``, ``images_per_class``, ``seed``) and its constructor's
options (`method_parameters`). `METHODS` (method -> parameters) and
`TRUST_METHODS` (what the trust figures may compare: every registered
method) are read from the registry when asked for, so importing this module
does not import Keras, and a method registered later is accepted.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_fer_viz.data.fer2013 import EMOTIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from keras_fer_viz._explainer import Explainer

__all__ = [
    "FigureSpec",
    "SpecError",
    "load_spec",
    "parse_spec",
    "default_spec_path",
    "method_parameters",
    "FIGURE_KINDS",
    "TRUST_KINDS",
    "METHODS",
    "TRUST_METHODS",
]

_COMMON = {"classes", "images_per_class", "seed"}
_LAYER = {"layer", "conv_layer"}
#: The figures that are not one method's maps: kind -> its parameters.
FIGURE_KINDS: dict[str, set[str]] = {
    "filters": _LAYER | {"filters", "steps", "seed", "columns"},
    "class_images": {"steps", "seed"},
    "feature_maps": _LAYER | {"face_class", "top", "seed"},
    "confusion_matrix": set(),
    "training_curves": set(),
    "epochs": {"callback"},
    "deletion_insertion": _COMMON | {"methods", "steps", "samples"},
    "randomization": _COMMON | {"methods", "face_class"},
    "evidence": _COMMON | {"methods", "samples"},
    "class_means": _LAYER | {"explainer"},
}
#: The trust figures, which compare methods (their ``methods`` parameter).
TRUST_KINDS = ("deletion_insertion", "randomization", "evidence")
# What a method's map figure takes beyond its constructor's options: CAM's
# layer and epochs train its GAP head (`gap_head`); LIME's figure shows its
# `num_features` strongest superpixels.
_FIGURE_OPTIONS = {"cam": _LAYER | {"epochs"}, "lime": {"num_features"}}


def method_parameters(cls: type[Explainer]) -> set[str]:
    """The parameters a spec entry of a registered method may set.

    The faces (``classes``, ``images_per_class``, ``seed``), the method's
    constructor options (`keras_fer_viz.registry.spec_options`; ``layer``
    may also be given as ``conv_layer``, the n-th conv layer), and what its
    figure takes.
    """
    from keras_fer_viz.registry import spec_options

    options = set(spec_options(cls))
    if "layer" in options:
        options |= _LAYER
    return _COMMON | options | _FIGURE_OPTIONS.get(cls.name, set())


def _methods() -> dict[str, set[str]]:
    from keras_fer_viz.registry import EXPLAINERS

    table = {name: method_parameters(cls) for name, cls in EXPLAINERS.items()}
    table.update(FIGURE_KINDS)
    return table


def _allowed(method) -> set[str] | None:
    """The parameters of a figure kind or registered method; None for an unknown one.

    The figure kinds are looked up first: a spec of them alone needs no Keras.
    """
    if method in FIGURE_KINDS:
        return FIGURE_KINDS[method]
    from keras_fer_viz.registry import EXPLAINERS

    names = _trust_methods()
    return method_parameters(EXPLAINERS[method]) if method in names else None


def _trust_methods() -> tuple[str, ...]:
    from keras_fer_viz.registry import EXPLAINERS

    return tuple(EXPLAINERS)


if TYPE_CHECKING:  # computed by __getattr__ below; declared for type checkers and the docs
    METHODS: dict[str, set[str]]
    """Every method a spec entry may name (registered ones, `FIGURE_KINDS`) -> its parameters."""
    TRUST_METHODS: tuple[str, ...]
    """The methods the trust figures may compare: every registered one."""


def __getattr__(name: str) -> Any:
    # METHODS and TRUST_METHODS are read from the registry when first asked
    # for (PEP 562), so that importing the spec does not import Keras, and a
    # method registered later is in them.
    if name == "METHODS":
        return _methods()
    if name == "TRUST_METHODS":
        return _trust_methods()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_REQUIRED = ("id", "title", "question", "method", "file")
_KEYS = set(_REQUIRED) | {"description", "parameters"}
_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class SpecError(ValueError):
    """An invalid figure spec; the message names the entry and the key."""


@dataclass(frozen=True)
class FigureSpec:
    """One entry of the spec."""

    id: str
    title: str
    question: str
    method: str
    file: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        """A parameter, or `default` when the entry does not set it."""
        return self.parameters.get(name, default)


def default_spec_path() -> Path:
    """The spec/figures.toml shipped with the package."""
    return Path(str(resources.files("keras_fer_viz.figure_spec") / "figures.toml"))


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _class_ref(value) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_parameter(where, name, value):
    def fail(expected):
        raise SpecError(f"{where}: parameter {name!r} must be {expected}. Received: {value!r}")

    if name in {
        "images_per_class",
        "steps",
        "samples",
        "epochs",
        "top",
        "columns",
        "conv_layer",
        "num_features",
    }:
        if not _positive_int(value):
            fail("a positive integer")
    elif name == "seed":
        if not isinstance(value, int) or isinstance(value, bool):
            fail("an integer")
    elif name == "classes":
        # Names are checked against the data's classes when the report runs
        # (an image folder names its own); here only their form.
        ok = value == "all" or (
            isinstance(value, list) and value and all(_class_ref(v) for v in value)
        )
        if not ok:
            fail(
                '"all" or a non-empty list of class names (e.g. '
                f"{list(EMOTIONS[:2])}, or an image folder's) or indices >= 0"
            )
    elif name == "methods":
        known = () if value == "all" else _trust_methods()
        if not (
            value == "all"
            or (
                isinstance(value, list)
                and value
                and all(isinstance(v, str) and v in known for v in value)
                and len(set(value)) == len(value)
            )
        ):
            fail(f'"all" or a non-empty list of distinct methods from {list(known)}')
    elif name == "explainer":
        known = _trust_methods()
        if value not in known:
            fail(f"a registered method, one of {list(known)}")
    elif name == "face_class":
        if not (isinstance(value, str) and value.strip()):
            fail(f"a class name (e.g. one of {list(EMOTIONS)}, or an image folder's)")
    elif name == "filters":
        if not (
            _positive_int(value)
            or (
                isinstance(value, list)
                and value
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
            )
        ):
            fail("a positive integer (the first n filters) or a list of filter indices")
    elif name in {"layer", "callback", "segmentation", "reduce"}:
        if not isinstance(value, str) or not value:
            fail("a non-empty string")
        if name == "segmentation" and value not in ("slic", "quickshift", "felzenszwalb", "grid"):
            fail('"slic", "quickshift", "felzenszwalb" or "grid"')
        if name == "reduce" and value not in ("max", "mean", "norm"):
            fail('"max", "mean" or "norm"')
    elif name == "noise":
        if not _number(value) or value < 0:
            fail("a number >= 0")
    elif name == "kernel_width":
        if not _number(value) or value <= 0:
            fail("a number > 0")
    elif name in {"baseline", "hide_color"}:
        if not (_number(value) or (isinstance(value, list) and value and all(map(_number, value)))):
            fail("a pixel value: a number, or a list of numbers (one per channel)")
    elif name == "segmentation_options":
        if not isinstance(value, dict):
            fail("a table of keyword arguments")
    # A method's other options are checked by its constructor when the figure is drawn.


def parse_spec(data: Mapping[str, Any], source: str = "spec") -> list[FigureSpec]:
    """Checks a parsed spec (the TOML as a dict) and returns its entries."""
    entries = data.get("figure")
    if not isinstance(entries, list) or not entries:
        raise SpecError(f"{source}: expected at least one [[figure]] entry. Received: none")
    unknown_top = sorted(set(data) - {"figure"})
    if unknown_top:
        raise SpecError(f"{source}: unknown top-level key(s) {unknown_top}; expected [[figure]]")
    specs, ids, files = [], set(), set()
    for number, entry in enumerate(entries, start=1):
        where = f"{source}, figure {number}"
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            where = f"{source}, figure {entry['id']!r}"
        if not isinstance(entry, dict):
            raise SpecError(f"{where}: expected a table. Received: {entry!r}")
        for key in _REQUIRED:
            if key not in entry:
                raise SpecError(f"{where}: missing key {key!r}")
            if not isinstance(entry[key], str) or not entry[key].strip():
                raise SpecError(
                    f"{where}: key {key!r} must be a non-empty string. Received: {entry[key]!r}"
                )
        extra = sorted(set(entry) - _KEYS)
        if extra:
            raise SpecError(f"{where}: unknown key(s) {extra}; allowed: {sorted(_KEYS)}")
        if not _ID.match(entry["id"]):
            raise SpecError(
                f"{where}: key 'id' must be lower_snake_case. Received: {entry['id']!r}"
            )
        if entry["id"] in ids:
            raise SpecError(f"{where}: key 'id' repeats an earlier entry")
        method = entry["method"]
        allowed = _allowed(method)
        if allowed is None:
            raise SpecError(
                f"{where}: key 'method' must be one of {sorted(_methods())}. Received: {method!r}"
            )
        name = entry["file"]
        if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".png"):
            raise SpecError(
                f"{where}: key 'file' must be a plain file name ending in .png "
                f"(figures stay inside the report folder). Received: {name!r}"
            )
        if name in files or name == "index.html":
            raise SpecError(f"{where}: key 'file' repeats another entry's file {name!r}")
        parameters = entry.get("parameters", {})
        if not isinstance(parameters, dict):
            raise SpecError(f"{where}: key 'parameters' must be a table. Received: {parameters!r}")
        for key, value in parameters.items():
            if key not in allowed:
                raise SpecError(
                    f"{where}: parameter {key!r} does not apply to method "
                    f"{method!r}; allowed: {sorted(allowed) or 'none'}"
                )
            _check_parameter(where, key, value)
        if "layer" in parameters and "conv_layer" in parameters:
            raise SpecError(f"{where}: give 'layer' or 'conv_layer', not both")
        description = entry.get("description", "")
        if not isinstance(description, str):
            raise SpecError(f"{where}: key 'description' must be a string")
        ids.add(entry["id"])
        files.add(name)
        specs.append(
            FigureSpec(
                entry["id"],
                entry["title"],
                entry["question"],
                method,
                name,
                description,
                dict(parameters),
            )
        )
    return specs


def load_spec(path: str | os.PathLike[str] | None = None) -> list[FigureSpec]:
    """Reads and checks a figure spec.

    Args:
        path: a TOML file; None for the spec shipped with the package
            (spec/figures.toml). Defaults to `None`.

    Returns:
        The entries, in file order.

    Raises:
        SpecError: if the file is not valid TOML or an entry is invalid.
        FileNotFoundError: if the file does not exist.

    Example:

    >>> [entry.id for entry in load_spec()][:2]
    ['q1_saliency', 'q2_filters']
    """
    path = default_spec_path() if path is None else Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML: {err}") from None
    return parse_spec(data, source=str(path.name))
