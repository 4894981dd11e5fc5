"""Every bad input to `pseudohealthy preprocess` gives one clear sentence naming the file, exit code 2."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def _case(root: Path, name: str = "Case000") -> Path:
    return root / name


def _rewrite(path: Path, change) -> None:
    img = nib.load(path)
    data, affine = change(np.asanyarray(img.dataobj).copy(), img.affine.copy())
    nib.save(nib.Nifti1Image(data, affine), path)


def missing_modality(root: Path) -> str:
    (_case(root) / "Case000_t2.nii.gz").unlink()
    return "Case000 has no t2 image"


def missing_mask(root: Path) -> str:
    (_case(root) / "Case000_seg.nii.gz").unlink()
    return "lesion mask file for case Case000 is missing"


def shape_mismatch(root: Path) -> str:
    _rewrite(_case(root) / "Case000_seg.nii.gz", lambda d, a: (d[:, :, :-1], a))
    return "Case000_seg.nii.gz: mask shape (32, 32, 15) differs from image shape (32, 32, 16)"


def affine_mismatch(root: Path) -> str:
    def shift(d, a):
        a[0, 3] += 5.0
        return d, a

    _rewrite(_case(root) / "Case000_seg.nii.gz", shift)
    return "Case000_seg.nii.gz: mask affine differs"


def unexpected_labels(root: Path) -> str:
    def add_label(d, a):
        d[0, 0, 0] = 7
        return d, a

    _rewrite(_case(root) / "Case000_seg.nii.gz", add_label)
    return "Case000_seg.nii.gz: unexpected label(s) [7]"


def nan_in_image(root: Path) -> str:
    def add_nan(d, a):
        d = d.astype(np.float32)
        d[3, 3, 3] = np.nan
        d[4, 4, 4] = np.inf
        return d, a

    _rewrite(_case(root) / "Case000_t2.nii.gz", add_nan)
    return "Case000_t2.nii.gz: the image holds 2 NaN or infinite voxel(s)"


def truncated_gz(root: Path) -> str:
    path = _case(root) / "Case000_t2.nii.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "Case000_t2.nii.gz: cannot read this image as NIfTI; the file is corrupt or truncated"


def corrupt_file(root: Path) -> str:
    (_case(root) / "Case000_seg.nii.gz").write_bytes(b"this is not a NIfTI file")
    return "Case000_seg.nii.gz: cannot read this"


@pytest.mark.parametrize(
    "damage",
    [missing_modality, missing_mask, shape_mismatch, affine_mismatch, unexpected_labels, nan_in_image, truncated_gz, corrupt_file],
)
def test_bad_case_files(cli, tiny_brats, tmp_path, damage):
    expected = damage(tiny_brats)
    result = cli(["preprocess", "--input", tiny_brats, "--output", tmp_path / "cache", "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and expected in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "cache" / "fingerprint.json").exists()


def test_lits_unexpected_label(cli, tmp_path, lits_writer):
    lits_writer(tmp_path / "l", 0)
    seg = tmp_path / "l" / "segmentation-0.nii"
    _rewrite(seg, lambda d, a: (np.where(d == 2, 3, d).astype(np.uint8), a))
    result = cli(["preprocess", "--source", "lits", "-i", tmp_path / "l", "-o", tmp_path / "c", "-q"])
    assert result.exit_code == 2 and "segmentation-0.nii: unexpected label(s) [3]; expected only [0, 1, 2]" in result.output


def test_empty_input_folder(cli, tmp_path):
    (tmp_path / "in").mkdir()
    result = cli(["preprocess", "-i", tmp_path / "in", "-o", tmp_path / "c"])
    assert result.exit_code == 2 and "in: input folder is empty" in result.output
    (tmp_path / "in" / "notes.txt").write_text("x")
    result = cli(["preprocess", "-i", tmp_path / "in", "-o", tmp_path / "c"])
    assert result.exit_code == 2 and "no BraTS, LiTS or nnU-Net-style NIfTI files" in result.output


def test_volume_without_lesion_warns_and_is_kept(cli, tmp_path, brats_writer):
    brats_writer(tmp_path / "b", "A", lesion=True, shape=(16, 16, 4))
    brats_writer(tmp_path / "b", "B", lesion=False, shape=(16, 16, 4))
    result = cli(["preprocess", "-i", tmp_path / "b", "-o", tmp_path / "c", "-q"])
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "B_seg.nii.gz: case B has no lesion voxel; its slices are kept as healthy" in result.output
    fp = json.loads((tmp_path / "c" / "fingerprint.json").read_text())
    assert fp["cases"]["B"]["n_slices"] == 4 and fp["cases"]["B"]["lesion_slices"] is None


def test_existing_output_refused_without_overwrite(cli, tiny_brats, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    result = cli(["preprocess", "-i", tiny_brats, "-o", out, "-q"])
    assert result.exit_code == 2 and "mine: output folder already exists and is not empty; pass --overwrite" in result.output
    assert not (out / "images.npy").exists()
    result = cli(["preprocess", "-i", tiny_brats, "-o", out, "-q", "--overwrite"])
    assert result.exit_code == 0 and (out / "images.npy").exists()
    assert (out / "precious.txt").read_text() == "keep me"  # only our own files are written


@pytest.mark.parametrize(
    "args, message",
    [
        (["--working-size", "50"], "working_size 50 must be a positive multiple of 16"),
        (["--source", "kaggle"], "--source 'kaggle' is unknown"),
        (["--normalization", "minmax"], "normalization 'minmax' is unknown"),
        (["--resize-mode", "stretch"], "resize_mode 'stretch' is unknown"),
        (["--test-fraction", "1.5"], "test_fraction 1.5 must lie in [0, 1)"),
        (["colour=red"], "unknown key(s) colour"),
        (["--config", "missing.yaml"], "missing.yaml: config file not found"),
    ],
)
def test_bad_parameters(cli, tiny_brats, tmp_path, args, message):
    result = cli(["preprocess", "-i", tiny_brats, "-o", tmp_path / "c", "-q", *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_original_size_not_divisible_by_16_needs_a_working_size(cli, tmp_path, brats_writer):
    brats_writer(tmp_path / "b", "A", shape=(30, 30, 4))
    result = cli(["preprocess", "-i", tmp_path / "b", "-o", tmp_path / "c", "-q"])
    assert result.exit_code == 2 and "A_t2.nii.gz: in-plane size 30x30 is not a multiple of 16" in result.output
    result = cli(["preprocess", "-i", tmp_path / "b", "-o", tmp_path / "c", "-q", "--working-size", "32"])
    assert result.exit_code == 0, result.output


def test_cli_summary_and_up_to_date(cli, tiny_brats, tmp_path):
    args = ["preprocess", "-i", tiny_brats, "-o", tmp_path / "c", "-q", "--working-size", "16", "--seed", "3"]
    first = cli(args)
    assert first.exit_code == 0, first.output
    assert "built" in first.output and "cases 6 (5 train / 1 test), slices 96 (30 with lesion), size 16x16" in first.output
    second = cli(args)
    assert second.exit_code == 0 and "up to date" in second.output
    assert json.loads((tmp_path / "c" / "splits.json").read_text())["seed"] == 3


def test_lits_and_folder_label_without_image(cli, tmp_path, lits_writer, folder_writer):
    lits_writer(tmp_path / "l", 0)
    lits_writer(tmp_path / "l", 1)
    (tmp_path / "l" / "volume-1.nii").unlink()
    result = cli(["preprocess", "-i", tmp_path / "l", "-o", tmp_path / "c1", "-q"])
    assert result.exit_code == 2 and "segmentation-1.nii: the image volume-1.nii of this segmentation is missing" in result.output
    folder_writer(tmp_path / "f", "a")
    folder_writer(tmp_path / "f", "b")
    (tmp_path / "f" / "imagesTr" / "b_0000.nii.gz").unlink()
    result = cli(["preprocess", "-i", tmp_path / "f", "-o", tmp_path / "c2", "-q"])
    assert result.exit_code == 2 and "b.nii.gz: the image imagesTr/b_0000.nii.gz of this label file is missing" in result.output
