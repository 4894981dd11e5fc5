"""Liver CT phantom: determinism, replay, exact ground truth, HU and labels, LiTS layout (small grids)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pseudohealthy.data.phantom import generate_case, generate_phantom, replay_case
from pseudohealthy.data.phantom.liver import render_anatomy
from pseudohealthy.data.sources import find_cases, load_case

SHAPE = (64, 64, 24)
SEED = 11
CASES = 3


@pytest.fixture(scope="module")
def liver_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantom") / "liver"
    generate_phantom(root, cases=CASES, seed=SEED, kind="liver", shape=SHAPE, progress=False)
    return root


def _arrays(root: Path, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    read = lambda name: np.asanyarray(nib.load(str(root / name)).dataobj)  # noqa: E731
    return read(f"volume-{n}.nii.gz"), read(f"volume-{n}_healthy.nii.gz"), read(f"segmentation-{n}.nii.gz")


def test_same_seed_same_arrays_and_different_seed_differs(liver_root: Path) -> None:
    image, healthy, seg = _arrays(liver_root, 0)
    again = generate_case("liver", SEED, 0, SHAPE)
    np.testing.assert_array_equal(again.image, image)
    np.testing.assert_array_equal(again.healthy, healthy)
    np.testing.assert_array_equal(again.labels, seg)
    other = generate_case("liver", SEED + 1, 0, SHAPE)
    assert not np.array_equal(other.healthy, healthy)


def test_params_json_replays_the_written_case(liver_root: Path) -> None:
    replayed = replay_case(liver_root / "volume-1_params.json")
    image, healthy, seg = _arrays(liver_root, 1)
    np.testing.assert_array_equal(replayed.image, image)
    np.testing.assert_array_equal(replayed.healthy, healthy)
    np.testing.assert_array_equal(replayed.labels, seg)


@pytest.mark.parametrize("n", range(CASES))
def test_ground_truth_is_exact_and_lesions_are_hypodense_inside_the_liver(liver_root: Path, n: int) -> None:
    image, healthy, seg = _arrays(liver_root, n)
    lesion = seg == 2
    assert lesion.sum() >= 4
    np.testing.assert_array_equal(image[~lesion], healthy[~lesion])
    assert (image[lesion] != healthy[lesion]).mean() > 0.8
    assert image[lesion].mean() < healthy[lesion].mean() - 15.0  # darker by tens of HU
    params = replay_case(liver_root / f"volume-{n}_params.json").params
    _, liver, _ = render_anatomy(params)
    assert np.all(liver[lesion])  # every lesion voxel lies in the (healthy) liver


@pytest.mark.parametrize("n", range(CASES))
def test_hounsfield_units_and_labels_are_lits_like(liver_root: Path, n: int) -> None:
    image, healthy, seg = _arrays(liver_root, n)
    assert image.dtype == np.int16 and healthy.dtype == np.int16
    assert set(np.unique(seg).tolist()) == {0, 1, 2}
    corner = healthy[:4, :4, :]  # outside the body: air
    assert -1100 < corner.mean() < -900
    liver_hu = healthy[seg == 1].mean()
    assert 60 < liver_hu < 160
    assert 0.005 < (seg > 0).mean() < 0.25


def test_layout_is_read_by_the_lits_reader_with_its_healthy_volume(liver_root: Path) -> None:
    for source in ("lits", "auto"):
        cases = find_cases(liver_root, source)
        assert [c.case_id for c in cases] == [f"volume-{n}" for n in range(CASES)]
        assert all(c.healthy is not None and c.healthy.name == f"{c.case_id}_healthy.nii.gz" for c in cases)
    case = load_case(find_cases(liver_root, "lits")[0], "lits")
    _, _, seg = _arrays(liver_root, 0)
    assert case.lesion.sum() == (seg == 2).sum() and case.region.sum() == (seg > 0).sum()


def test_lesion_sizes_vary_across_cases() -> None:
    sizes = [int(generate_case("liver", 5, i, (48, 48, 24)).lesion.sum()) for i in range(6)]
    assert min(sizes) >= 1
    assert max(sizes) > 4 * min(sizes), sizes
