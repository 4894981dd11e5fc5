"""The slice cache: round trip, fingerprint, no-op re-runs, rebuilds, crash safety, LiTS margins, orientation."""
from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

from pseudohealthy.config import PreprocessConfig
from pseudohealthy.data import cache as cache_module
from pseudohealthy.data.cache import open_array, read_fingerprint, read_slice_table, sha256_file
from pseudohealthy.data.nifti_io import load_nifti
from pseudohealthy.data.preprocessing import prepare_volume
from pseudohealthy.errors import UserError


def test_round_trip_matches_prepare_volume(tiny_brats, build_cache):
    out, summary = build_cache(tiny_brats, working_size=16)
    assert summary["status"] == "built" and summary["cases"] == 6 and summary["slices"] == 6 * 16
    images = open_array(out, "images")
    assert isinstance(images, np.memmap) and images.dtype == np.float32 and images.shape == (96, 16, 16)
    rows = read_slice_table(out)
    assert [r.index for r in rows] == list(range(96))
    fp = read_fingerprint(out)
    for case_id, stats in fp["cases"].items():
        vol = load_nifti(tiny_brats / case_id / f"{case_id}_t2.nii.gz")
        prepared = prepare_volume(vol.data, PreprocessConfig(working_size=16))
        a, b = stats["rows"]
        np.testing.assert_array_equal(images[a:b], prepared.slices)
        assert [r.z for r in rows[a:b]] == list(range(16))
        np.testing.assert_allclose([r.scale for r in rows[a:b]], prepared.scale, rtol=1e-12)
        assert stats["clip"][1] == pytest.approx(np.percentile(vol.data[vol.data > 0], 99.5))
    lesions = open_array(out, "lesions")
    assert [bool(r.has_lesion) for r in rows] == [bool(m.any()) for m in lesions]
    assert summary["lesion_slices"] == sum(r.has_lesion for r in rows) > 0


def test_fingerprint_records_parameters_statistics_and_hashes(tiny_brats, build_cache):
    out, _ = build_cache(tiny_brats, working_size=16, normalization="zscore-slice")
    fp = json.loads((out / "fingerprint.json").read_text())
    assert fp["config"]["working_size"] == 16 and fp["config"]["normalization"] == "zscore-slice"
    assert fp["working_size"] == [16, 16] and fp["source"] == "brats"
    case = fp["cases"]["Case000"]
    image = tiny_brats / "Case000" / "Case000_t2.nii.gz"
    assert case["files"][0] == {"path": "Case000/Case000_t2.nii.gz", "size": image.stat().st_size, "sha256": sha256_file(image)}
    seg = np.asarray(nib.load(tiny_brats / "Case000" / "Case000_seg.nii.gz").dataobj)
    assert case["lesion_voxels"] == int((seg > 0).sum())
    zs = np.flatnonzero((seg > 0).any(axis=(0, 1)))
    assert case["lesion_slices"] == [int(zs[0]), int(zs[-1])]
    assert fp["cases"]["Case005"]["lesion_slices"] is None and fp["cases"]["Case005"]["lesion_voxels"] == 0
    splits = json.loads((out / "splits.json").read_text())
    assert len(splits["test"]) == 1 and len(splits["train"]) == 5 and not set(splits["train"]) & set(splits["test"])
    assert (out / "config.yaml").is_file()


def test_rerun_is_a_noop_and_changes_rebuild(tiny_brats, build_cache):
    out, first = build_cache(tiny_brats, working_size=16)
    stamp = (out / "images.npy").stat().st_mtime_ns
    _, again = build_cache(tiny_brats, working_size=16)
    assert again["status"] == "up to date" and (out / "images.npy").stat().st_mtime_ns == stamp
    _, forced = build_cache(tiny_brats, working_size=16, overwrite=True)  # --overwrite is no reason to rebuild
    assert forced["status"] == "up to date" and (out / "images.npy").stat().st_mtime_ns == stamp
    _, split = build_cache(tiny_brats, working_size=16, test_fraction=0.5)
    assert split["status"] == "splits updated" and split["test_cases"] == 3
    assert (out / "images.npy").stat().st_mtime_ns == stamp
    _, param = build_cache(tiny_brats, working_size=32)
    assert param["status"] == "built" and open_array(out, "images").shape == (96, 32, 32)
    img = tiny_brats / "Case001" / "Case001_t2.nii.gz"
    vol = nib.load(img)
    data = np.asanyarray(vol.dataobj).copy()
    data[16, 16, 8] += 1  # same size on disk, other content
    nib.save(nib.Nifti1Image(data, vol.affine, vol.header), img)
    _, changed = build_cache(tiny_brats, working_size=32)
    assert changed["status"] == "built"


def test_interrupted_rebuild_keeps_the_old_cache_valid(tiny_brats, build_cache, monkeypatch):
    out, _ = build_cache(tiny_brats, working_size=16)
    calls = {"n": 0}
    real = cache_module.prepare_volume

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_module, "prepare_volume", failing)
    with pytest.raises(KeyboardInterrupt):
        build_cache(tiny_brats, working_size=32)
    assert not list(out.glob("*.part*"))
    assert read_fingerprint(out)["config"]["working_size"] == 16
    assert open_array(out, "images").shape == (96, 16, 16)
    monkeypatch.setattr(cache_module, "prepare_volume", real)
    _, summary = build_cache(tiny_brats, working_size=32)
    assert summary["status"] == "built"


def test_interrupted_first_build_is_not_a_cache_and_is_rebuilt(tiny_brats, build_cache, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module, "prepare_volume", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_cache(tiny_brats)
    out = tiny_brats.parent / "cache"
    with pytest.raises(UserError, match="not a complete slice cache"):
        read_fingerprint(out)
    monkeypatch.undo()
    _, summary = build_cache(tiny_brats)  # our own marker: no --overwrite needed
    assert summary["status"] == "built"


def _reorient_case(src, dst, codes):
    dst.mkdir(parents=True)
    for path in src.iterdir():
        img = nib.load(path)
        turned = img.as_reoriented(ornt_transform(io_orientation(img.affine), axcodes2ornt(codes)))
        nib.save(turned, dst / path.name)


@pytest.mark.parametrize("codes", [("R", "A", "S"), ("A", "S", "L"), ("L", "A", "I")])
def test_reoriented_files_give_the_same_slices(tmp_path, brats_writer, build_cache, codes):
    brats_writer(tmp_path / "a", "C1", seed=3)
    _reorient_case(tmp_path / "a" / "C1", tmp_path / "b" / "C1", codes)
    assert nib.aff2axcodes(nib.load(tmp_path / "b" / "C1" / "C1_t2.nii.gz").affine) == codes
    out_a, _ = build_cache(tmp_path / "a", "ca", working_size=16)
    out_b, _ = build_cache(tmp_path / "b", "cb", working_size=16)
    for name in ("images", "lesions", "regions"):
        np.testing.assert_array_equal(open_array(out_a, name), open_array(out_b, name))
    assert read_fingerprint(out_a)["cases"]["C1"]["lesion_slices"] == read_fingerprint(out_b)["cases"]["C1"]["lesion_slices"]


@pytest.mark.parametrize("margin, kept", [(2, (6, 16)), (20, (0, 23)), (0, (8, 14))])
def test_lits_keeps_slices_around_the_liver(tiny_lits, build_cache, margin, kept):
    out, summary = build_cache(tiny_lits, source="auto", slice_margin=margin)
    fp = read_fingerprint(out)
    assert fp["source"] == "lits"
    n = kept[1] - kept[0] + 1
    for case in fp["cases"].values():
        assert case["slices"] == list(kept) and case["n_slices"] == n and case["clip"] == [-200.0, 250.0]
    assert summary["slices"] == 3 * n
    rows = read_slice_table(out)
    assert [r.z for r in rows[:n]] == list(range(kept[0], kept[1] + 1))
    assert {r.z for r in rows if r.has_lesion} == {10, 11, 12}
    images = open_array(out, "images")
    assert images.min() == -1.0 and images.max() <= 1.0
    regions = open_array(out, "regions")
    assert {r.z for r, m in zip(rows, regions) if m.any()} == set(range(8, 15))  # region = liver labels


def test_healthy_volumes_are_cached_with_the_pathological_scale(tmp_path, healthy_brats_writer, build_cache):
    for i in range(2):
        healthy_brats_writer(tmp_path / "p", f"P{i}", seed=i)
    out, _ = build_cache(tmp_path / "p", working_size=16)
    fp = read_fingerprint(out)
    assert fp["has_healthy"] is True
    images, healthy, lesions = open_array(out, "images"), open_array(out, "healthy"), open_array(out, "lesions")
    assert healthy.shape == images.shape
    lesion_rows = lesions.any(axis=(1, 2))
    np.testing.assert_array_equal(healthy[~lesion_rows], images[~lesion_rows])
    # inside the lesion the healthy image is darker (the lesion is hyperintense)
    assert healthy[lesions.astype(bool)].mean() < images[lesions.astype(bool)].mean() - 0.1


def test_nnunet_folder_cache(tiny_folder, build_cache):
    out, summary = build_cache(tiny_folder, source="folder")
    assert summary["cases"] == 3 and summary["slices"] == 36 and summary["lesion_slices"] > 0
    with open(out / "slices.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["index", "case_id", "z", "has_lesion", "scale", "offset"]


@pytest.mark.parametrize("size", [None, 16])
def test_nan_in_a_healthy_volume_stays_nan_on_its_own_slices_only(tmp_path, healthy_brats_writer, build_cache, size):
    """NaN = truth unknown (an inserted-lesion data set's own lesions): cached as NaN, never spread to other slices."""
    import nibabel as nib

    folder = healthy_brats_writer(tmp_path / "p", "P0", seed=0)
    healthy_path = folder / "P0_t2_healthy.nii.gz"
    seg = np.asanyarray(nib.load(str(folder / "P0_seg.nii.gz")).dataobj)
    original = nib.load(str(healthy_path))
    truth = np.asanyarray(original.dataobj).astype(np.float32)
    unknown = seg == 1  # the lesion core: truth unknown there
    truth[unknown] = np.nan
    nib.save(nib.Nifti1Image(truth, original.affine), str(healthy_path))
    out, _ = build_cache(tmp_path / "p", working_size=size)
    images, healthy, lesions = open_array(out, "images"), open_array(out, "healthy"), open_array(out, "lesions")
    assert np.isfinite(images).all()
    nan_rows = np.isnan(healthy).any(axis=(1, 2))
    # The canonical z of the cache rows is the on-disk z here (affine diag(-1, -1, 1)).
    np.testing.assert_array_equal(nan_rows, unknown.any(axis=(0, 1)))
    assert np.isnan(healthy).sum() >= (unknown.sum() if size is None else 1)
    assert np.isnan(healthy[~lesions.astype(bool)]).mean() < 0.05  # NaN stays (nearly) inside the lesion
    finite_rows = ~nan_rows & lesions.any(axis=(1, 2))
    assert np.isfinite(healthy[finite_rows]).all()
