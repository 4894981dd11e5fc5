"""The segmentation experiment: Table III output, resumability per run, and its bad inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pseudohealthy.experiments import segmentation
from pseudohealthy.experiments.segmentation import SegmentExperimentConfig, enhanced_images, run_segment_experiment, summarise_runs
from pseudohealthy.errors import UserError


def _cfg(**kw):
    base = dict(alphas=[0.5], trials=2, epochs=1, seg_base=4, seg_depth=2, batch_size=4, device="cpu")
    base.update(kw)
    return SegmentExperimentConfig(**base)


def test_enhanced_images_change_only_inside_the_region():
    x = np.full((1, 4, 4), 0.2, np.float32)
    s = x.copy()
    s[0, 1, 1] = -0.4  # the generator changed one pixel...
    s[0, 3, 3] = -0.4  # ...and one outside the region
    region = np.ones_like(x, np.uint8)
    region[0, 3, 3] = 0
    out = enhanced_images(x, s, region, 0.5)
    assert out[0, 1, 1] == pytest.approx(0.2 + 0.5 * 0.6)
    assert out[0, 3, 3] == pytest.approx(0.2)
    assert out[0, 0, 0] == pytest.approx(0.2)


def test_summary_rows_report_change_against_alpha_zero():
    results = [
        {"variant": "ce", "fraction": 1.0, "alpha": 0.0, "mean_dice": 0.5},
        {"variant": "ce", "fraction": 1.0, "alpha": 0.0, "mean_dice": 0.7},
        {"variant": "ce", "fraction": 1.0, "alpha": 0.7, "mean_dice": 0.8},
    ]
    rows = {r["alpha"]: r for r in summarise_runs(results)}
    assert rows[0.0]["dice_mean"] == pytest.approx(0.6) and rows[0.0]["dice_std"] == pytest.approx(0.1)
    assert rows[0.7]["change_vs_alpha0"] == pytest.approx(0.2)
    assert rows[0.0]["change_vs_alpha0"] == pytest.approx(0.0)


def test_experiment_writes_table_and_resumes_without_recomputing(tiny_trained, tmp_path, monkeypatch):
    out = tmp_path / "exp"
    calls = []
    real = segmentation.train_segmentor

    def counting(*args, **kwargs):
        calls.append(args[3].key)
        if len(calls) == 3:
            raise KeyboardInterrupt  # an interruption in the middle of the third run
        return real(*args, **kwargs)

    monkeypatch.setattr(segmentation, "train_segmentor", counting)
    with pytest.raises(KeyboardInterrupt):
        run_segment_experiment(tiny_trained["cache"], tiny_trained["checkpoint"], out, _cfg(), progress=False)
    assert len(list((out / "runs").glob("*.json"))) == 2
    calls.clear()
    result = run_segment_experiment(tiny_trained["cache"], tiny_trained["checkpoint"], out, _cfg(), progress=False)
    assert len(calls) == 2  # only the two runs not finished before the interruption
    assert {r["alpha"] for r in result["rows"]} == {0.0, 0.5}
    table = json.loads((out / "table.json").read_text())
    assert len(table) == 2 and all(r["trials"] == 2 for r in table)
    assert all(0.0 <= r["dice_mean"] <= 1.0 for r in table)
    assert (out / "results.csv").read_text().count("\n") > 2
    assert "Table III" in (out / "report.html").read_text()


def test_cli_refuses_alpha_out_of_range(cli, tiny_trained, tmp_path):
    result = cli(["segment-experiment", "--data", tiny_trained["cache"], "--checkpoint", tiny_trained["checkpoint"],
                  "--output", tmp_path / "e", "--alpha", "2.5"])
    assert result.exit_code == 2 and "outside [0, 2]" in result.output


def test_refuses_too_few_training_cases_for_fraction(tiny_trained, tmp_path):
    with pytest.raises(UserError, match="too few for fraction 0.1"):
        run_segment_experiment(tiny_trained["cache"], tiny_trained["checkpoint"], tmp_path / "e", _cfg(fractions=[0.1]), progress=False)


def test_refuses_checkpoint_with_other_preprocessing(tiny_trained, tmp_path):
    from pseudohealthy.config import PreprocessConfig
    from pseudohealthy.data.cache import preprocess_dataset

    other = tmp_path / "cache48"
    preprocess_dataset(tiny_trained["raw"], other, PreprocessConfig(source="brats", working_size=48, test_fraction=0.34), progress=False)
    with pytest.raises(UserError) as info:
        run_segment_experiment(other, tiny_trained["checkpoint"], tmp_path / "e", _cfg(), progress=False)
    message = str(info.value)
    assert "working_size" in message and "fingerprint.json" in message and str(tiny_trained["checkpoint"]) in message


def test_refuses_cache_without_test_cases(tiny_trained, tmp_path):
    from pseudohealthy.config import PreprocessConfig
    from pseudohealthy.data.cache import preprocess_dataset

    one = tmp_path / "one"
    (one / "Case000").mkdir(parents=True)
    for f in (tiny_trained["raw"] / "Case000").iterdir():
        (one / "Case000" / f.name).symlink_to(f)
    preprocess_dataset(one, tmp_path / "cache1", PreprocessConfig(source="brats", working_size=32), progress=False)
    with pytest.raises(UserError, match="needs training and test cases, found 1 and 0"):
        run_segment_experiment(tmp_path / "cache1", tiny_trained["checkpoint"], tmp_path / "e", _cfg(), progress=False)
