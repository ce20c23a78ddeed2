"""The code's shape: fast start-up, no import cycle, modules a newcomer can read."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "leadsync"

# What `leadsync --help` must not load: each costs tens of milliseconds of start-up.
HEAVY = ("pandas", "pyarrow", "numpy", "requests", "openpyxl", "xlsxwriter", "python_calamine")


@pytest.mark.parametrize("args", [["--help"], ["sync", "--help"], ["--version"]])
def test_help_imports_no_heavy_library(args: list[str]) -> None:
    probe = (
        "import sys\n"
        "from leadsync.cli import main\n"
        "try:\n"
        f"    main({args!r}, prog_name='leadsync')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


class _Imports(ast.NodeVisitor):
    """The modules one module imports, wherever the import stands (inside functions too),
    except under ``TYPE_CHECKING``."""

    def __init__(self, name: str, is_package: bool, modules: set[str]) -> None:
        self.name, self.is_package, self.modules = name, is_package, modules
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if getattr(test, "id", None) == "TYPE_CHECKING" or (
            getattr(test, "attr", None) == "TYPE_CHECKING"
        ):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(a.name for a in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.name.split(".") if self.is_package else self.name.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            module = ".".join([*base, *([node.module] if node.module else [])])
        else:
            module = node.module or ""
        for alias in node.names:
            sub = f"{module}.{alias.name}"
            self.found.add(sub if sub in self.modules else module)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package -> the package modules it imports."""
    modules = {_module_name(p): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        visitor = _Imports(name, path.name == "__init__.py", set(modules))
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        # importing the package itself (for __version__) is no edge: it imports nothing
        graph[name] = {m for m in visitor.found if m in modules and m not in (name, "leadsync")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
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


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    graph = import_graph()
    assert graph.get("leadsync.cli")  # the walk saw real imports
    assert cycles(graph) == []


def test_no_module_a_newcomer_must_read_whole() -> None:
    """Each module stays short enough to change one thing without reading it all."""
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 650
    }
    assert long == {}


def test_every_problem_code_has_a_stage_and_a_meaning_and_is_in_the_readme() -> None:
    from leadsync.model import CODE_INFO, Code

    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    assert set(CODE_INFO) == set(Code)
    missing = [c.value for c in Code if f"| `{c.value}` | {c.stage} | {c.meaning} |" not in readme]
    assert missing == []


def test_no_stage_spells_a_problem_code_as_a_bare_string() -> None:
    """Codes come from the catalogue: ``code="gave_up"`` or ``Bad("invalid_date", ...)``
    would slip past mypy's check that codes are Code members."""
    import re

    from leadsync.model import Code

    values = "|".join(c.value for c in Code)
    pattern = re.compile(rf"""(code=|Bad\(|add\([\w"]+, )["']({values})["']""")
    found = [
        f"{p.relative_to(PACKAGE)}: {m.group(0)}"
        for p in PACKAGE.rglob("*.py")
        for m in pattern.finditer(p.read_text(encoding="utf-8"))
    ]
    assert found == []
