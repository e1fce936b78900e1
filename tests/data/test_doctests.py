import doctest
import importlib

import pytest

MODULES = [
    "lnemo.data.tokenizer",
    "lnemo.data.readers",
    "lnemo.data.packing",
    "lnemo.data.pipeline",
    "lnemo.data.tasks.problem",
    "lnemo.data.tasks.arithmetic",
    "lnemo.data.tasks.sorting",
    "lnemo.data.tasks.counting",
    "lnemo.data.tasks.source",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
