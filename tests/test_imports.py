"""The house's import graph, read from the source with ``ast`` (nothing is imported): one direction, no cycle.

- A module under ``bench/`` below the orchestrator (the contract, the data layer, the loop, the stages, the
  evaluator, tracking, ...) never imports ``bench.run`` or a ``methods`` module. The orchestrator layer is
  ``bench.run``, ``bench.cli`` and the modules that only they (and the rest of that layer) import.
- A method module imports another method module only where its docstring says the paper builds on it (a line
  ``Builds on: ``methods.x`` ...``); the shared parts (``methods.parts``), the spec and the registry are not
  methods. ``methods.parts`` imports no method at all.
- The graph has no cycle, counting the registry's ``importlib`` loading of the method modules as edges.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORCHESTRATOR = {"bench.run", "bench.cli"}
# never the orchestrator, whoever imports them: the contract and everything a method may use
BELOW = {"bench.context", "bench.train", "bench.stages", "bench.evaluate", "bench.datasets", "bench.tracking",
         "bench.config", "bench.wer", "bench.dist", "bench.atomic", "bench.rng"}  # fmt: skip
NOT_METHODS = {"methods.registry"}


def module_files() -> dict[str, Path]:
    """``bench.x`` / ``methods.parts.y`` -> its file, for every module of the two packages."""
    out = {}
    for package in ("bench", "methods"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports anywhere in its file (top level or inside a function)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m in known and m != name and m not in ("bench", "methods")}


def builtin_modules(path: Path) -> set[str]:
    """The registry's ``_BUILTIN_MODULES`` tuple: the modules it loads with ``importlib``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "_BUILTIN_MODULES" for t in targets):
                return set(ast.literal_eval(node.value))
    raise AssertionError(f"{path}: no _BUILTIN_MODULES tuple")


def graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    edges = {name: imports_of(name, path, known) for name, path in files.items()}
    edges["methods.registry"] |= builtin_modules(files["methods.registry"])
    return edges


def orchestrator_layer(edges: dict[str, set[str]]) -> set[str]:
    """``bench.run``, ``bench.cli`` and the ``bench`` modules imported by that layer and by nothing else."""
    layer = set(ORCHESTRATOR)
    while True:
        grown = {
            m for m in edges
            if m.startswith("bench.") and m not in layer and m not in BELOW and not m.startswith("bench.data")
            and (importers := {a for a, bs in edges.items() if m in bs}) and importers <= layer
        }  # fmt: skip
        if not grown:
            return layer
        layer |= grown


def is_method(name: str) -> bool:
    return name.startswith("methods.") and not name.startswith("methods.parts") and name not in NOT_METHODS


def declared_bases(path: Path) -> set[str]:
    """The methods a module's docstring says the paper builds it on: ``Builds on: ``methods.a``, ``methods.b``...``."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    match = re.search(r"Builds on:(.*?)(?:\n\n|$)", doc, re.S)
    return set(re.findall(r"``(methods\.[a-z_]+)``", match.group(1))) if match else set()


def test_nothing_below_the_orchestrator_imports_it_or_a_method():
    edges = graph()
    layer = orchestrator_layer(edges)
    assert BELOW.isdisjoint(layer)
    bad = {
        f"{m} imports {t}"
        for m, targets in edges.items() if m.startswith("bench") and m not in layer
        for t in targets if t == "bench.run" or t.startswith("methods")
    }  # fmt: skip
    assert not bad, f"below the orchestrator ({', '.join(sorted(layer))}), these reach up: {sorted(bad)}"


def test_methods_and_parts_never_import_the_orchestrator():
    edges = graph()
    layer = orchestrator_layer(edges)
    bad = {f"{m} imports {t}" for m, ts in edges.items() if m.startswith("methods") for t in ts if t in layer}
    assert not bad, sorted(bad)


def test_parts_import_no_method():
    edges = graph()
    bad = {f"{m} imports {t}" for m, ts in edges.items() if m.startswith("methods.parts") for t in ts
           if t.startswith("methods") and not t.startswith("methods.parts")}  # fmt: skip
    assert not bad, sorted(bad)


def test_a_method_imports_another_only_where_its_docstring_says_the_paper_builds_on_it():
    files = module_files()
    edges = graph()
    bad = []
    for m, targets in edges.items():
        if not is_method(m):
            continue
        undeclared = {t for t in targets if is_method(t)} - declared_bases(files[m])
        bad += [f"{m} imports {t} (add it to a 'Builds on:' line of the docstring, or move the part)" for t in
                sorted(undeclared)]  # fmt: skip
    assert not bad, bad


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path ``[a, b, ..., a]``, or None (depth-first search with colours)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(edges):
        if node not in colour and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle_counting_the_registry_loading():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize(
    "edges, expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
    ],
)
def test_the_cycle_finder_finds_what_is_there(edges, expected):
    assert find_cycle(edges) == expected


def test_the_checks_see_an_arrow_up_and_an_undeclared_method_import(tmp_path):
    """The readers on a planted module: an import inside a function counts, and a docstring without the line
    declares nothing."""
    planted = tmp_path / "planted.py"
    planted.write_text('"""A method.\n\nBuilds on: ``methods.base``.\n"""\n\ndef f():\n    from bench import run\n'
                       "    from methods import sil, base\n")  # fmt: skip
    assert imports_of("methods.planted", planted, {"bench.run", "methods.sil", "methods.base"}) == {
        "bench.run", "methods.sil", "methods.base"}  # fmt: skip
    assert declared_bases(planted) == {"methods.base"}
    planted.write_text('"""No line."""\n')
    assert declared_bases(planted) == set()
