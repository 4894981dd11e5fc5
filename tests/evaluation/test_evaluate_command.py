"""`pseudohealthy evaluate` end to end on tiny cases with true healthy volumes, and its bad inputs."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


@pytest.fixture(scope="module")
def mean_counterfeit(phantom_like, tmp_path_factory) -> Path:
    from pseudohealthy.metrics.counterfeits import write_counterfeits

    out = tmp_path_factory.mktemp("cf") / "mean"
    write_counterfeits(phantom_like, "mean", out, progress=False)
    return out


FAST = ["--adice-trials", "1", "--adice-epochs", "1", "--working-size", "32", "--figure-slices", "2"]


@pytest.fixture(scope="module")
def evaluated(phantom_like, mean_counterfeit, tmp_path_factory):
    """One full evaluation (A-Dice and Healthiness on), shared by the checks below."""
    from typer.testing import CliRunner

    from pseudohealthy.cli.main import app

    out = tmp_path_factory.mktemp("eval") / "report"
    cache = tmp_path_factory.mktemp("cache")
    args = ["evaluate", "--data", phantom_like, "--method", "original=@original", "--method", "truth=@healthy",
            "--method", f"mean={mean_counterfeit}", "--output", out, "--cases", "Case000,Case001,Case002",
            "--healthiness-cache", cache, *FAST]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return out, result


def test_outputs_are_written(evaluated):
    out, result = evaluated
    assert {p.name for p in out.iterdir()} == {"metrics.json", "metrics.csv", "config.yaml", "report.html"}
    assert "report:" in result.output


def test_special_methods_have_their_known_values(evaluated):
    metrics = json.loads((evaluated[0] / "metrics.json").read_text())
    assert metrics["cases"] == ["Case000", "Case001", "Case002"]
    original = metrics["methods"]["original"]["summary"]
    assert original["ssim"]["mean"] == pytest.approx(1.0, abs=1e-12)
    assert original["psnr"]["mean"] == "inf"
    assert original["error_reduction"]["mean"] == pytest.approx(0.0, abs=1e-12)
    truth = metrics["methods"]["truth"]["summary"]
    assert truth["error_reduction"]["mean"] == pytest.approx(1.0, abs=1e-12)
    assert truth["gt_ssim"]["mean"] == pytest.approx(1.0, abs=1e-12)
    assert truth["gt_mse"]["mean"] == 0.0
    mean = metrics["methods"]["mean"]["summary"]
    assert 0.0 < mean["error_reduction"]["mean"] < 1.0
    assert metrics["methods"]["original"]["healthiness"]["healthiness"] == pytest.approx(0.0, abs=1e-12)
    for name in ("original", "truth", "mean"):
        adice = metrics["methods"][name]["adice"]
        assert len(adice["curves"]) == 1 and len(adice["curves"][0]) == 1 and 0.0 <= adice["mean"] <= 1.0
    # The Healthiness segmentor trained on the one case that was not evaluated.
    assert metrics["healthiness_segmentor"]["trained_on"] == ["Case003"]


def test_csv_has_case_and_aggregate_rows(evaluated):
    with (evaluated[0] / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    truth = [r for r in rows if r["method"] == "truth"]
    assert [r["row"] for r in truth] == ["case", "case", "case", "mean", "std"]
    per_case = [float(r["error_reduction"]) for r in truth if r["row"] == "case"]
    assert per_case == pytest.approx([1.0, 1.0, 1.0])
    original_mean = next(r for r in rows if r["method"] == "original" and r["row"] == "mean")
    assert original_mean["psnr"] == "inf" and original_mean["adice"] != ""


def test_report_is_self_contained(evaluated):
    html = (evaluated[0] / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2  # comparison grid and A-Dice curves
    assert "src='http" not in html and "<script" not in html and "<link" not in html
    for text in ("Table I", "A-Dice", "Metric definitions", "Settings", "Case000"):
        assert text in html


def _copy_method(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    dst.mkdir(parents=True)
    for f in src.glob("*.nii.gz"):
        if f.name.split(".")[0] not in skip:
            shutil.copy(f, dst / f.name)
    return dst


def test_missing_cases_are_reported_and_the_rest_evaluated(cli, phantom_like, mean_counterfeit, tmp_path):
    partial = _copy_method(mean_counterfeit, tmp_path / "partial", skip=("Case001",))
    out = tmp_path / "out"
    result = cli(["evaluate", "--data", phantom_like, "--method", f"partial={partial}", "--output", out,
                  "--adice-trials", "0", "--no-healthiness", "--working-size", "32"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    method = metrics["methods"]["partial"]
    assert method["missing"] == ["Case001"] and method["cases"] == ["Case000", "Case002", "Case003"]
    assert sorted(method["per_case"]) == ["Case000", "Case002", "Case003"]
    assert any("Case001" in n for n in metrics["notes"])
    assert "Case001" in (out / "report.html").read_text() and "Case001" in result.output


def _rewrite(path: Path, data=None, affine=None) -> None:
    img = nib.load(str(path))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj) if data is None else data, img.affine if affine is None else affine), str(path))


@pytest.mark.parametrize("damage,message", [
    ("shape", "has shape"),
    ("affine", "affine that differs"),
    ("nan", "NaN"),
])
def test_bad_method_volumes_are_refused_in_one_sentence(cli, phantom_like, mean_counterfeit, tmp_path, damage, message):
    bad = _copy_method(mean_counterfeit, tmp_path / "bad")
    target = bad / "Case002.nii.gz"
    data = np.asarray(nib.load(str(target)).dataobj).astype(np.float32)
    if damage == "shape":
        _rewrite(target, data[:, :, :-1])
    elif damage == "affine":
        _rewrite(target, affine=np.diag([-2.0, -1.0, 1.0, 1.0]))
    else:
        data[5, 5, 5] = np.nan
        _rewrite(target, data)
    result = cli(["evaluate", "--data", phantom_like, "--method", f"bad={bad}", "--output", tmp_path / "out", "--adice-trials", "0", "--no-healthiness"])
    assert result.exit_code == 2
    assert message in result.output and "Case002.nii.gz" in result.output and "method bad" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and result.output.count("error:") == 1 and "Traceback" not in result.output


def test_ground_truth_requested_but_absent(cli, tiny_brats, tmp_path):
    result = cli(["evaluate", "--data", tiny_brats, "--method", "truth=@healthy", "--output", tmp_path / "out"])
    assert result.exit_code == 2
    assert "needs the ground truth" in result.output and "Case000" in result.output


@pytest.mark.parametrize("args,message", [
    (["--method", "x=@nothing"], "@nothing is unknown"),
    (["--method", "noequals"], "NAME=DIR"),
    (["--method", "a=@original", "--method", "a=@original"], "more than once"),
    (["--method", "a=/does/not/exist"], "not found"),
    (["--method", "a=@original", "--cases", "Case999"], "Case999"),
    (["--method", "a=@original", "--working-size", "40"], "multiple of 16"),
])
def test_bad_arguments(cli, phantom_like, tmp_path, args, message):
    result = cli(["evaluate", "--data", phantom_like, "--output", tmp_path / "out", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_existing_output_is_not_overwritten(cli, phantom_like, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    result = cli(["evaluate", "--data", phantom_like, "--method", "o=@original", "--output", out])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (out / "keep.txt").read_text() == "x"


def test_data_without_truth_gives_identity_only(cli, tiny_brats, tmp_path):
    out = tmp_path / "out"
    result = cli(["evaluate", "--data", tiny_brats, "--method", "o=@original", "--output", out, "--adice-trials", "0", "--no-healthiness"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["methods"]["o"]["summary"]) == {"ssim", "psnr"}
    assert any("no true healthy volumes" in n for n in metrics["notes"])
    assert metrics["methods"]["o"]["adice"] is None and metrics["methods"]["o"]["healthiness"] is None
