"""Train/test splits by case (never by slice), seeded, and nested training fractions.

The paper holds out 25 of 259 BraTS volumes and 13 of 131 LiTS volumes: ``floor(n * test_fraction)``
with the default 0.1 gives exactly these (Python's ``round`` would give 26 for BraTS), with at least
one test case as soon as there are two cases. Case ids are sorted before shuffling, so the split
depends only on the set of ids and the seed, not on the order the files were found in.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pseudohealthy.errors import UserError


def n_test_cases(n: int, test_fraction: float) -> int:
    """Held-out cases for ``n`` cases: ``floor(n * f)``, at least 1 when ``n >= 2`` and ``f > 0``, at most ``n - 1``."""
    if n < 2 or test_fraction <= 0:
        return 0
    count = math.floor(n * test_fraction + 1e-9)  # 1e-9: 0.29 * 100 is 28.999999999999996
    return min(max(count, 1), n - 1)


def split_cases(case_ids: Sequence[str], test_fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """Shuffle the (sorted) case ids with ``seed``; returns ``(train, test)``, each sorted."""
    ids = sorted(set(case_ids))
    if len(ids) != len(case_ids):
        raise UserError("case ids must be unique to split by case.")
    order = np.random.default_rng(seed).permutation(len(ids))
    n_test = n_test_cases(len(ids), test_fraction)
    test = sorted(ids[i] for i in order[:n_test])
    train = sorted(ids[i] for i in order[n_test:])
    return train, test


def subset_cases(case_ids: Sequence[str], fraction: float = 1.0, seed: int = 0) -> list[str]:
    """A seeded subset of ``round(n * fraction)`` cases (at least 1), sorted.

    Nested: for one seed, the cases kept at a smaller fraction are all kept at a larger one, since
    both are prefixes of the same seeded permutation (GVS(0.3) is inside GVS(0.5)).
    """
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"training fraction {fraction!r} must lie in (0, 1].")
    ids = sorted(case_ids)
    if not ids:
        return []
    # A different stream from the test split's, so the subset is not tied to the split's order.
    order = np.random.default_rng([int(seed), 1]).permutation(len(ids))
    keep = min(len(ids), max(1, round(len(ids) * fraction)))
    return sorted(ids[i] for i in order[:keep])


def write_splits(path: str | Path, train: Sequence[str], test: Sequence[str], seed: int, test_fraction: float) -> Path:
    """Write ``splits.json``: ``{"seed", "test_fraction", "train": [...], "test": [...]}``."""
    path = Path(path)
    data = {"seed": int(seed), "test_fraction": float(test_fraction), "train": list(train), "test": list(test)}
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return path


def read_splits(path: str | Path) -> dict[str, Any]:
    """Read and check a ``splits.json`` written by :func:`write_splits`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: splits file not found; run `pseudohealthy preprocess` to write it.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("train"), list) or not isinstance(data.get("test"), list):
        raise UserError(f"{path}: expected lists 'train' and 'test' of case ids.")
    overlap = set(data["train"]) & set(data["test"])
    if overlap:
        raise UserError(f"{path}: case(s) {sorted(overlap)[:3]} are in both train and test.")
    return data
