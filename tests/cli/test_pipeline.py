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
