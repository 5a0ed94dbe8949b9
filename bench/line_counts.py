"""Size and shape of the suite: notebook code lines, kagglelib's modules, import levels, links and cycles.

    python bench/line_counts.py [REPO]      # REPO: another checkout (default: this one), for before/after tables
"""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def imports(path: Path, root: Path) -> list[tuple[str, bool]]:
    """(absolute module, inside a function) for every import of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    here = module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(tree):
        nested = id(node) not in top
        if isinstance(node, ast.Import):
            out += [(a.name, nested) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            mod = ".".join(p for p in (base, node.module or "") if p)
            out += [(f"{mod}.{a.name}", nested) for a in node.names] if node.module is None else [(mod, nested)]
    return out


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle a depth-first walk meets (edges to modules outside ``graph`` are ignored)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def structure(root: Path) -> dict[str, object]:
    """Modules, internal import links (module -> module), levels of the longest import chain, cycles."""
    files = {module_name(p, root): p for p in (root / "kagglelib").rglob("*.py") if p.name != "__init__.py"}
    graph: dict[str, set[str]] = {m: set() for m in files}
    nested = nested_internal = 0
    for name, path in files.items():
        for mod, inside in imports(path, root):
            nested += inside
            nested_internal += inside and mod.split(".")[0] == "kagglelib"
            for cand in (mod, mod.rsplit(".", 1)[0]):
                if cand in files and cand != name:
                    graph[name].add(cand)
                    break
    cycles = find_cycles(graph)
    depth: dict[str, int] = {}

    def level(node: str, seen: frozenset = frozenset()) -> int:   # longest chain of imports below node
        if node in depth:
            return depth[node]
        below = [level(n, seen | {node}) for n in graph[node] if n not in seen]
        depth[node] = 1 + max(below, default=0)
        return depth[node]

    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in files.items()}
    largest = max(sizes, key=sizes.get)
    return {"modules": len(files), "import_levels": max(level(m) for m in graph),
            "import_links": sum(len(v) for v in graph.values()), "function_level_imports": nested,
            "function_level_imports_of_kagglelib": nested_internal,
            "cycles": len(cycles), "largest_module": f"{largest} ({sizes[largest]} lines)",
            "kagglelib_lines": sum(sizes.values())}


def main() -> None:
    """Print code-cell lines per notebook and in total, then kagglelib's structure."""
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT
    total = 0
    for nb in sorted((root / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        n = sum(len("".join(c["source"]).splitlines()) for c in cells if c["cell_type"] == "code")
        total += n
        print(f"{nb.name:32s} {n:5d}")
    print(f"{'notebook code cells':32s} {total:5d}")
    for key, value in structure(root).items():
        print(f"{key:32s} {value}")


if __name__ == "__main__":
    main()
