"""The package's layers (issue 39): no import circle anywhere (imports at module level and inside functions both
count; only `if TYPE_CHECKING:` blocks are left out, as they never run), no module of almabench/ over 450 lines, and
a code fingerprint that covers the cell layer only."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from almabench.results.provenance import CELL_CODE, code_fingerprint, code_folders, fingerprint_folders

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"almabench": ROOT / "almabench", "almabench.methods": ROOT / "methods",
            "almabench.analysis": ROOT / "analysis"}
MAX_LINES = 450


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package's __init__) for every module of the three source folders."""
    found = {}
    for prefix, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([prefix, *parts])] = (path, path.name == "__init__.py")
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return getattr(test, "id", getattr(test, "attr", "")) == "TYPE_CHECKING"


def imports_of(path: Path, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of `known` that the file imports, wherever the import statement is."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _type_checking(block)
               for n in ast.walk(block)}
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base) if node.level else node.module or ""
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, name, is_package, set(known)) for name, (path, is_package) in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted: every import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_anywhere():
    graph = import_graph()
    assert len(graph) > 80 and "almabench.grid.execute" in graph["almabench.cli.run"]  # the graph is read
    assert circles(graph) == []


def test_the_finder_finds_a_circle_through_an_import_inside_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": set(), "d": {"d"}}
    assert circles(graph) == []
    graph["c"].add("a")
    assert circles(graph) == [["a", "b", "c"]]
    source = "def f():\n    from almabench.grid import execute\n"
    path = ROOT / "tests" / "_circle_probe.py"
    try:
        path.write_text(source)
        assert imports_of(path, "x.y", False, {"almabench.grid.execute"}) == {"almabench.grid.execute"}
        path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from almabench.grid import execute\n")
        assert imports_of(path, "x.y", False, {"almabench.grid.execute"}) == set()
    finally:
        path.unlink()


def test_no_module_of_the_package_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "almabench").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_code_fingerprint_covers_the_cell_layer_data_and_methods_only():
    folders = code_folders()
    assert folders == {"almabench.cell": ROOT / "almabench" / "cell", "almabench.data": ROOT / "almabench" / "data",
                       "almabench.methods": ROOT / "methods"}
    assert tuple(folders) == CELL_CODE and code_fingerprint() == fingerprint_folders(folders)
    for outside in ("cli", "grid", "backends", "results", "extend"):  # a change there leaves it as it is
        assert not any((ROOT / "almabench" / outside).is_relative_to(f) for f in folders.values())


def test_a_change_to_a_cell_module_or_a_method_changes_the_fingerprint(tmp_path):
    copies = {}
    for package, folder in code_folders().items():
        copies[package] = tmp_path / package
        shutil.copytree(folder, copies[package], ignore=shutil.ignore_patterns("__pycache__"))
    before = fingerprint_folders(copies)
    assert before == code_fingerprint()  # the copy hashes as the package does
    for changed in (copies["almabench.cell"] / "train.py", copies["almabench.methods"] / "app.py"):
        original = changed.read_text()
        changed.write_text(original + "\n# a comment is a change\n")
        assert fingerprint_folders(copies) != before
        changed.write_text(original)
    assert fingerprint_folders(copies) == before
