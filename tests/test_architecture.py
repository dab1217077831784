"""The package's layering (docs/architecture.md), checked on the source: every import, at module level or
inside a function, goes to the same room or a lower one; modules import no cycle; private names stay in the
room that defines them; build tools stay outside the package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hmr"

# Rooms, lowest first; a room may import the rooms before it (and itself). Top-level modules count as rooms.
LAYERS = [
    {"version", "io", "geometry", "outputs"},
    {"config"},
    {"body"},
    {"render", "detection", "landmarks", "models", "fitting", "tracking"},
    {"pipeline", "data"},
    {"evaluation"},
    {"training"},
    {"apps"},
    {"cli", "__init__"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(modules: dict[str, Path]) -> list[tuple[str, str, str]]:
    """(importing module, imported module, imported name or "") for every import of an hmr module."""
    out = []
    for mod, path in modules.items():
        pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out += [(mod, a.name, "") for a in node.names if a.name.split(".")[0] == "hmr"]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
                if base.split(".")[0] != "hmr":
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    out.append((mod, sub, "") if sub in modules else (mod, base, alias.name))
    return out


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _level(room: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if room in layer)


def test_every_room_has_a_layer():
    rooms = {_room(m) for m in _modules()}
    placed = set().union(*LAYERS)
    assert rooms <= placed, f"rooms missing from LAYERS (and docs/architecture.md): {sorted(rooms - placed)}"


def test_rooms_import_only_downward():
    bad = sorted(
        f"{a} imports {b}"
        for a, b, _ in _imports(_modules())
        if _room(a) != _room(b) and _level(_room(b)) >= _level(_room(a))
    )
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_no_import_cycles():
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for a, b, _ in _imports(modules):
        if b in modules and b != a:
            graph[a].add(b)
    # Depth-first search for a back edge; report one cycle.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_private_names_stay_in_their_room():
    bad = sorted(
        f"{a} imports {b}.{name}"
        for a, b, name in _imports(_modules())
        if name.startswith("_") and not name.startswith("__") and _room(a) != _room(b)
    )
    assert not bad, "private names used across rooms:\n" + "\n".join(bad)


def test_package_never_imports_build_tools():
    users = sorted(
        str(p.relative_to(ROOT))
        for p in PACKAGE.rglob("*.py")
        if "import tools" in p.read_text() or "from tools" in p.read_text()
    )
    assert not users
