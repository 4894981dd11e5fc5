"""`preprocess --source reference-npy`: the reference code's per-slice .npy dicts into our slice cache."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from pseudohealthy.data.cache import open_array, read_fingerprint, read_slice_table
from pseudohealthy.data.reference_npy import read_slice
from pseudohealthy.errors import UserError

SIDE, DEPTH = 32, 10


def write_like_reference_code(folder: Path, stored: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """The reference code's BraTS script on a volume in its stored (LPS) voxel order: clip at the integer
    99.5% of all voxels, z-score over voxels > 0 (0 elsewhere), one ``{z:03d}.npy`` dict per slice with
    brain, in SimpleITK's array order (the stored slice transposed). Returns the clipped volume, kept z."""
    values, counts = np.unique(np.trunc(stored), return_counts=True)
    clip = values[np.argmax(np.cumsum(counts) / stored.size > 0.995)]
    clipped = np.where(stored > clip, clip, stored).astype(np.float32)
    mask = clipped > 0
    mean, std = np.float32(clipped[mask].mean()), np.float32(clipped[mask].std(ddof=1))
    zscored = (clipped - mean) / std * mask
    folder.mkdir(parents=True)
    kept = []
    for n in range(stored.shape[2]):
        if mask[:, :, n].any():
            np.save(folder / f"{n:03d}.npy", {"brain": zscored[:, :, n].T, "seg_label": seg[:, :, n].T, "mean": mean, "std": std})
            kept.append(n)
    return clipped, kept


def write_reference_brats_case(root: Path, case_id: str, seed: int) -> dict:
    """A tiny volume through :func:`write_like_reference_code` (the first and last slices hold no brain);
    the returned arrays are in canonical (RAS) order, as the cache should hold them."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(np.linspace(-1, 1, SIDE), np.linspace(-1, 1, SIDE), np.linspace(-1.3, 1.3, DEPTH), indexing="ij")
    brain = (x / 0.8) ** 2 + (y / 0.9) ** 2 + z**2 < 1
    volume = np.where(brain, 300 + 60 * np.sin(5 * x) + rng.normal(0, 10, brain.shape), 0.0)
    seg = np.zeros(brain.shape, np.uint8)
    blob = (((x - 0.2) / 0.3) ** 2 + (y / 0.3) ** 2 + (z / 0.5) ** 2 < 1) & brain
    volume[blob] += 300
    seg[blob] = 2
    seg[blob & (np.abs(x - 0.2) < 0.1)] = 4
    clipped, kept = write_like_reference_code(root / case_id, volume, seg)
    return {"volume": clipped[::-1, ::-1], "seg": seg[::-1, ::-1], "kept": kept}  # LPS stored -> RAS


@pytest.fixture(scope="module")
def reference_folder(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("refnpy") / "npy"
    cases = {f"BraTS19_Case{i}_1": write_reference_brats_case(root, f"BraTS19_Case{i}_1", seed=i) for i in range(4)}
    return root, cases


@pytest.fixture(scope="module")
def reference_cache(reference_folder, tmp_path_factory):
    from typer.testing import CliRunner

    from pseudohealthy.cli.main import app

    root, _ = reference_folder
    cache = tmp_path_factory.mktemp("refcache") / "cache"
    args = ["preprocess", "--source", "reference-npy", "--input", str(root), "--output", str(cache), "--quiet", "--test-fraction", "0.25"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return cache, CliRunner().invoke(app, args)


def test_cache_follows_the_contract(reference_folder, reference_cache):
    root, cases = reference_folder
    cache, _ = reference_cache
    fp = read_fingerprint(cache)
    assert fp["source"] == "reference-npy" and fp["config"]["normalization"] == "reference"
    assert sorted(fp["cases"]) == sorted(cases) and fp["working_size"] == [SIDE, SIDE]
    rows = read_slice_table(cache)
    splits = json.loads((cache / "splits.json").read_text())
    assert len(splits["test"]) == 1 and sorted(splits["train"] + splits["test"]) == sorted(cases)
    images, lesions, regions = (open_array(cache, n) for n in ("images", "lesions", "regions"))
    assert images.shape == (len(rows), SIDE, SIDE) and images.min() == -1.0 and images.max() <= 1.0
    for case_id, truth in cases.items():
        mine = [r for r in rows if r.case_id == case_id]
        assert [r.z for r in mine] == truth["kept"]  # the files' own slice numbers, gaps included
        assert fp["cases"][case_id]["slices"] == [truth["kept"][0], truth["kept"][-1]]
        assert len(fp["cases"][case_id]["files"]) == len(truth["kept"])
        for r in mine:
            brain = truth["volume"][:, :, r.z] > 0
            np.testing.assert_array_equal(regions[r.index].astype(bool), brain)
            np.testing.assert_array_equal(lesions[r.index].astype(bool), truth["seg"][:, :, r.z] > 0)
            assert r.has_lesion == bool((truth["seg"][:, :, r.z] > 0).any())
            # slices.csv maps input units (the clipped volume) onto the cached slice, inside the brain
            predicted = r.scale * truth["volume"][:, :, r.z] + r.offset
            np.testing.assert_allclose(images[r.index][brain], predicted[brain], atol=2e-5)
            # exactly what the reference code's data loader makes of the stored z-scores, in our layout
            stored = read_slice(root / case_id / f"{r.z:03d}.npy")["image"]
            expected = ((stored - stored.min()) / (stored.max() - stored.min()) - 0.5) * 2
            np.testing.assert_allclose(images[r.index], np.flip(expected, (0, 1)).T, atol=1e-5)


def test_rerun_is_up_to_date(reference_cache):
    _, second = reference_cache
    assert second.exit_code == 0 and "up to date" in second.output


def test_cache_trains_two_steps_with_the_tiny_preset(reference_cache, tmp_path):
    import torch

    from pseudohealthy.config import resolve_run_config
    from pseudohealthy.training.checkpoint import read_checkpoint
    from pseudohealthy.training.loop import train

    cache, _ = reference_cache
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = resolve_run_config(preset="tiny", data=str(cache),
                                 overrides=["train.epochs=1", "train.max_steps_per_epoch=2", "train.device=cpu", "train.batch_size=2", "train.preview_slices=0"])
        last = train(cfg, tmp_path / "run", progress=False)
    finally:
        torch.set_num_threads(threads)
    payload = read_checkpoint(last)
    assert payload["epoch"] == 1 and payload["history"][0]["steps"] == 2
    assert payload["preprocess"]["source"] == "reference-npy"
    assert np.isfinite(payload["history"][0]["loss_g"])


def test_liver_slices_use_labels_for_region_and_lesion(tmp_path):
    from pseudohealthy.config import PreprocessConfig
    from pseudohealthy.data.cache import preprocess_dataset

    folder = tmp_path / "npy" / "case000"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n in range(3):
        seg = np.zeros((SIDE, SIDE), np.uint8)
        seg[8:24, 8:24] = 1
        seg[12:16, 12:16] = 2 if n == 1 else 1
        hu = np.clip(rng.normal(60, 30, (SIDE, SIDE)), -200, 250).astype(np.int16)
        np.save(folder / f"{40 + n:03d}_1{int(n == 1)}.npy", {"liver": hu, "seg_label": seg, "has_tumor": n == 1, "has_liver": True})
    summary = preprocess_dataset(tmp_path / "npy", tmp_path / "cache", PreprocessConfig(source="reference-npy"), progress=False)
    assert summary["slices"] == 3 and summary["lesion_slices"] == 1
    fp = read_fingerprint(tmp_path / "cache")
    assert fp["config"]["intensity"] == "range"
    assert [r.z for r in read_slice_table(tmp_path / "cache")] == [40, 41, 42]
    assert open_array(tmp_path / "cache", "regions")[0].sum() == 16 * 16


@pytest.mark.parametrize(
    "content,expected",
    [
        (np.zeros((4, 4)), "not a reference slice file"),
        ({"brain": np.zeros((4, 4)), "seg_label": np.zeros((4, 4)), "mean": 1.0}, "lacks the key 'std'"),
        ({"image": np.zeros((4, 4))}, "exactly one of the keys brain or liver"),
        ({"brain": np.zeros((4, 4)), "seg_label": np.zeros((3, 4)), "mean": 1.0, "std": 2.0}, "same shape"),
        ({"brain": np.zeros((4, 4)), "seg_label": np.zeros((4, 4)), "mean": 1.0, "std": argparse.Namespace()},
         "Python objects other than numpy arrays"),
    ],
)
def test_anything_but_a_reference_slice_dict_is_refused(tmp_path, content, expected):
    path = tmp_path / "000.npy"
    np.save(path, content, allow_pickle=True)
    with pytest.raises(UserError, match=expected):
        read_slice(path)


def test_bad_folder_is_one_sentence_from_the_cli(cli, tmp_path):
    folder = tmp_path / "npy" / "case"
    folder.mkdir(parents=True)
    np.save(folder / "slice.npy", {"brain": np.zeros((4, 4))})
    result = cli(["preprocess", "--source", "reference-npy", "--input", tmp_path / "npy", "--output", tmp_path / "c"])
    assert result.exit_code == 2 and "slice.npy: not a reference slice file name" in result.output


@pytest.mark.realdata
def test_real_case_as_reference_slices_matches_its_nifti_cache(real_brats, tmp_path):
    """The real case written the reference code's way, then imported, equals our own `reference`
    preprocessing of its NIfTI file: same slices, orientation, lesions and intensities."""
    import nibabel as nib

    from pseudohealthy.config import PreprocessConfig
    from pseudohealthy.data.cache import preprocess_dataset

    case = "TCGA-DU-7294"
    stored = np.asarray(nib.load(real_brats / case / f"{case}_t2.nii.gz").dataobj, dtype=np.float32)
    seg = np.asarray(nib.load(real_brats / case / f"{case}_seg.nii.gz").dataobj).astype(np.uint8)
    _, kept = write_like_reference_code(tmp_path / "npy" / case, stored, seg)
    quiet = {"progress": False, "warn": lambda message: None}
    preprocess_dataset(tmp_path / "npy", tmp_path / "from-npy", PreprocessConfig(source="reference-npy", normalization="reference"), **quiet)
    preprocess_dataset(real_brats, tmp_path / "from-nifti", PreprocessConfig(source="brats", normalization="reference"), **quiet)
    rows = read_slice_table(tmp_path / "from-npy")
    assert [r.z for r in rows] == kept and len(kept) > 100
    for name in ("images", "lesions", "regions"):
        ours, theirs = open_array(tmp_path / "from-npy", name), open_array(tmp_path / "from-nifti", name)[kept]
        np.testing.assert_allclose(ours, theirs, atol=1e-5, err_msg=name)
