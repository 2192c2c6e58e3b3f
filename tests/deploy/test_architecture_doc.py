"""docs/architecture.md names its hops as `file.py:function` (or `file.py:Class.method`):
each must name a function or class that is there, so the page cannot drift from the code."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
REFERENCE = re.compile(r"`([\w/]+\.py):([\w.]+)`")


def defined_names(path: Path) -> set[str]:
    """Every function and class of ``path``, top-level ones by name and nested ones as
    ``Outer.inner``."""
    names: set[str] = set()

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(prefix + child.name)
                visit(child, f"{prefix}{child.name}.")

    visit(ast.parse(path.read_text()), "")
    return names


def references(text: str) -> list[tuple[str, str]]:
    return REFERENCE.findall(text)


def test_the_page_names_hops():
    refs = references(DOC.read_text())
    assert len(refs) >= 20, "the hop-by-hop lists are gone"


@pytest.mark.parametrize(("file", "name"), references(DOC.read_text()))
def test_each_hop_exists(file, name):
    path = ROOT / file
    assert path.is_file(), f"docs/architecture.md names {file}, which does not exist"
    assert name in defined_names(path), f"docs/architecture.md names {file}:{name}, not there"


def test_a_wrong_hop_is_found():
    names = defined_names(ROOT / "server" / "serving.py")
    assert "Serving.score" in names and "Serving.no_such_method" not in names
