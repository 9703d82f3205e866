"""A griffe extension: the docstrings' doctest examples shown as code in the API reference.

The package's docstrings follow Keras' style, an ``Example:`` line and then
``>>>`` lines at the docstring's own indentation (tests/test_docstrings.py runs
them). Markdown would read those lines as a paragraph (``x[-2:]`` as a link);
this extension fences each run of ``>>>`` / ``...`` lines and their output as
``pycon`` before the docstring is parsed.
"""

from __future__ import annotations

from typing import Any

import griffe


def fence_doctests(text: str) -> str:
    """Wraps every doctest run (a ``>>>`` line up to the next blank line) in a pycon fence."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        if not inside and line.lstrip().startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}```pycon")
            inside = True
        elif inside and not line.strip():
            out.append(f"{indent}```")
            inside = False
        out.append(line)
    if inside:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
