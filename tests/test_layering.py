"""Data flows one way: inference, metrics, evaluation and study never import from training/.

Checkpoint reading, device helpers and the method registry live below training (pseudohealthy.checkpoints,
pseudohealthy.device, pseudohealthy.methods), so the later stages need nothing of the training code.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "pseudohealthy"
LATER_STAGES = ("inference", "metrics", "evaluation", "study")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every absolute module an ``import`` / ``from ... import`` statement names (anywhere in the file)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_the_scan_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from pseudohealthy.training.checkpoint import read_checkpoint\n")
    assert (2, "pseudohealthy.training.checkpoint") in imported_modules(sample)


@pytest.mark.parametrize("stage", LATER_STAGES)
def test_later_stages_do_not_import_training(stage):
    files = sorted((PACKAGE / stage).rglob("*.py"))
    assert files, f"no modules under {stage}/"
    offenders = [f"{path.relative_to(PACKAGE)}:{line} imports {name}"
                 for path in files for line, name in imported_modules(path)
                 if name == "pseudohealthy.training" or name.startswith("pseudohealthy.training.")]
    assert offenders == []
