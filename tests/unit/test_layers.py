"""The package's layers point one way, downward, with no import cycle (imports inside functions
count too): primitives -> the flow of one target -> the verdict -> the front ends."""

from __future__ import annotations

import ast
from pathlib import Path

PROBE = Path(__file__).resolve().parents[2] / "probe"

BASE = {"probe", "probe.vocabulary", "probe.policy", "probe.model"}
# what each part may import from probe (besides itself)
ALLOWED = {
    "probe": set(),  # the version
    "probe.vocabulary": set(),
    "probe.policy": set(),
    "probe.model": {"probe.vocabulary", "probe.policy"},
    "probe.config": BASE,
    "probe.measure": BASE,
    "probe.verdict": BASE,
    "probe.engine": BASE | {"probe.config", "probe.measure", "probe.verdict"},
    "probe.httpd": BASE | {"probe.config"},
    "probe.helper": BASE | {"probe.config", "probe.engine", "probe.measure", "probe.httpd"},
    "probe.serve": BASE | {"probe.config", "probe.engine", "probe.httpd"},
    "probe.cli": BASE
    | {
        "probe.config",
        "probe.engine",
        "probe.verdict",
        "probe.serve",
        "probe.helper",
        "probe.httpd",
        "probe.lab",
    },
    "probe.lab": BASE | {"probe.config", "probe.helper"},
    "probe.__main__": {"probe.cli"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PROBE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every probe module this file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("probe")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("probe"):
            # `from probe.measure import tls` imports probe.measure.tls
            found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
    modules = {module_name(p) for p in PROBE.rglob("*.py")}
    return {m for m in found if m in modules}


def part(module: str) -> str:
    """The part of the layering a module belongs to (the longest key of ALLOWED it is under)."""
    keys = [k for k in ALLOWED if module == k or module.startswith(k + ".")]
    return max(keys, key=len) if keys else module


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PROBE.rglob("*.py")}


def test_every_import_goes_down_the_layers() -> None:
    wrong = []
    for module, deps in graph().items():
        mine = part(module)
        allowed = ALLOWED.get(mine)
        assert allowed is not None, f"{module} belongs to no layer: add it to ALLOWED"
        for dep in deps:
            theirs = part(dep)
            if theirs != mine and theirs not in allowed and dep not in allowed:
                wrong.append(f"{module} imports {dep}")
    assert wrong == []


def test_there_is_no_import_cycle() -> None:
    g = graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for dep in sorted(g.get(module, ())):
            if dep == module or dep == "probe":
                continue
            if state.get(dep) == 1:
                return [*path, module, dep]
            if dep not in state and (cycle := visit(dep, [*path, module])):
                return cycle
        state[module] = 2
        return None

    for module in sorted(g):
        if module not in state:
            assert visit(module, []) is None


def test_the_engine_and_below_import_no_front_end_and_no_lab() -> None:
    for module, deps in graph().items():
        if part(module) in ("probe.measure", "probe.verdict", "probe.engine", "probe.config"):
            assert not {d for d in deps if part(d) in ("probe.cli", "probe.serve", "probe.lab")}
