"""The house's layers point one way: a module imports only from layers below its own.

Read from the source with ``ast`` (nothing is imported), so it runs in a blink and names the
offending line. Imports under ``if TYPE_CHECKING:`` are type-only and allowed in any direction;
every other import counts, at module level or inside a function (a function-local import that
reaches upward is the same arrow, only hidden). Within one group (``poller/``, ``_polling/``...)
modules may import each other, but the module graph as a whole must have no cycle, so nothing
works only because of the order in which modules happen to be imported.

To place a new module: add its group to ``LAYERS``. If you need an arrow upward, move the thing
down instead.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "gptunnel_async"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

#: From the bottom up. A group may import groups of lower layers only (never one beside it).
LAYERS: tuple[tuple[str, ...], ...] = (
    # The ground, importing nothing of the package: version, telemetry seam, bounded JSON,
    # escaping for terminals, lazy imports, and the catalogue of models.
    ("_version", "_telemetry", "_json", "_escape", "_imports", "catalog"),
    ("_logs",),  # log redaction
    ("types", "_errors"),  # the models; the one exception module
    ("_retry",),  # when to retry, what is transient
    ("_inflate", "_links"),  # bounded decompression; which links are safe to fetch
    ("_response", "_images"),  # reading an API answer; turning an image into a URL
    ("_validation",),  # checks against the catalogue, before anything is sent
    ("_polling",),  # the polling core: policy, per-task state machine, request gate (no I/O)
    # Leaves with I/O that know nothing of the client: the client saves files with
    # ``download``, a batch keeps its record in ``stores`` and the policy's state in
    # ``poll_state``.
    ("download", "stores", "poll_state"),
    # One module per API group, and wait(). Each sees the client type-only (it is handed the
    # client); the client builds one of each, so it is the one importing them.
    ("resources",),
    ("_client",),  # the one request path
    ("poller",),  # the scheduler and batches, on top of the client
    ("otel",),  # optional integrations
    ("testing",),  # the emulator (its offline client uses the SDK)
    ("",),  # the package's own __init__: re-exports the public names
    ("cli",),  # the `gptunnel` command
)
RANK = {group: rank for rank, groups in enumerate(LAYERS) for group in groups}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def group_of(module: str) -> str:
    """``gptunnel_async.poller.batch`` -> ``poller``; the package itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """(line, module) of every import of this package that runs (not type-only)."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]

    def targets(node: ast.AST) -> Iterator[tuple[int, str]]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from targets(child)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                for alias in node.names:  # ``from . import x`` may name a submodule
                    sub = f"{target}.{alias.name}"
                    yield node.lineno, sub if _exists(sub, root) else target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield node.lineno, alias.name
        for child in ast.iter_child_nodes(node):
            yield from targets(child)

    yield from targets(ast.parse(path.read_text(encoding="utf-8"), str(path)))


def _exists(module: str, root: Path) -> bool:
    rel = Path(*module.split(".")[1:])
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def sources() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_every_group_has_a_layer() -> None:
    groups = {group_of(module_name(path)) for path in sources()}
    assert groups <= set(RANK), f"add these to LAYERS: {sorted(groups - set(RANK))}"


def test_imports_point_down() -> None:
    upward = []
    for path in sources():
        source = group_of(module_name(path))
        for line, target in runtime_imports(path):
            group = group_of(target)
            if group != source and RANK.get(group, -1) >= RANK.get(source, -1):
                upward.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    assert not upward, "imports that point up or sideways:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for path in sources():
        module = module_name(path)
        graph.setdefault(module, set()).update(
            target for _, target in runtime_imports(path) if target != module
        )
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path_stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path_stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path_stack[path_stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path_stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The rule can fail: a client that imports the poller is caught, type-only ones are not."""
    fake = tmp_path / PACKAGE
    (fake / "_client").mkdir(parents=True)
    (fake / "_client" / "__init__.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ..poller import Poller\n"
        "def make():\n"
        "    from ..poller.scheduler import Poller\n"
    )
    found = list(runtime_imports(fake / "_client" / "__init__.py", fake))
    assert [target for _, target in found] == [f"{PACKAGE}.poller.scheduler"]
    assert RANK[group_of(found[0][1])] > RANK["_client"]
