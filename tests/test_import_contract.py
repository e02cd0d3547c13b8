"""What import-linter (``.importlinter``, run by ``lint-imports`` in .ci/run) does not check: cycles between single
modules anywhere in ptsed, counted on an AST scan of every import (inside functions too; only imports under
``if TYPE_CHECKING:`` are exempt), and that every package of ptsed has a place in the layers contract."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PKG = SRC / "ptsed"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(name: str) -> bool:
    base = SRC / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def import_graph(root: Path = PKG) -> dict[str, set[str]]:
    """module -> the ptsed modules it imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        exempt = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in exempt:
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.split(".")[0] == "ptsed")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                if module.split(".")[0] != "ptsed":
                    continue
                subs = [f"{module}.{a.name}" for a in node.names if _exists(f"{module}.{a.name}")]
                found.update(subs or [module])
        graph[name] = {m for m in found if m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_itself_back() -> None:
    graph = import_graph()
    assert "ptsed.models.zoo" in graph and "ptsed.core.frames" in graph["ptsed.models.sed_model"]
    assert cycles(graph) == []


def test_the_scan_sees_cycles_through_function_level_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "ptsed"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from ptsed import b\n")
    (pkg / "b.py").write_text("def f():\n    from ptsed.a import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ptsed import a\n")
    global SRC
    old, SRC = SRC, tmp_path
    try:
        graph = import_graph(pkg)
    finally:
        SRC = old
    assert cycles(graph) == [["ptsed.a", "ptsed.b"]] and graph["ptsed.c"] == set()


def test_every_package_has_a_layer() -> None:
    config = configparser.ConfigParser()
    config.read(SRC.parent / ".importlinter")
    layers = config["importlinter:contract:layers"]["layers"]
    named = {part.strip() for line in layers.splitlines() for part in line.replace(":", "|").split("|") if part.strip()}
    children = {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}
    children |= {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}
    assert children - named == set(), "add these to the layers of .importlinter"
