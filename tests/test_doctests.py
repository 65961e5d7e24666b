"""The runnable examples in engine/ and toyworld/ docstrings (``>>>``) are
tests: every module of both is imported and its doctests run."""
from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted("livelayers." + ".".join(p.relative_to(ROOT).with_suffix("").parts)
                 for folder in ("engine", "toyworld")
                 for p in (ROOT / folder).rglob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"


def test_the_pure_functions_carry_examples():
    def has_examples(name: str) -> bool:
        tests = doctest.DocTestFinder().find(importlib.import_module(name))
        return any(t.examples for t in tests)
    for name in ("livelayers.engine.frames", "livelayers.engine.text2live.losses",
                 "livelayers.engine.stylise.losses", "livelayers.engine.atlas.encoding",
                 "livelayers.engine.augment"):
        assert has_examples(name), name
