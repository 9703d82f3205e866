"""Runs the examples in every docstring of the installed package."""

import doctest
import importlib
import pkgutil

import pytest

import keras_fer_viz

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(keras_fer_viz.__path__, prefix="keras_fer_viz.")
)


# The examples show calls and their shapes and names; the values behind them are
# compared across backends in test_backends.py.
@pytest.mark.backend_independent
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_examples_exist():
    attempted = 0
    for name in MODULES:
        finder = doctest.DocTestFinder()
        for test in finder.find(importlib.import_module(name)):
            attempted += sum(not ex.options.get(doctest.SKIP) for ex in test.examples)
    assert attempted >= 8
