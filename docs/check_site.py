"""Checks that the built site documents every public name: `python docs/check_site.py SITE`.

The public names are read from the source without importing it (the docs
environment has no Keras): `_EXPORTS` of keras_fer_viz/__init__.py (name ->
defining module) and `__all__` of the submodules the reference covers. Each
must be the id of an entry of the site's API pages, as mkdocstrings writes
it (the dotted path). Exits 1 naming the missing ones.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBMODULES = ("figures", "callbacks", "metrics", "report", "spec")


def _assigned(path: Path, name: str):
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{path}: no {name} assigned")


def public_paths() -> list[str]:
    package = ROOT / "keras_fer_viz"
    exports = _assigned(package / "__init__.py", "_EXPORTS")
    names = _assigned(package / "__init__.py", "__all__")
    paths = [f"{exports[n]}.{n}" for n in names]
    for sub in SUBMODULES:
        source = package / f"{sub}.py"
        if not source.exists():
            source = package / sub / "__init__.py"
        paths += [f"keras_fer_viz.{sub}.{n}" for n in _assigned(source, "__all__")]
    return paths


def main(site: str) -> int:
    ids = set()
    for page in Path(site, "api").rglob("*.html"):
        ids |= set(re.findall(r'id="([\w.]+)"', page.read_text()))
    paths = public_paths()
    missing = [p for p in paths if p not in ids]
    if missing:
        print(f"{len(missing)} public names not in the site's API reference: {missing}")
        return 1
    print(f"every public name is in the site's API reference ({len(paths)} names)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
