"""`pseudohealthy evaluate --fills`: classical fills written under the output and evaluated as methods."""
from __future__ import annotations

import json

import pytest

FAST = ["--adice-trials", "0", "--no-healthiness", "--working-size", "32", "--figure-slices", "1"]


def test_fills_become_methods_beside_the_others(cli, phantom_like, tmp_path):
    out = tmp_path / "report"
    args = ["evaluate", "--data", phantom_like, "--method", "original=@original", "--method", "truth=@healthy",
            "--fills", "mean,biharmonic,telea", "--output", out, "--cases", "Case000,Case002", *FAST]
    result = cli(args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["methods"]) == ["original", "truth", "fill-mean", "fill-biharmonic", "fill-telea"]
    assert metrics["settings"]["fills"] == ["mean", "biharmonic", "telea"]
    for kind in ("mean", "biharmonic", "telea"):
        method = metrics["methods"][f"fill-{kind}"]
        assert method["source"] == str(out / "fills" / kind) and method["cases"] == ["Case000", "Case002"]
        assert sorted(p.name for p in (out / "fills" / kind).glob("*.nii.gz")) == ["Case000.nii.gz", "Case002.nii.gz"]
        # a fill removes most of the +500 lesion but cannot restore the texture under it
        assert 0.3 < method["summary"]["error_reduction"]["mean"] < 1.0
        # outside the lesion the fill is the input: no error at all on normal tissue
        assert method["summary"]["psnr"]["mean"] == "inf"
        assert f"fill-{kind}" in result.output
    assert "fill-biharmonic" in (out / "report.html").read_text()

    # a second run over the same output reuses the fills it finds there
    stamp = (out / "fills" / "telea" / "Case000.nii.gz").stat().st_mtime_ns
    again = cli([*args, "--overwrite"])
    assert again.exit_code == 0, again.output
    assert (out / "fills" / "telea" / "Case000.nii.gz").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("args,message", [
    (["--fills", "mean,blur"], "'blur' is unknown"),
    (["--method", "fill-mean=@original", "--fills", "mean"], "fill-mean"),
    ([], "no method to evaluate"),
])
def test_bad_fills_are_refused(cli, phantom_like, tmp_path, args, message):
    result = cli(["evaluate", "--data", phantom_like, "--output", tmp_path / "out", *FAST, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "fills").exists()
