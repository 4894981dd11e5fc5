"""Lesion-free slices for the baselines: from the cache's has_lesion flag, other subjects, replayable."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pseudohealthy.data.cache import open_array, read_slice_table
from pseudohealthy.data.dataset import SliceDataset
from pseudohealthy.data.healthy import HealthyPool
from pseudohealthy.data.splits import read_splits
from pseudohealthy.errors import UserError


@pytest.fixture
def cache(tmp_path, brats_writer, build_cache):
    root = tmp_path / "b"
    for i in range(6):
        brats_writer(root, f"C{i:02d}", shape=(32, 32, 12), seed=i, lesion=i != 5)
    out, _ = build_cache(root, working_size=16, test_fraction=0.2)
    return out


def test_preprocess_keeps_lesion_free_slices_and_the_dataset_serves_them(cache):
    table = read_slice_table(cache)
    assert any(r.has_lesion for r in table) and any(not r.has_lesion for r in table)
    free = SliceDataset(cache, "train", lesion_free=True)
    lesions = open_array(cache, "lesions")
    assert len(free) > 0 and all(not lesions[r.index].any() for r in free.rows)
    assert len(free) + len(SliceDataset(cache, "train", lesion_only=True)) == len(SliceDataset(cache, "train"))
    with pytest.raises(UserError, match="both lesion_only and lesion_free"):
        SliceDataset(cache, "train", lesion_only=True, lesion_free=True)


def test_draws_come_from_other_training_cases_and_replay_per_epoch(cache):
    pool = HealthyPool(cache, seed=3)
    train = set(read_splits(cache / "splits.json")["train"])
    assert set(pool.case_ids) <= train
    own = [str(pool.case_ids[0])] * 4
    pool.set_epoch(2)
    images, regions = pool.draw(own)
    assert images.shape == regions.shape == (4, 1, 16, 16) and images.dtype == torch.float32
    pool.set_epoch(2)
    again, _ = pool.draw(own)
    assert torch.equal(images, again)
    # Every drawn slice is a lesion-free slice of another case: match it against the cache.
    all_images, lesions = open_array(cache, "images"), open_array(cache, "lesions")
    others = [r.index for r in pool.rows if r.case_id != own[0]]
    for image in images[:, 0].numpy():
        matches = [i for i in others if np.array_equal(all_images[i], image)]
        assert matches and not lesions[matches[0]].any()
