"""The package map of docs/design.md: a package imports only the packages listed above it."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "malleconv"
ORDER = ["ops", "layers", "io", "data", "models", "inference", "evaluation", "training", "cli"]


def _imported_packages(path: Path, package: str) -> set[str]:
    """Top-level malleconv packages that the module at ``path`` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("malleconv."):
                found.add(node.module.split(".")[1])
            elif node.level == 2 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.add(package)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("malleconv."):
                    found.add(alias.name.split(".")[1])
    return found


@pytest.mark.parametrize("package", ORDER)
def test_package_imports_only_packages_above_it(package):
    allowed = set(ORDER[: ORDER.index(package) + 1]) | {"runtime"}
    for path in sorted((SRC / package).glob("*.py")):
        bad = (_imported_packages(path, package) & set(ORDER)) - allowed
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}, listed below {package}"
