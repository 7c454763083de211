"""What a module must not hold to be compiled: classes that take class keywords, and
slices whose bounds call something.

mypyc builds a class with a metaclass (a ``msgspec.Struct``) by calling the
metaclass without the class statement's keywords, and says nothing: a
``Struct`` declared ``array_like=True`` or ``tag=...`` would encode as a map and
without its tag once compiled, changing a file's or the wire's format. Such
classes stay in modules that are not compiled (``ult_actors.compiled.MODULES``).

mypyc evaluates a slice's bounds, then, if the sliced object is no list, tuple,
str or bytes (a ``memoryview``), evaluates them again for the generic slice:
``view = view[sock.send(view):]`` sent bytes twice (the client's ``send_all``,
docs/performance.md). So a compiled module's slice bounds call nothing but ``len``.
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


def _slices_that_call(source: Path) -> list[str]:
    """The slices in ``source`` whose bounds call something other than ``len``."""
    tree = ast.parse(source.read_text(), str(source))
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice)):
            continue
        bounds = [b for b in (node.slice.lower, node.slice.upper, node.slice.step) if b]
        calls = [c for b in bounds for c in ast.walk(b) if isinstance(c, ast.Call | ast.Await)]
        if any(not (isinstance(c, ast.Call) and ast.unparse(c.func) == "len") for c in calls):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("module", MODULES)
def test_no_compiled_module_slices_with_a_bound_that_calls(module: str) -> None:
    assert _slices_that_call(source_path(module)) == [], module


def test_the_check_finds_a_send_in_a_slice_bound(tmp_path: Path) -> None:
    source = tmp_path / "send.py"
    source.write_text("view = view[sock.send(view):]\nrest = data[len(head):]\n")
    assert _slices_that_call(source) == ["line 1: view[sock.send(view):]"]
