"""The package's modules form layers: no module imports, even inside a function, a module that
imports it back (directly or through others). The package root (il2rd/__init__.py, the public
facade that lazily re-exports il2rd.api) is left out: every submodule is loaded through it."""

from __future__ import annotations

import ast
from pathlib import Path

import il2rd

ROOT = Path(il2rd.__file__).parent


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The il2rd modules `name` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
            out |= {f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return (out & known) - {name, "il2rd"}


def test_no_module_imports_one_that_imports_it():
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    assert len(graph) > 40 and graph["il2rd.simulate"] >= {"il2rd.solvers.integrate", "il2rd.solvers.steppers"}  # the parse sees imports

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(f"{a} -> {b}" for a in graph for b in graph[a] if a in reachable(b))
    assert not cycles, "modules that import one that imports them back: " + "; ".join(cycles)


def test_io_depends_on_no_physics():
    """The file layer (il2rd/io/) writes and reads plain values (layout.RunRecord, arrays): it imports
    no physics, cell, solver, analysis or scenario module, so a reader needs none of them."""
    found = modules()
    outside = {f"{name} -> {target}" for name, path in found.items() if name.startswith("il2rd.io")
               for target in imports(name, path, set(found)) if not target.startswith("il2rd.io")}
    assert not outside, "il2rd/io/ imports: " + "; ".join(sorted(outside))
