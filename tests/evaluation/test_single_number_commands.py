"""`pseudohealthy adice` and `pseudohealthy healthiness`: one number each, JSON on request, clear refusals."""
from __future__ import annotations

import json
import re

import pytest

FAST_ADICE = ["--trials", "2", "--epochs", "1", "--working-size", "32"]


def test_adice_prints_one_number_and_writes_json(cli, tiny_brats, tmp_path):
    out = tmp_path / "adice.json"
    result = cli(["adice", "--data", tiny_brats, "--method", "orig=@original", "--cases", "Case000,Case001", "--output", out, *FAST_ADICE])
    assert result.exit_code == 0, result.output
    match = re.search(r"A-Dice orig: (\d\.\d{3}) ± (\d\.\d{3}) \(2 trial\(s\) of 1 epochs, (\d+) lesion slices", result.output)
    assert match, result.output
    saved = json.loads(out.read_text())
    assert saved["adice"]["mean"] == pytest.approx(float(match.group(1)), abs=5e-4)
    assert saved["adice"]["n_slices"] == int(match.group(3)) > 0
    assert saved["cases"] == ["Case000", "Case001"] and len(saved["adice"]["curves"]) == 2
    again = cli(["adice", "--data", tiny_brats, "--method", "orig=@original", "--output", out, *FAST_ADICE])
    assert again.exit_code == 2 and "already exists" in again.output


def test_adice_warns_about_missing_cases(cli, tiny_brats, tmp_path):
    from pseudohealthy.metrics.counterfeits import write_counterfeits

    fake = tmp_path / "mean"
    write_counterfeits(tiny_brats, "mean", fake, cases=["Case000", "Case001"], progress=False)
    result = cli(["adice", "--data", tiny_brats, "--method", f"mean={fake}", "--cases", "Case000,Case001,Case002", *FAST_ADICE])
    assert result.exit_code == 0, result.output
    assert "lacks 1 case(s): Case002" in result.output


def test_healthiness_prints_one_number(cli, tiny_brats, tmp_path):
    result = cli(["healthiness", "--data", tiny_brats, "--method", "orig=@original", "--cases", "Case000,Case001",
                  "--epochs", "1", "--working-size", "32", "--cache", tmp_path / "cache", "--output", tmp_path / "h.json"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "h.json").read_text())
    # On the inputs themselves both counts are the same pixels: h = 0 (undefined if nothing is predicted).
    assert saved["predicted_synthetic"] == saved["predicted_pathological"]
    expected = "0.000" if saved["predicted_pathological"] else "nan"
    assert f"Healthiness orig: {expected}" in result.output
    assert saved["trained_on"] == ["Case002", "Case003", "Case004", "Case005"]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1


@pytest.mark.parametrize("command", ["adice", "healthiness"])
@pytest.mark.parametrize("method,message", [("x=/no/such/folder", "not found"), ("x=@healthy", "needs the ground truth")])
def test_refusals(cli, tiny_brats, tmp_path, command, method, message):
    result = cli([command, "--data", tiny_brats, "--method", method, "--working-size", "32"])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
