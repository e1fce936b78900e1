"""Dependencies point one way (DESIGN.md): lower layers never import higher ones.

types/utils/perf -> losses, ope, sharding, data -> models, checkpoint -> generate, train -> distill, sft.
``lnemo.losses`` and ``lnemo.ope`` import no flax.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "lnemo"

ALLOWED = {
    "types": set(),
    "utils": {"types"},
    "perf": {"types"},
    "testing": {"types", "utils"},
    "losses": {"types", "utils"},
    "ope": {"types", "utils", "perf"},
    "sharding": {"types", "utils"},
    "data": {"types", "utils"},
    "models": {"types", "utils", "perf", "sharding"},
    "checkpoint": {"types", "utils", "sharding"},
    "generate": {"types", "utils", "perf", "sharding", "models", "losses", "data"},
    "train": {"types", "utils", "perf", "sharding", "models", "losses", "data", "checkpoint"},
    "distill": {"types", "utils", "perf", "sharding", "models", "losses", "data", "checkpoint", "train", "generate"},
    "sft": {"types", "utils", "perf", "sharding", "models", "losses", "data", "checkpoint", "train", "generate"},
}
NO_FLAX = {"losses", "ope"}


def _area(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def _imports(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] == "lnemo" and len(parts) > 1:
                found.add("lnemo." + parts[1])
            elif node.module == "lnemo":
                found.update("lnemo." + a.name for a in node.names)
            else:
                found.add(parts[0])
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                found.add("lnemo." + parts[1] if parts[0] == "lnemo" and len(parts) > 1 else parts[0])
    return found


FILES = sorted(p for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_layers(path):
    area = _area(path)
    assert area in ALLOWED, f"new top-level area {area!r}: add it to the layering table in this test"
    for name in _imports(path):
        if name.startswith("lnemo."):
            target = name.split(".")[1]
            assert target == area or target in ALLOWED[area], f"{path.relative_to(ROOT)} imports {name}"
        elif area in NO_FLAX:
            assert name != "flax", f"{path.relative_to(ROOT)} imports flax"
