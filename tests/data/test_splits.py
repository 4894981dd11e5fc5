"""Splits by case: disjoint, paper sizes, seeded, nested fractions."""
from __future__ import annotations

import pytest

from pseudohealthy.data.splits import n_test_cases, read_splits, split_cases, subset_cases, write_splits
from pseudohealthy.errors import UserError


def ids(n: int) -> list[str]:
    return [f"case{i:03d}" for i in range(n)]


@pytest.mark.parametrize(
    "n, fraction, n_test",
    [(259, 0.1, 25), (131, 0.1, 13), (10, 0.1, 1), (2, 0.1, 1), (1, 0.1, 0), (100, 0.29, 29), (20, 0.0, 0), (3, 0.9, 2)],
)
def test_test_size_matches_paper_and_bounds(n, fraction, n_test):
    assert n_test_cases(n, fraction) == n_test
    train, test = split_cases(ids(n), fraction, seed=0)
    assert len(test) == n_test
    assert len(train) == n - n_test


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_split_is_disjoint_complete_and_seed_stable(seed):
    train, test = split_cases(ids(50), 0.2, seed)
    assert not set(train) & set(test)
    assert sorted(train + test) == ids(50)
    # same seed, any input order: same split
    again = split_cases(list(reversed(ids(50))), 0.2, seed)
    assert again == (train, test)


def test_different_seeds_give_different_splits():
    tests = {tuple(split_cases(ids(50), 0.2, s)[1]) for s in range(5)}
    assert len(tests) == 5


@pytest.mark.parametrize("seed", [0, 3])
def test_fraction_subsets_are_nested_and_sized(seed):
    train = ids(40)
    sizes = {0.1: 4, 0.3: 12, 0.5: 20, 1.0: 40}
    subsets = {f: subset_cases(train, f, seed) for f in sizes}
    for f, size in sizes.items():
        assert len(subsets[f]) == size
    assert set(subsets[0.1]) < set(subsets[0.3]) < set(subsets[0.5]) < set(subsets[1.0])
    assert subset_cases(train, 0.3, seed) == subsets[0.3]


def test_fraction_keeps_at_least_one_case_and_rejects_bad_values():
    assert len(subset_cases(ids(3), 0.01, 0)) == 1
    with pytest.raises(UserError, match="fraction"):
        subset_cases(ids(3), 0.0, 0)
    with pytest.raises(UserError, match="fraction"):
        subset_cases(ids(3), 1.5, 0)


def test_duplicate_ids_refused():
    with pytest.raises(UserError, match="unique"):
        split_cases(["a", "a", "b"], 0.5, 0)


def test_splits_file_round_trip_and_overlap_refused(tmp_path):
    path = write_splits(tmp_path / "splits.json", ["a", "b"], ["c"], seed=3, test_fraction=0.1)
    data = read_splits(path)
    assert data == {"seed": 3, "test_fraction": 0.1, "train": ["a", "b"], "test": ["c"]}
    write_splits(path, ["a", "b"], ["b"], seed=3, test_fraction=0.1)
    with pytest.raises(UserError, match="both train and test"):
        read_splits(path)
