"""Every Python example in README.md and docs/ runs as written (long loops shortened), and
docs/api.md lists exactly the names each public package exports, importable as stated."""

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BLOCKS = [
    pytest.param(code, id=f"{path.name}#{i}")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S))
]


def test_there_are_examples():
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("code", BLOCKS)
def test_doc_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace("range(1000)", "range(5)"), "<doc>", "exec"), {})


API_PAGE = ROOT / "docs" / "api.md"
_HEADING = re.compile(r"## `(bionn[\w.]*)`")
_ROW = re.compile(r"\| `([^`]+)` \|.*\| `from ([\w.]+) import (\w+)` \|")


def _api_tables() -> dict[str, list[tuple[str, str, str]]]:
    """``{package: [(name, import path, imported name), ...]}`` from the tables of docs/api.md."""
    tables: dict[str, list[tuple[str, str, str]]] = {}
    package = None
    for line in API_PAGE.read_text().splitlines():
        if heading := _HEADING.fullmatch(line.strip()):
            package = heading[1]
            tables[package] = []
        elif package and line.startswith("| `"):
            row = _ROW.fullmatch(line.strip())
            assert row, (
                f"docs/api.md: a row of {package}'s table is not `| `name` | ... | `from P import N` |`: {line}"
            )
            tables[package].append(row.groups())
    return tables


def _exports(module) -> list[str]:
    """``__all__``, or for a module without one the public names its own top level defines."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    names = []
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [name for name in dict.fromkeys(names) if not name.startswith("_")]


def test_api_page_has_a_table_per_public_package():
    import bionn

    public = {"bionn"} | {
        f"bionn.{m.name}"
        for m in pkgutil.iter_modules(bionn.__path__)
        if not m.name.startswith("_")
    }
    tables = set(_api_tables())
    assert public <= tables, f"docs/api.md has no table for {sorted(public - tables)}"
    assert tables <= public, f"docs/api.md has tables for non-packages {sorted(tables - public)}"


@pytest.mark.parametrize("package", sorted(_api_tables()))
def test_api_page_matches_exports(package):
    rows = _api_tables()[package]
    for name, path, imported in rows:
        assert (path, imported) == (package, name), (
            f"docs/api.md: {name} listed as from {path} import {imported}"
        )
        assert hasattr(importlib.import_module(path), imported), (
            f"docs/api.md: from {path} import {imported} fails"
        )
    listed = [name for name, _, _ in rows]
    exported = _exports(importlib.import_module(package))
    assert len(listed) == len(set(listed)), f"docs/api.md lists a name twice under {package}"
    missing = sorted(set(exported) - set(listed))
    stale = sorted(set(listed) - set(exported))
    assert not missing and not stale, (
        f"docs/api.md is out of date for {package}: add {missing}, remove {stale}"
    )
