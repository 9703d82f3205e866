"""The registry of explanation methods: ``kfv.EXPLAINERS``, spec name -> class.

Every explainer class registers itself with `register` under its spec name
(its `name` attribute, snake_case). The spec's accepted methods, the trust
ranking, the report's map figures, the map callbacks and the tests all read
this one mapping, so a new method is one module and one export line in
``keras_fer_viz/__init__.py``:

>>> import keras_fer_viz as kfv
>>> kfv.EXPLAINERS["grad_cam"] is kfv.GradCAM
True
>>> list(kfv.EXPLAINERS)[:3]
['saliency', 'smoothgrad', 'integrated_gradients']

Its order is that of the public exports (``keras_fer_viz.__init__``), so
it is the same in every process whatever was imported first. Looking a name
up imports the library's method modules (and so Keras) on first use.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from keras_fer_viz._explainer import Explainer

_E = TypeVar("_E", bound="type[Explainer]")

__all__ = ["EXPLAINERS", "register", "spec_options"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_REGISTERED: dict[str, type[Explainer]] = {}
# Other spellings a user may type; not listed when the registry is iterated.
_ALIASES = {"smooth_grad": "smoothgrad", "grad_cam_pp": "grad_cam_plus_plus"}
# Constructor arguments that are not method options (a spec entry cannot set them).
_NOT_OPTIONS = {"self", "model", "score", "normalize", "batch_size", "output", "verbose"}


def register(cls: _E) -> _E:
    """Class decorator: puts an explainer class in ``kfv.EXPLAINERS`` under ``cls.name``.

    Raises:
        ValueError: if the name is not snake_case or another class has it.
    """
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"Expected {cls.__name__}.name to be a snake_case spec name such as 'grad_cam'. "
            f"Received: {name!r}"
        )
    other = _REGISTERED.get(name)
    if other is not None and other.__qualname__ != cls.__qualname__:
        raise ValueError(
            f"Method name {name!r} is registered twice: by {other.__module__}.{other.__qualname__} "
            f"and {cls.__module__}.{cls.__qualname__}"
        )
    _REGISTERED[name] = cls
    return cls


def spec_options(cls: type[Explainer]) -> tuple[str, ...]:
    """The keyword options of a method's constructor that a spec entry may set.

    ``layer`` is among them for the methods that take a layer (a spec entry
    sets it with ``layer`` or ``conv_layer``).
    """
    params = inspect.signature(cls.__init__).parameters
    return tuple(
        p
        for p, v in params.items()
        if p not in _NOT_OPTIONS and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)
    )


class _Explainers(Mapping[str, "type[Explainer]"]):
    """Read-only, lazily filled: spec name -> explainer class, in export order."""

    def __init__(self) -> None:
        self._table: dict[str, type[Explainer]] | None = None

    def _load(self) -> dict[str, type[Explainer]]:
        if self._table is None:
            from keras_fer_viz import _EXPORTS

            table: dict[str, type[Explainer]] = {}
            for export, module in _EXPORTS.items():
                obj = getattr(importlib.import_module(module), export)
                if isinstance(obj, type):
                    registered = _REGISTERED.get(getattr(obj, "name", ""))
                    if registered is not None and registered is obj:
                        table[registered.name] = registered
            # A class registered outside the library (a user's plug-in) comes last.
            for name, cls in _REGISTERED.items():
                table.setdefault(name, cls)
            self._table = table
        elif len(self._table) != len(_REGISTERED):
            for name, cls in _REGISTERED.items():
                self._table.setdefault(name, cls)
        return self._table

    def __getitem__(self, name: str) -> type[Explainer]:
        table = self._load()
        key = _ALIASES.get(name, name) if isinstance(name, str) else name
        if key in table:
            return table[key]
        raise KeyError(f"Unknown method {name!r}. Expected one of {list(table)}")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _ALIASES.get(name, name) in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._load()))

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"EXPLAINERS({', '.join(self._load())})"


#: Spec name -> explainer class, every method of the library (and plug-ins).
EXPLAINERS: Mapping[str, type[Explainer]] = _Explainers()
