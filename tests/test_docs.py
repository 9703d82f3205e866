"""Runs the code of the documentation's guides, and checks that the API reference is whole.

Every fenced block whose info string is exactly ``python`` in a page of
docs/guides/ runs, in the page's order, in one namespace per page, in a fresh
working folder (the guides write their files there). Blocks fenced as ``py``
are shown highlighted but not run: code that needs what a test cannot have
(the FER2013 file, a Ray cluster, a GPU). The guides run on TensorFlow: their
code has nothing backend-specific, and the backends guide says what does.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import keras
import pytest

import keras_fer_viz

DOCS = Path(__file__).resolve().parent.parent / "docs"
GUIDES = sorted((DOCS / "guides").glob("*.md"))
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<code>.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def blocks(page: Path, info: str = "python") -> list[str]:
    """The code of the page's fenced blocks whose info string is `info`."""
    return [m["code"] for m in FENCE.finditer(page.read_text()) if m["info"].strip() == info]


def test_the_fence_pattern_finds_each_block_and_its_kind():
    text = "intro\n```python\na = 1\n```\ntext\n```py\nb = 2\n```\n```bash\nls\n```\n"
    found = [(m["info"], m["code"]) for m in FENCE.finditer(text)]
    assert found == [("python", "a = 1\n"), ("py", "b = 2\n"), ("bash", "ls\n")]


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the guides run once, on TensorFlow"
)
@pytest.mark.parametrize("page", GUIDES, ids=[p.stem for p in GUIDES])
def test_guide_code_runs(page, tmp_path, monkeypatch):
    code = blocks(page)
    for block in code + blocks(page, "py"):
        ast.parse(block)  # shown code is valid Python, run or not
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"guide_{page.stem}"}
    for i, block in enumerate(code):
        exec(compile(block, f"{page.name} (block {i + 1})", "exec"), namespace)


def test_every_guide_has_code_that_runs():
    assert len(GUIDES) >= 8
    assert all(blocks(page) for page in GUIDES), [p.name for p in GUIDES if not blocks(p)]


# The API reference: every public name has its entry, written as mkdocstrings'
# `::: dotted.path` directive (the module that defines it), in a page of docs/api/.
def directives() -> set[str]:
    found = set()
    for page in (DOCS / "api").glob("*.md"):
        found |= set(re.findall(r"^::: ([\w.]+)", page.read_text(), re.MULTILINE))
    return found


def public_names() -> list[str]:
    """Dotted paths of the package's public names and its submodules' ones."""
    import importlib

    names = [f"{keras_fer_viz._EXPORTS[n]}.{n}" for n in keras_fer_viz.__all__]
    for sub in ("figures", "callbacks", "metrics", "report", "spec"):
        module = importlib.import_module(f"keras_fer_viz.{sub}")
        names += [f"keras_fer_viz.{sub}.{n}" for n in module.__all__]
    return names


def test_every_public_name_has_an_entry_in_the_reference():
    missing = [n for n in public_names() if n not in directives()]
    assert not missing, f"no ::: entry in docs/api/ for {missing}"
