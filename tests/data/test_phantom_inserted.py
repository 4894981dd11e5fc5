"""``pseudohealthy phantom --kind inserted``: synthetic lesions inserted into real-layout scans, with their truth."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from pseudohealthy.data.nifti_io import from_canonical, load_nifti
from pseudohealthy.data.phantom import replay_case
from pseudohealthy.data.phantom.inserted import generate_inserted
from pseudohealthy.data.sources import find_cases, load_case
from pseudohealthy.errors import UserError

SHAPE = (48, 48, 24)
# A permuted, flipped, anisotropic affine: canonical axes differ from the on-disk ones.
ODD_AFFINE = np.array([[0.0, 0.0, -2.0, 40.0], [-1.0, 0.0, 0.0, 20.0], [0.0, 1.0, 0.0, -10.0], [0.0, 0.0, 0.0, 1.0]])


def _write_brats(root: Path, case_id: str, seed: int, affine: np.ndarray, shape=SHAPE, labels_all: bool = False, empty: bool = False) -> Path:
    """A BraTS-layout T2-like case: textured ellipsoid brain (int16) with an own lesion (labels 1, 2)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    brain = (x / 0.9) ** 2 + (y / 0.9) ** 2 + (z / 0.95) ** 2 < 1
    image = np.where(brain, 300 + 60 * np.sin(5 * x) * np.cos(4 * y) + rng.normal(0, 10, shape), 0)
    own = brain & (((x - 0.45) / 0.25) ** 2 + ((y - 0.1) / 0.25) ** 2 + (z / 0.4) ** 2 < 1)
    core = own & (((x - 0.45) / 0.12) ** 2 + ((y - 0.1) / 0.12) ** 2 + (z / 0.2) ** 2 < 1)
    image[own] += 250
    image[core] += 150
    seg = np.where(core, 1, np.where(own, 2, 0)).astype(np.uint8)
    if labels_all:
        seg[brain] = 2
    if empty:
        image[:] = 0
    folder = root / case_id
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image.astype(np.int16), affine), str(folder / f"{case_id}_t2.nii.gz"))
    nib.save(nib.Nifti1Image(seg, affine), str(folder / f"{case_id}_seg.nii.gz"))
    return folder


def _write_lits(root: Path, n: int, seed: int) -> Path:
    """A LiTS-layout CT case in HU: body 40, a large liver ~60 (label 1) with a hypodense tumour (label 2)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij")
    body = (x / 0.95) ** 2 + (y / 0.8) ** 2 < 1
    liver = body & ((x / 0.75) ** 2 + (y / 0.65) ** 2 + (z / 0.9) ** 2 < 1)
    tumour = liver & (((x + 0.45) / 0.2) ** 2 + (y / 0.2) ** 2 + (z / 0.3) ** 2 < 1)
    image = np.where(body, 40.0, -1000.0) + rng.normal(0, 8, SHAPE)
    image[liver] += 20
    image[tumour] -= 45
    seg = np.where(tumour, 2, np.where(liver, 1, 0)).astype(np.uint8)
    affine = np.diag([-1.5, -1.5, 2.5, 1.0])
    root.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image.astype(np.int16), affine), str(root / f"volume-{n}.nii.gz"))
    nib.save(nib.Nifti1Image(seg, affine), str(root / f"segmentation-{n}.nii.gz"))
    return root / f"volume-{n}.nii.gz"


@pytest.fixture(scope="module")
def brats_inserted(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny source cases (one with the odd affine) and their inserted-lesion data set (2 copies each)."""
    base = tmp_path_factory.mktemp("inserted")
    source = base / "source"
    _write_brats(source, "CaseA", 0, np.diag([-1.0, -1.0, 1.0, 1.0]))
    _write_brats(source, "CaseB", 1, ODD_AFFINE)
    generate_inserted(source, base / "out", copies=2, seed=3, max_lesions=3, progress=False)
    return source, base / "out"


def _disk(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def test_layout_ids_and_record(brats_inserted) -> None:
    source, out = brats_inserted
    ids = ["CaseA-ins00", "CaseA-ins01", "CaseB-ins00", "CaseB-ins01"]
    found = find_cases(out, "brats")
    assert [c.case_id for c in found] == ids
    assert all(c.healthy is not None and c.healthy.name == f"{c.case_id}_t2_healthy.nii.gz" for c in found)
    record = json.loads((out / "phantom.json").read_text())
    assert record["kind"] == "inserted" and record["copies"] == 2 and record["seed"] == 3 and record["case_ids"] == ids
    assert record["source"] == str(source.absolute()) and record["model"]["radius_mm"] == [4.0, 25.0]
    assert record["case_map"]["CaseB-ins01"] == {"source": "CaseB", "copy": 1}
    # Copies differ from each other.
    a0, a1 = (_disk(out / i / f"{i}_seg.nii.gz") for i in ids[:2])
    assert not np.array_equal(a0, a1)


@pytest.mark.parametrize("source_id", ["CaseA", "CaseB"])
def test_truth_source_and_inserted_lesions_agree(brats_inserted, source_id) -> None:
    source, out = brats_inserted
    src = load_case(find_cases(source, "brats")[0 if source_id == "CaseA" else 1], "brats")
    src_labels = load_nifti(source / source_id / f"{source_id}_seg.nii.gz").data
    voxel = np.array([1.0, 1.0, 1.0]) if source_id == "CaseA" else np.array([2.0, 1.0, 1.0])  # canonical x is on-disk axis 2
    for copy in range(2):
        name = f"{source_id}-ins{copy:02d}"
        case = load_case(next(c for c in find_cases(out, "brats") if c.case_id == name), "brats")
        labels = load_nifti(out / name / f"{name}_seg.nii.gz").data
        truth, image, own = case.healthy.data, case.image.data, src.lesion
        inserted = (labels > 0) & (src_labels == 0)
        assert inserted.sum() > 20
        # The truth: NaN exactly inside the source's own lesion, the source image everywhere else.
        assert np.array_equal(np.isnan(truth), own)
        assert np.array_equal(truth[~own], src.image.data[~own])
        # The pathological image: the source outside the inserted lesions, the own labels kept.
        assert np.array_equal(image[~inserted], src.image.data[~inserted])
        assert np.array_equal(labels[own], src_labels[own])
        assert set(np.unique(labels[inserted]).tolist()) <= {1, 2, 4} and 2 in labels[inserted]
        # Inside the brain, away from the own lesion (5 mm margin), and changed there (bright T2 lesion).
        assert (src.image.data[inserted] > 0).all()
        distance = ndimage.distance_transform_edt(~own, sampling=voxel)
        assert distance[inserted].min() > 5.0
        change = image[inserted] / truth[inserted]
        assert np.median(change) > 1.2 and (change > 1.05).mean() > 0.8


def test_affine_header_orientation_and_dtype_kept(brats_inserted) -> None:
    source, out = brats_inserted
    for copy in range(2):
        name = f"CaseB-ins{copy:02d}"
        src_img = nib.load(str(source / "CaseB" / "CaseB_t2.nii.gz"))
        for suffix, dtype in (("t2", np.int16), ("seg", np.uint8), ("t2_healthy", np.float32)):
            written = nib.load(str(out / name / f"{name}_{suffix}.nii.gz"))
            assert np.array_equal(written.affine, ODD_AFFINE) and written.shape == src_img.shape
            assert written.get_data_dtype() == dtype
            assert written.header.get_qform(coded=True)[1] == src_img.header.get_qform(coded=True)[1]
        # On disk, in the source's own voxel order: equal wherever no lesion was inserted or owned.
        disk_src, disk_out = _disk(source / "CaseB" / "CaseB_t2.nii.gz"), _disk(out / name / f"{name}_t2.nii.gz")
        same = _disk(out / name / f"{name}_seg.nii.gz") == _disk(source / "CaseB" / "CaseB_seg.nii.gz")
        assert np.array_equal(disk_src[same], disk_out[same]) and (~same).sum() > 20


def test_replay_from_params_is_byte_identical(brats_inserted) -> None:
    _, out = brats_inserted
    for name in ("CaseA-ins01", "CaseB-ins00"):
        replayed = replay_case(out / name / f"{name}_params.json")
        for array, ref, suffix in ((replayed.image, replayed.image_ref, "t2"), (replayed.labels, replayed.seg_ref, "seg"),
                                   (replayed.healthy, replayed.image_ref, "t2_healthy")):
            disk = _disk(out / name / f"{name}_{suffix}.nii.gz")
            again = from_canonical(array, ref)
            assert again.dtype == disk.dtype and again.tobytes() == disk.tobytes()


def test_copies_per_case_adds_copies_and_keeps_the_first_ones(brats_inserted, tmp_path: Path) -> None:
    """A case given more copies (the pipeline's training subjects) gets them; copy k is the same
    bytes whatever the number of copies, so a benchmark's test copies do not move."""
    source, out = brats_inserted
    more = tmp_path / "more"
    generate_inserted(source, more, copies=2, seed=3, max_lesions=3, progress=False, copies_per_case={"CaseA": 4})
    record = json.loads((more / "phantom.json").read_text())
    assert sorted(record["case_map"]) == ["CaseA-ins00", "CaseA-ins01", "CaseA-ins02", "CaseA-ins03", "CaseB-ins00", "CaseB-ins01"]
    assert record["copies_per_case"] == {"CaseA": 4}
    for name in ("CaseA-ins01", "CaseB-ins00"):
        for suffix in ("t2", "seg", "t2_healthy"):
            assert _disk(more / name / f"{name}_{suffix}.nii.gz").tobytes() == _disk(out / name / f"{name}_{suffix}.nii.gz").tobytes()
    assert _disk(more / "CaseA-ins03" / "CaseA-ins03_seg.nii.gz").tobytes() != _disk(more / "CaseA-ins01" / "CaseA-ins01_seg.nii.gz").tobytes()
    with pytest.raises(UserError, match="at least one copy"):
        generate_inserted(source, tmp_path / "none", copies=2, seed=3, progress=False, copies_per_case={"CaseB": 0})


def test_lits_layout_with_volume_mapping(tmp_path: Path) -> None:
    source = tmp_path / "lits"
    _write_lits(source, 7, 0)
    _write_lits(source, 3, 1)
    generate_inserted(source, tmp_path / "out", copies=2, seed=0, max_lesions=2, progress=False)
    record = json.loads((tmp_path / "out" / "phantom.json").read_text())
    assert record["layout"] == "lits" and record["case_ids"] == [f"volume-{i}" for i in range(4)]
    assert record["case_map"]["volume-0"] == {"source": "volume-3", "copy": 0}  # the readers' order: 3 before 7
    assert record["case_map"]["volume-3"] == {"source": "volume-7", "copy": 1}
    found = find_cases(tmp_path / "out", "lits")
    assert [c.case_id for c in found] == record["case_ids"] and all(c.healthy is not None for c in found)
    src_labels = _disk(source / "segmentation-7.nii.gz")
    src_image = _disk(source / "volume-7.nii.gz").astype(np.float32)
    labels, image = _disk(tmp_path / "out" / "segmentation-3.nii.gz"), _disk(tmp_path / "out" / "volume-3.nii.gz")
    truth = _disk(tmp_path / "out" / "volume-3_healthy.nii.gz")
    inserted = (labels == 2) & (src_labels != 2)
    assert inserted.sum() > 10 and (src_labels[inserted] == 1).all()  # inside the liver, not in the own tumour
    assert np.array_equal(np.isnan(truth), src_labels == 2) and np.array_equal(truth[src_labels != 2], src_image[src_labels != 2])
    assert np.array_equal(image[~inserted], src_image[~inserted].astype(image.dtype))
    drop = truth[inserted] - image[inserted]
    assert 10.0 < np.median(drop) < 80.0  # hypodense, 20-60 HU below the liver (noise, partial volume)
    replayed = replay_case(tmp_path / "out" / "volume-3_params.json")
    assert from_canonical(replayed.image, replayed.image_ref).tobytes() == image.tobytes()


def test_fit_intensity_records_the_data_sets_own_ratios(tmp_path: Path) -> None:
    source = tmp_path / "source"
    _write_brats(source, "CaseA", 0, np.diag([-1.0, -1.0, 1.0, 1.0]))
    generate_inserted(source, tmp_path / "out", copies=1, seed=0, fit_intensity=True, progress=False)
    record = json.loads((tmp_path / "out" / "phantom.json").read_text())
    measured = record["fit"]["per_case"]["CaseA"]
    # Core 300 + 400 and edema 300 + 250 over tissue ~300: ratios ~2.3 and edema ~0.8.
    assert 2.0 < measured["core_ratio"] < 2.7 and 0.6 < measured["edema"] < 1.05 and "rim_ratio" not in measured
    low, high = record["model"]["core_ratio"]
    assert low < measured["core_ratio"] < high and high - low < 0.5
    assert record["fit"]["ranges"]["rim_ratio"]["fitted"] is False and record["model"]["rim_ratio"] == [1.6, 2.6]
    params = json.loads((tmp_path / "out" / "CaseA-ins00" / "CaseA-ins00_params.json").read_text())
    assert all(low <= lesion["intensity"]["core_ratio"] <= high for lesion in params["lesions"])


@pytest.mark.parametrize("what", ["labels_all", "empty"])
def test_cli_refuses_a_data_set_without_lesion_free_tissue(cli, tmp_path: Path, what) -> None:
    source = tmp_path / "source"
    folder = _write_brats(source, "Full", 0, np.diag([-1.0, -1.0, 1.0, 1.0]), labels_all=what == "labels_all", empty=what == "empty")
    result = cli(["phantom", "--kind", "inserted", "--from", source, "--output", tmp_path / "out", "--quiet"])
    assert result.exit_code == 2
    assert result.output.startswith("error:") and str(folder / "Full_t2.nii.gz") in result.output
    assert "lesion-free tissue" in result.output and result.output.count("\n") == 1


def test_cli_refuses_unknown_layouts_and_an_existing_output(cli, tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "notes.txt").write_text("no scans")
    result = cli(["phantom", "--kind", "inserted", "--from", odd, "--output", tmp_path / "o1", "--quiet"])
    assert result.exit_code == 2 and str(odd) in result.output and result.output.count("\n") == 1
    source = tmp_path / "source"
    _write_brats(source, "CaseA", 0, np.diag([-1.0, -1.0, 1.0, 1.0]), shape=(40, 40, 20))
    args = ["phantom", "--kind", "inserted", "--from", source, "--output", tmp_path / "out", "--quiet"]
    assert cli(args).exit_code == 0
    refused = cli(args + ["--copies", "2"])
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    replaced = cli(args + ["--copies", "2", "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["CaseA-ins00", "CaseA-ins01", "phantom.json"]
    misuse = cli(["phantom", "--output", tmp_path / "o2", "--from", source, "--quiet"])
    assert misuse.exit_code == 2 and "--kind inserted" in misuse.output


@pytest.mark.realdata
def test_real_case_gets_plausible_inserted_lesions(real_brats, tmp_path: Path) -> None:
    generate_inserted(real_brats, tmp_path / "out", copies=1, seed=1, progress=False)
    name = "TCGA-DU-7294-ins00"
    case = load_case(find_cases(tmp_path / "out", "brats")[0], "brats")
    src = load_case(find_cases(real_brats, "brats")[0], "brats")
    labels = load_nifti(tmp_path / "out" / name / f"{name}_seg.nii.gz").data
    inserted = (labels > 0) & ~src.lesion
    assert inserted.sum() > 100 and (src.image.data[inserted] > 0).all()
    assert np.array_equal(np.isnan(case.healthy.data), src.lesion)
    assert np.array_equal(case.image.data[~inserted], src.image.data[~inserted])
    # T2-bright: the inserted cores are 1.7-2.9 x the brain's median (with texture, noise and soft borders).
    brain_median = np.median(src.image.data[(src.image.data > 0) & ~src.lesion])
    core_ratio = np.median(case.image.data[(labels == 1) & inserted]) / brain_median
    assert 1.4 < core_ratio < 3.2
    assert nib.load(str(tmp_path / "out" / name / f"{name}_t2.nii.gz")).get_data_dtype() == np.int16
