"""The import picture: data flows one way, catalog -> encoders -> batch jobs -> feature store -> ranker.

A package may import only the packages below it (docs/architecture.md draws the picture); every
import counts, those inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["dashclip", "spark_jobs", "features", "feature_repo", "ranking"]  # bottom to top
OURS = set(LAYERS) | {"bench", "tests", "scripts"}


def imports(path: Path) -> set[str]:
    """Top-level packages of this project that a file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", LAYERS)
def test_a_package_imports_only_the_packages_below_it(package):
    allowed = set(LAYERS[: LAYERS.index(package) + 1])
    wrong = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imports(path) - allowed
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert not wrong, f"{package} may import only {sorted(allowed)}; these files import more: {wrong}"


def test_the_scan_sees_an_import_inside_a_function(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from ranking import columns\n    import features.online\n")
    assert imports(f) == {"ranking", "features"}
