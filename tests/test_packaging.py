"""The package ships every module: pyproject.toml lists every sub-package of keras_fer_viz."""

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_every_sub_package_is_listed_in_pyproject():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "keras_fer_viz").rglob("__init__.py")
    }
    assert found, "no package found under keras_fer_viz/"
    missing = found - listed
    assert not missing, f"sub-packages missing from [tool.setuptools] packages: {sorted(missing)}"
