"""The plan of docs/ARCHITECTURE.md as a test: rooms on floors, imports pointing down.

Read from the code's own imports (every ``import`` and ``from ... import`` anywhere in a
module, inside functions and ``TYPE_CHECKING`` blocks too), so the plan cannot drift:

* a room imports only rooms on lower floors, or on its own floor in the one direction
  :data:`SAME_FLOOR` allows (no two rooms import each other);
* a room never imports another room's private modules (``stimage.models._nb``): only what
  the room's ``__init__`` exports;
* no module over 500 lines, no function over 100.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python_backend" / "stimage"

#: Floor of every room (a package, or a top-level module of ``stimage``).
FLOORS: dict[str, int] = {
    "_version": 0,
    "errors": 0,
    "constants": 0,
    "examples": 0,
    "schemas": 0,
    "data": 0,
    "qupath": 0,
    "encoders": 1,
    "tiles": 1,
    "models": 2,
    "explain": 2,
    "training": 3,
    "evaluation": 3,
    "pipelines": 4,
    "_doctor": 4,
    "cli": 5,
    "server": 5,
    "__init__": 5,
}
#: Imports allowed between rooms of one floor, one way each.
SAME_FLOOR = {
    ("qupath", "data"),  # QuPath projects list their images as slides
    ("qupath", "errors"),
    ("data", "errors"),
    ("data", "constants"),
    ("qupath", "constants"),
    ("qupath", "_version"),
    ("constants", "errors"),
    ("errors", "_version"),
    ("models", "explain"),  # cell typing measures segmented nuclei
    ("evaluation", "training"),  # cross-validation trains
    ("cli", "server"),  # `stimage serve` and `stimage client` are the server's command line
    ("__init__", "_version"),
    ("__init__", "errors"),
}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 100


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _room(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of a stimage module in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "stimage":  # a room, or a name of the package's __init__
                out.extend(
                    (node.lineno, f"stimage.{a.name}" if a.name in FLOORS else "stimage.__init__")
                    for a in node.names
                )
            elif node.module.startswith("stimage."):
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names if a.name.startswith("stimage."))
    return out


def test_every_room_has_a_floor() -> None:
    rooms = {_room(p) for p in _modules()}
    assert rooms <= set(FLOORS), f"rooms without a floor in this test: {rooms - set(FLOORS)}"


def test_imports_point_down_and_never_into_private_modules() -> None:
    bad = []
    for path in _modules():
        room = _room(path)
        for line, module in _imports(path):
            parts = module.split(".")
            target = parts[1]
            if target == room:
                continue
            where = f"{path.relative_to(PACKAGE)}:{line} imports {module}"
            if FLOORS[target] > FLOORS[room]:
                bad.append(f"{where}: {room} (floor {FLOORS[room]}) is below {target}")
            elif FLOORS[target] == FLOORS[room] and (room, target) not in SAME_FLOOR:
                bad.append(f"{where}: rooms of one floor, and this way is not allowed")
            if len(parts) > 2 and parts[2].startswith("_"):
                bad.append(f"{where}: a private module of another room")
    assert not bad, "\n".join(bad)


def test_no_two_rooms_import_each_other() -> None:
    edges = set()
    for path in _modules():
        room = _room(path)
        edges |= {(room, m.split(".")[1]) for _, m in _imports(path) if m.split(".")[1] != room}
    both = sorted({tuple(sorted(e)) for e in edges if (e[1], e[0]) in edges})
    assert not both, f"rooms that import each other: {both}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path: Path) -> None:
    text = path.read_text()
    n = len(text.splitlines())
    assert n <= MAX_MODULE_LINES, f"{n} lines; split the module by idea"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
