"""`pseudohealthy pipeline` end to end on a tiny phantom: every stage's output, resume, refusals."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from pseudohealthy.data.phantom import generate_phantom

    root = tmp_path_factory.mktemp("pipeline") / "phantom"
    generate_phantom(root, cases=4, seed=5, shape=(48, 48, 24), progress=False)
    return root


def test_pipeline_writes_gvs_beside_the_fills_and_resumes(cli, phantom, tmp_path):
    out = tmp_path / "out"
    args = ["pipeline", "--data", phantom, "--output", out, "--test-cases", "PhantomBrain_003", "--train-minutes", "0.05",
            "--preset", "tiny", "--working-size", "32", "--fills", "mean,median", "--adice-trials", "0",
            "--no-healthiness", "--quiet", "train.max_steps_per_epoch=2"]
    result = cli(args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "pipeline.json").read_text())
    assert summary["test_cases"] == ["PhantomBrain_003"] and "PhantomBrain_003" not in summary["train_cases"]
    src = nib.load(phantom / "PhantomBrain_003" / "PhantomBrain_003_t2.nii.gz")
    syn = nib.load(out / "synthesis" / "gvs" / "PhantomBrain_003.nii.gz")
    assert syn.shape == src.shape and np.allclose(syn.affine, src.affine)
    assert {"gvs", "original", "truth", "fill-mean", "fill-median"} == set(summary["figures"])
    assert summary["figures"]["truth"]["error_reduction"] == pytest.approx(1.0)
    assert summary["figures"]["original"]["error_reduction"] == pytest.approx(0.0)
    assert "fill-median" in result.output and (out / "evaluation" / "report.html").is_file()
    assert summary["run_config"]["train"]["max_minutes"] == 0.05
    # Again: the cache is kept, training (budget spent) adds no epoch, synthesis is not redone.
    made = (out / "synthesis" / "gvs" / "PhantomBrain_003.nii.gz").stat().st_mtime_ns
    again = cli(args)
    assert again.exit_code == 0, again.output
    assert "up to date" in again.output and "resuming" in again.output
    assert (out / "synthesis" / "gvs" / "PhantomBrain_003.nii.gz").stat().st_mtime_ns == made


@pytest.mark.parametrize("extra, words", [
    (["--test-cases", "NoSuchCase"], "not in the data set"),
    (["--train-minutes", "0"], "must be positive"),
])
def test_pipeline_refuses_bad_arguments_with_one_sentence(cli, phantom, tmp_path, extra, words):
    result = cli(["pipeline", "--data", phantom, "--output", tmp_path / "o", "--preset", "tiny", "--working-size", "32",
                  "--quiet", *extra])
    assert result.exit_code != 0
    assert words in result.output and "Traceback" not in result.output


def test_pipeline_on_data_without_truth_trains_on_inserted_lesions_split_by_subject(cli, tmp_path):
    """Real-like data (no healthy volumes): the hybrid recipe trains on an inserted-lesion copy whose
    copies of one subject all stay on one side, and the real test case is evaluated as it is."""
    from pseudohealthy.data.phantom import generate_phantom

    raw = tmp_path / "raw"
    generate_phantom(raw, cases=3, seed=2, shape=(64, 64, 20), progress=False)
    for healthy in raw.glob("*/*_healthy.nii.gz"):
        healthy.unlink()
    for extra in raw.glob("*/*_params.json"):
        extra.unlink()
    (raw / "phantom.json").unlink()
    out = tmp_path / "out"
    from pseudohealthy.errors import UserError
    from pseudohealthy.pipeline import MIN_TRAIN_VOLUMES, PipelineConfig, copies_per_subject

    # by default the two training subjects get copies for MIN_TRAIN_VOLUMES training volumes; the test subject 2
    default = copies_per_subject(raw, PipelineConfig(test_cases=["PhantomBrain_001"]))
    assert default == {"PhantomBrain_000": MIN_TRAIN_VOLUMES // 2, "PhantomBrain_001": 2, "PhantomBrain_002": MIN_TRAIN_VOLUMES // 2}
    with pytest.raises(UserError, match="--train-copies 0"):
        copies_per_subject(raw, PipelineConfig(test_cases=["PhantomBrain_001"], train_copies=0))
    # a bad training setting is refused before any lesion is inserted (no output folder at all)
    refused = cli(["pipeline", "--data", raw, "--output", tmp_path / "bad", "--quiet", "train.online_lesions=2"])
    assert refused.exit_code == 2 and "train.online_lesions (2)" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "bad").exists()
    result = cli(["pipeline", "--data", raw, "--output", out, "--test-cases", "PhantomBrain_001", "--train-minutes", "0.05",
                  "--train-copies", "3", "--fills", "mean", "--adice-trials", "0", "--no-healthiness", "--quiet", "--intensity", "median",
                  "model.gen_channels=8", "model.gen_blocks=1", "model.seg_base=8", "model.seg_depth=3",
                  "model.seg_max_channels=16", "train.crop_size=32", "train.batch_size=2", "train.max_steps_per_epoch=2"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "pipeline.json").read_text())
    assert json.loads((out / "cache" / "fingerprint.json").read_text())["config"]["intensity"] == "median"
    assert summary["test_cases"] == ["PhantomBrain_001-ins00", "PhantomBrain_001-ins01"]
    assert not any(c.startswith("PhantomBrain_001") for c in summary["train_cases"])
    assert sorted(summary["train_cases"]) == [f"PhantomBrain_00{s}-ins0{k}" for s in (0, 2) for k in range(3)]
    assert set(summary["figures"]) == {"inserted", "real"}
    assert "truth" in summary["figures"]["inserted"] and "truth" not in summary["figures"]["real"]
    assert {"gvs", "original", "fill-mean"} <= set(summary["figures"]["real"])
    real = nib.load(out / "synthesis" / "gvs-real" / "PhantomBrain_001.nii.gz")
    assert real.shape == nib.load(raw / "PhantomBrain_001" / "PhantomBrain_001_t2.nii.gz").shape
