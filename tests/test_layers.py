"""The package's structure: layers only import downwards, and no module grows past 500 lines."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ofer"

LAYERS = {
    "errors": 0, "config": 0, "io": 0, "geometry": 0, "devices": 0, "paths": 0, "quiet": 0, "__init__": 0,
    "__main__": 8, "facemodels": 1, "render": 1, "frontend": 1, "diffusion": 1, "networks": 1, "weights": 1,
    "runs": 2, "fitting": 3, "methods": 4, "data": 5, "training": 6, "evaluation": 7, "cli": 8, "serve": 8,
}
# A build step that needs a higher layer lives in its own module and imports it lazily (ARCHITECTURE.md).
BUILD_STEPS = {("facemodels/autolandmarks.py", "render"), ("facemodels/autolandmarks.py", "frontend")}


def _package(module: str) -> str:
    return module.split(".")[1] if module.startswith("ofer.") else module


def _imports(path: Path):
    """(imported ofer top-level package, line) of every import in ``path``, relative ones resolved."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + (1 if path.name == "__init__.py" else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("ofer.") or module == "ofer":
                target = module.split(".")[1] if "." in module else (node.names[0].name if node.names else "")
                yield target, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ofer."):
                    yield alias.name.split(".")[1], node.lineno


def _own_package(path: Path) -> str:
    first = path.relative_to(SRC).parts[0]
    return first[:-3] if first.endswith(".py") else first


def test_layers_only_import_downwards():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        own = _own_package(path)
        for target, line in _imports(path):
            rel = str(path.relative_to(SRC))
            if target not in LAYERS:
                bad.append(f"{rel}:{line} imports ofer.{target}, which is not a package of the layer table")
                continue
            if own == "__init__":
                continue
            if LAYERS[target] > LAYERS[own] and (rel, target) not in BUILD_STEPS:
                bad.append(f"{rel}:{line} imports ofer.{target} (layer {LAYERS[target]} > {LAYERS[own]})")
    assert not bad, "\n".join(bad)


def test_no_module_over_500_lines():
    long = [f"{p.relative_to(SRC)}: {n}" for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500]
    assert not long, long


@pytest.mark.parametrize("package", ["methods", "data", "evaluation", "facemodels", "frontend", "render"])
def test_training_is_never_imported_below_it(package):
    hits = [f"{p.relative_to(SRC)}:{line}" for p in (SRC / package).rglob("*.py")
            for target, line in _imports(p) if target == "training"]
    assert not hits, hits
