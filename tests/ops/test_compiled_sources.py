"""What a module must not hold to be compiled: classes that take class keywords.

mypyc builds a class with a metaclass (a ``msgspec.Struct``) by calling the
metaclass without the class statement's keywords, and says nothing: a
``Struct`` declared ``array_like=True`` or ``tag=...`` would encode as a map and
without its tag once compiled, changing a file's or the wire's format. Such
classes stay in modules that are not compiled (``ult_actors.compiled.MODULES``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ult_actors.compiled import MODULES, source_path


def _classes_with_keywords(source: Path) -> list[str]:
    """The classes in ``source`` whose statement passes keywords (``metaclass=`` aside)."""
    tree = ast.parse(source.read_text(), str(source))
    return [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(keyword.arg != "metaclass" for keyword in node.keywords)
    ]


@pytest.mark.parametrize("module", MODULES)
def test_no_compiled_module_declares_a_class_with_class_keywords(module: str) -> None:
    assert _classes_with_keywords(source_path(module)) == [], module


def test_the_check_finds_a_struct_declared_with_keywords() -> None:
    # The paper account's change record is one (array_like, tagged): kept out of the build.
    assert "Change" in _classes_with_keywords(source_path("ult_actors.brokers.paper.records"))
