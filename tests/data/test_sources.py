"""Readers of the three raw layouts: BraTS (old and 2023+ naming, HGG/LGG), LiTS, nnU-Net folder."""
from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from pseudohealthy.data.sources import detect_source, find_cases, load_case
from pseudohealthy.errors import UserError


def test_brats_cases_lesion_is_whole_tumour(tiny_brats):
    cases = find_cases(tiny_brats)
    assert [c.case_id for c in cases] == [f"Case{i:03d}" for i in range(6)]
    case = load_case(cases[0], "brats")
    assert case.image.shape == (32, 32, 16)
    assert case.region is None  # the brain comes from the image
    labels = np.asarray(nib.load(cases[0].mask).dataobj)
    assert case.lesion.sum() == (labels > 0).sum() > 0
    assert not load_case(cases[5], "brats").lesion.any()


def test_brats_2023_naming_and_modality(tmp_path, brats_writer):
    folder = brats_writer(tmp_path / "new", "BraTS-GLI-00001-000", modality="t2w")
    (folder / "BraTS-GLI-00001-000_seg.nii.gz").rename(folder / "BraTS-GLI-00001-000-seg.nii.gz")
    (folder / "BraTS-GLI-00001-000_t2w.nii.gz").rename(folder / "BraTS-GLI-00001-000-t2w.nii.gz")
    cases = find_cases(tmp_path / "new", "auto", modality="t2")
    assert len(cases) == 1 and cases[0].image.name == "BraTS-GLI-00001-000-t2w.nii.gz"
    assert cases[0].mask.name == "BraTS-GLI-00001-000-seg.nii.gz"


@pytest.mark.parametrize("grade, expected", [(None, ["H1", "H2", "L1"]), ("HGG", ["H1", "H2"]), ("lgg", ["L1"])])
def test_brats_grade_filter(tmp_path, brats_writer, grade, expected):
    for g, name in [("HGG", "H1"), ("HGG", "H2"), ("LGG", "L1")]:
        brats_writer(tmp_path / "b" / g, name, shape=(16, 16, 4))
    cases = find_cases(tmp_path / "b", "brats", grade=grade)
    assert [c.case_id for c in cases] == expected
    assert all(c.grade == ("HGG" if c.case_id.startswith("H") else "LGG") for c in cases)


def test_single_case_folder_is_accepted(tiny_brats):
    cases = find_cases(tiny_brats / "Case002")
    assert [c.case_id for c in cases] == ["Case002"]


def test_lits_labels_lesion_and_liver(tiny_lits):
    assert detect_source(tiny_lits) == "lits"
    cases = find_cases(tiny_lits, "auto")
    assert [c.case_id for c in cases] == ["volume-0", "volume-1", "volume-2"]
    case = load_case(cases[0], "lits")
    assert case.lesion.any() and case.region.any()
    assert not (case.lesion & ~case.region).any()  # tumour lies inside the liver (labels 1 and 2)
    assert case.region.any(axis=(0, 1)).nonzero()[0].tolist() == list(range(8, 15))


def test_lits_numbers_sort_naturally(tmp_path, lits_writer):
    for n in (10, 2, 1):
        lits_writer(tmp_path / "l", n)
    assert [c.case_id for c in find_cases(tmp_path / "l", "lits")] == ["volume-1", "volume-2", "volume-10"]


def test_nnunet_folder_layout(tiny_folder):
    assert detect_source(tiny_folder) == "folder"
    cases = find_cases(tiny_folder, "auto")
    assert [c.case_id for c in cases] == ["case_00", "case_01", "case_02"]
    case = load_case(cases[1], "folder")
    assert case.lesion.any() and case.region is None


def test_folder_lesion_labels_from_config(tmp_path, folder_writer):
    folder_writer(tmp_path / "f", "c1", label=3)
    files = find_cases(tmp_path / "f", "folder")[0]
    case = load_case(files, "folder", lesion_labels=[3])
    assert case.lesion.sum() > 0
    with pytest.raises(UserError, match="unexpected label"):
        load_case(files, "folder")  # default lesion label is 1


def test_healthy_partner_is_found(tmp_path, healthy_brats_writer):
    healthy_brats_writer(tmp_path / "p", "P1", seed=1)
    files = find_cases(tmp_path / "p")[0]
    assert files.healthy is not None and files.healthy.name == "P1_t2_healthy.nii.gz"
    case = load_case(files, "brats")
    outside = ~case.lesion
    np.testing.assert_array_equal(case.healthy.data[outside], case.image.data[outside])
    assert not np.array_equal(case.healthy.data, case.image.data)


def test_find_cases_without_masks_for_synthesis(tiny_brats):
    for p in tiny_brats.glob("*/*_seg.nii.gz"):
        p.unlink()
    cases = find_cases(tiny_brats, require_mask=False)
    assert len(cases) == 6 and all(c.mask is None for c in cases)
    shutil.rmtree(tiny_brats / "Case001")
    assert len(find_cases(tiny_brats, require_mask=False)) == 5
