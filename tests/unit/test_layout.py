"""The layout's rules, read from the source with `ast`: one home per concern, imports downward.

- no import cycle among the modules of `demo/` and `envoi_mails/` (imports inside functions
  count: a cycle there is a cycle all the same; imports for annotations only do not);
- the engine (everything but `demo/cli` and `demo/scenes`) never imports the CLI or the scenes;
- only `demo/cli` imports click;
- the app (`envoi_mails/`) never imports the kit;
- no module over 350 lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("demo", "envoi_mails")
MAX_LINES = 350


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, but those under `if TYPE_CHECKING:`: an import for annotations only never
    runs, so it makes no cycle."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            yield from (n for child in node.orelse for n in (child, *_runtime_nodes(child)))
            continue
        yield node
        yield from _runtime_nodes(node)


def _imported(path: Path, name: str) -> Iterator[str]:
    """The modules `path` imports (absolute names) when it runs, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                )
            names = [f"{base}.{alias.name}".strip(".") for alias in node.names]
            # `from pkg import submodule` imports the submodule; the package itself only when
            # a name is not a submodule (a package's __init__ running first is no cycle).
            if any(n not in MODULES for n in names):
                yield base.strip(".")
            yield from names


def _graph() -> dict[str, set[str]]:
    return {
        name: {m for m in _imported(path, name) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }


def test_no_import_cycle() -> None:
    graph, state, stack = _graph(), dict.fromkeys(MODULES, 0), []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(graph[name]):
            if state[target] == 1:
                cycle = stack[stack.index(target) :]
                pytest.fail(f"import cycle: {' -> '.join([*cycle, target])}")
            if state[target] == 0:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in MODULES:
        if state[name] == 0:
            visit(name)


def _is(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def test_the_engine_imports_neither_the_cli_nor_the_scenes() -> None:
    graph = _graph()
    for name, targets in graph.items():
        if _is(name, "demo.cli") or _is(name, "demo.scenes") or name == "demo.__main__":
            continue
        wrong = sorted(t for t in targets if _is(t, "demo.cli") or _is(t, "demo.scenes"))
        assert not wrong, f"{name} imports {wrong}"


def test_only_the_cli_imports_click() -> None:
    for name, path in MODULES.items():
        if not _is(name, "demo.cli"):
            clicky = [m for m in _imported(path, name) if _is(m, "click")]
            assert not clicky, f"{name} imports click"


def test_the_app_never_imports_the_kit() -> None:
    for name, path in MODULES.items():
        if _is(name, "envoi_mails"):
            kit = sorted(m for m in _imported(path, name) if _is(m, "demo"))
            assert not kit, f"{name} imports {kit}"


def test_no_module_is_over_350_lines() -> None:
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
