"""End-to-end smoke run of the main job: phantom -> preprocess -> train -> synthesize -> score."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np


def test_demo_runs_end_to_end_and_resumes(cli, tmp_path):
    out = tmp_path / "demo"
    base = ["demo", "--output", out, "--cases", "5", "--shape", "48,48,24", "--working-size", "32", "--preset", "tiny",
            "--train-minutes", "0.05", "--quiet", "train.max_steps_per_epoch=2"]
    args = base + ["--adice-trials", "1"]
    result = cli(args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "demo.json").read_text())
    assert summary["test_cases"], "the split must hold out at least one case"
    for case_id in summary["test_cases"]:
        src = nib.load(out / "phantom" / case_id / f"{case_id}_t2.nii.gz")
        syn = nib.load(out / "synthesis" / "gvs" / f"{case_id}.nii.gz")
        assert syn.shape == src.shape
        np.testing.assert_allclose(syn.affine, src.affine)
    assert np.isfinite(summary["lesion_error_reduction"])
    assert summary["normal_tissue_psnr_db"] > 10
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert {"gvs", "original", "truth", "fill-mean", "fill-median", "fill-biharmonic", "fill-biharmonic3", "fill-telea"} <= set(metrics["methods"])
    assert (out / "evaluation" / "report.html").is_file()
    assert "lesion-region error reduction" in result.output and "normal-tissue PSNR" in result.output
    assert set(summary["pooled"]) == {"gvs", "fill-mean", "fill-median", "fill-biharmonic", "fill-biharmonic3", "fill-telea"}
    # h = 1 - (lesion pixels predicted on x_s) / (on x_p): at most 1, below 0 when x_s looks more diseased
    assert np.isfinite(summary["figures"]["gvs"]["healthiness"]) and summary["figures"]["gvs"]["healthiness"] <= 1.0 and summary["figures"]["original"]["healthiness"] == 0.0
    # Re-running reuses every finished stage: the phantom and the cache are not rebuilt, training is complete.
    again = cli(base + ["--no-evaluate"])  # the evaluation was checked above; it is the slow part
    assert again.exit_code == 0, again.output
    assert "already in" in again.output and "up to date" in again.output and "resuming" in again.output


def test_demo_does_not_adapt_the_gate_unless_told():
    """The demo's phantoms share the training anatomy (nothing unseen to adapt to) and it has 10 minutes."""
    from pseudohealthy.config import resolve_run_config
    from pseudohealthy.demo import DemoConfig, pipeline_config_for

    def steps(overrides):
        pipeline_cfg = pipeline_config_for(DemoConfig(overrides=overrides))
        return resolve_run_config(preset=pipeline_cfg.preset, overrides=pipeline_cfg.overrides).model.gen_gate_adapt_steps

    assert resolve_run_config(preset="hybrid").model.gen_gate_adapt_steps == 300  # the recipe's default
    assert steps([]) == 0
    assert steps(["model.gen_gate_adapt_steps=50"]) == 50
