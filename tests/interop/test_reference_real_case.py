"""A reference-format checkpoint, imported, synthesises the real BraTS case (TCGA-DU-7294) to NIfTI.

The reference networks at 240x240 take about 1.2 s per slice on one CPU thread (190 s for the 155
slices), so the run is imported with ``--working-size 32`` (0.02 s per slice); the networks are the
full `reference` preset with random weights, which is all a geometry check needs.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from reference_nets import save_reference_checkpoint  # noqa: E402

CASE = "TCGA-DU-7294"


@pytest.mark.realdata
def test_imported_reference_checkpoint_synthesises_the_real_case(real_brats, cli, tmp_path):
    save_reference_checkpoint(tmp_path / "ref.pth", seed=11, with_optimisers=False)
    result = cli(["import-reference", "--checkpoint", tmp_path / "ref.pth", "--output", tmp_path / "run", "--working-size", "32"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "preprocess.json").read_text())["working_size"] == 32
    out = tmp_path / "synth"
    result = cli(["synthesize", "--checkpoint", tmp_path / "run", "--input", real_brats / CASE, "--output", out, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    source = nib.load(real_brats / CASE / f"{CASE}_t2.nii.gz")
    written = nib.load(out / f"{CASE}.nii.gz")
    assert written.shape == source.shape == (240, 240, 155)
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
    before, after = np.asarray(source.dataobj, dtype=np.float32), np.asarray(written.dataobj, dtype=np.float32)
    outside = before <= 0
    np.testing.assert_array_equal(after[outside], before[outside])  # background untouched
    changed = np.abs(after - before)[~outside]
    assert changed.max() > 1.0  # the random generator does change the brain
