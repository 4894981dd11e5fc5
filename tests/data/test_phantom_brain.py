"""Brain phantom: determinism, replay, exact ground truth, labels, BraTS layout (small grids)."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pseudohealthy.data.phantom import generate_case, generate_phantom, replay_case
from pseudohealthy.data.phantom.brain import BRATS_AFFINE, BRATS_SHAPE
from pseudohealthy.data.phantom.grid import scaled_affine
from pseudohealthy.data.sources import find_cases, load_case

SHAPE = (48, 48, 32)
SEED = 7
CASES = 3


@pytest.fixture(scope="module")
def brain_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantom") / "brain"
    generate_phantom(root, cases=CASES, seed=SEED, kind="brain", shape=SHAPE, progress=False)
    return root


def _raw(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def _case_arrays(root: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folder = root / name
    return _raw(folder / f"{name}_t2.nii.gz"), _raw(folder / f"{name}_t2_healthy.nii.gz"), _raw(folder / f"{name}_seg.nii.gz")


def test_same_seed_same_arrays_and_different_seed_differs(brain_root: Path) -> None:
    again = generate_case("brain", SEED, 1, SHAPE)
    image, healthy, seg = _case_arrays(brain_root, "PhantomBrain_001")
    np.testing.assert_array_equal(again.image, image)
    np.testing.assert_array_equal(again.healthy, healthy)
    np.testing.assert_array_equal(again.labels, seg)
    other = generate_case("brain", SEED + 1, 1, SHAPE)
    assert not np.array_equal(other.healthy, healthy)
    assert not np.array_equal(other.labels, seg)


def test_params_json_replays_the_written_case(brain_root: Path) -> None:
    params_path = brain_root / "PhantomBrain_002" / "PhantomBrain_002_params.json"
    params = json.loads(params_path.read_text())
    assert params["kind"] == "brain" and params["seed"] == SEED and params["index"] == 2
    assert {"placement", "deformation", "contrast", "bias", "noise", "lesions"} <= set(params)
    assert 1 <= len(params["lesions"]) <= 3
    assert {"center_mm", "radii_mm", "rotation_deg", "intensity", "hemisphere"} <= set(params["lesions"][0])
    replayed = replay_case(params_path)
    image, healthy, seg = _case_arrays(brain_root, "PhantomBrain_002")
    np.testing.assert_array_equal(replayed.image, image)
    np.testing.assert_array_equal(replayed.healthy, healthy)
    np.testing.assert_array_equal(replayed.labels, seg)


@pytest.mark.parametrize("index", range(CASES))
def test_ground_truth_is_exact_and_the_tumour_is_hyperintense(brain_root: Path, index: int) -> None:
    image, healthy, seg = _case_arrays(brain_root, f"PhantomBrain_{index:03d}")
    lesion = seg > 0
    assert lesion.sum() >= 4
    np.testing.assert_array_equal(image[~lesion], healthy[~lesion])  # same anatomy, bias and noise outside
    assert (image[lesion] != healthy[lesion]).mean() > 0.8
    assert image[lesion].mean() > 1.2 * healthy[lesion].mean()
    core = np.isin(seg, (1, 4))
    assert image[core].mean() > image[seg == 2].mean() if (seg == 2).any() else True


@pytest.mark.parametrize("index", range(CASES))
def test_labels_intensities_and_geometry_are_brats_like(brain_root: Path, index: int) -> None:
    name = f"PhantomBrain_{index:03d}"
    image, healthy, seg = _case_arrays(brain_root, name)
    assert image.dtype == np.int16 and healthy.dtype == np.int16
    assert set(np.unique(seg).tolist()) <= {0, 1, 2, 4} and 1 in seg
    brain = healthy > 0
    assert np.all(brain[seg > 0])  # tumours lie inside the brain
    assert np.all(image[~brain] == 0)  # background exactly 0
    values = healthy[brain]
    assert 100 <= np.percentile(values, 1) and np.percentile(values, 99.9) <= 3000
    assert 0.1 < brain.mean() < 0.6  # a brain, not an empty grid nor a full block
    affine = nib.load(str(brain_root / name / f"{name}_t2.nii.gz")).affine
    np.testing.assert_allclose(affine, scaled_affine(BRATS_AFFINE, BRATS_SHAPE, SHAPE), atol=1e-6)


@pytest.mark.parametrize("shape", [BRATS_SHAPE, (120, 120, 62), (48, 48, 32)])
def test_scaled_affine_keeps_the_brats_field_of_view(shape) -> None:
    affine = scaled_affine(BRATS_AFFINE, BRATS_SHAPE, shape)
    np.testing.assert_allclose(np.abs(np.diag(affine)[:3]) * shape, BRATS_SHAPE, rtol=1e-9)
    corner_full = BRATS_AFFINE[:3, :3] @ np.array([-0.5, -0.5, -0.5]) + BRATS_AFFINE[:3, 3]
    corner = affine[:3, :3] @ np.array([-0.5, -0.5, -0.5]) + affine[:3, 3]
    np.testing.assert_allclose(corner, corner_full, atol=1e-9)
    if tuple(shape) == BRATS_SHAPE:
        np.testing.assert_array_equal(affine, BRATS_AFFINE)


def test_layout_is_read_by_the_brats_reader_with_its_healthy_volume(brain_root: Path) -> None:
    for source in ("brats", "auto"):
        cases = find_cases(brain_root, source)
        assert [c.case_id for c in cases] == [f"PhantomBrain_{i:03d}" for i in range(CASES)]
        assert all(c.healthy is not None and c.healthy.name.endswith("_t2_healthy.nii.gz") for c in cases)
    case = load_case(find_cases(brain_root, "brats")[0], "brats")
    assert case.image.shape == SHAPE and case.healthy is not None
    image, _, seg = _case_arrays(brain_root, "PhantomBrain_000")
    assert case.lesion.sum() == (seg > 0).sum()
    # Canonical orientation flips x and y of the BraTS-style affine.
    np.testing.assert_array_equal(case.image.data, image[::-1, ::-1, :].astype(np.float32))


def test_tumour_sizes_vary_across_cases() -> None:
    sizes = [int(generate_case("brain", 3, i, (40, 40, 24)).lesion.sum()) for i in range(6)]
    assert min(sizes) >= 1
    assert max(sizes) > 4 * min(sizes), sizes


def test_cases_are_different_subjects(brain_root: Path) -> None:
    healthy = [_case_arrays(brain_root, f"PhantomBrain_{i:03d}")[1] for i in range(2)]
    brains = [h > 0 for h in healthy]
    overlap = (brains[0] & brains[1]).sum() / (brains[0] | brains[1]).sum()
    assert 0.6 < overlap < 0.99  # same kind of anatomy, deformed differently


def test_default_grid_is_the_brats_grid_with_exact_ground_truth() -> None:
    case = generate_case("brain", 0, 0)
    assert case.image.shape == BRATS_SHAPE
    np.testing.assert_array_equal(case.affine, BRATS_AFFINE)
    lesion = case.labels > 0
    np.testing.assert_array_equal(case.image[~lesion], case.healthy[~lesion])
    brain = case.healthy > 0
    assert 0.9e6 < brain.sum() < 1.8e6  # about 1.2 litres at 1 mm, like a BraTS brain
    assert 100 <= np.percentile(case.healthy[brain], 1) and np.percentile(case.healthy[brain], 99.5) <= 2600


@pytest.mark.parametrize("max_lesions", [1, 2])
def test_max_lesions_bounds_the_tumour_count(max_lesions: int) -> None:
    counts = {len(generate_case("brain", 1, i, (40, 40, 24), max_lesions=max_lesions).params["lesions"]) for i in range(4)}
    assert counts <= set(range(1, max_lesions + 1)) and min(counts) >= 1
