"""Docstring examples and README's quickstart run as written."""

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import es_toolkit

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(es_toolkit.__path__, prefix="es_toolkit.")
    if ".envs" not in name or name.count(".") == 1
)


@pytest.mark.parametrize("module_name", MODULES)
def test_doctests(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {module_name}"


def python_blocks(markdown: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown.read_text(), flags=re.DOTALL)


def test_readme_quickstart_runs(capsys):
    blocks = python_blocks(ROOT / "README.md")
    assert blocks, "README.md has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    # The quickstart promises optax's numbers for the seed example.
    assert "[0.68624824 0.7189715  0.57966155]" in capsys.readouterr().out
