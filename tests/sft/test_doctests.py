import doctest
import importlib

import pytest

MODULES = ["lnemo.generate.samplers", "lnemo.generate.engine", "lnemo.sft.template", "lnemo.sft.data",
           "lnemo.sft.evaluation"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
