"""``pseudohealthy phantom`` and generate_phantom's argument checks."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pseudohealthy.data.phantom import generate_phantom, parse_shape
from pseudohealthy.errors import UserError


def test_cli_writes_cases_and_records_its_arguments(cli, tmp_path: Path) -> None:
    out = tmp_path / "ph"
    result = cli(["phantom", "--output", out, "--cases", 2, "--seed", 5, "--shape", "40,40,24", "--quiet"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["PhantomBrain_000", "PhantomBrain_001", "phantom.json"]
    files = sorted(p.name for p in (out / "PhantomBrain_001").iterdir())
    assert files == ["PhantomBrain_001_params.json", "PhantomBrain_001_seg.nii.gz", "PhantomBrain_001_t2.nii.gz", "PhantomBrain_001_t2_healthy.nii.gz"]
    record = json.loads((out / "phantom.json").read_text())
    assert {k: record[k] for k in ("cases", "seed", "kind", "shape")} == {"cases": 2, "seed": 5, "kind": "brain", "shape": [40, 40, 24]}
    assert record["version"] and record["case_ids"] == ["PhantomBrain_000", "PhantomBrain_001"]


def test_cli_refuses_an_existing_output_and_overwrite_replaces_only_phantom_files(cli, tmp_path: Path) -> None:
    out = tmp_path / "ph"
    args = ["phantom", "--output", out, "--seed", 2, "--kind", "liver", "--shape", "40,40,20", "--quiet"]
    assert cli(args + ["--cases", 3]).exit_code == 0
    first = np.asanyarray(nib.load(str(out / "volume-1.nii.gz")).dataobj)
    (out / "notes.txt").write_text("mine")
    refused = cli(args + ["--cases", 2])
    assert refused.exit_code == 2
    assert "error:" in refused.output and str(out) in refused.output and "--overwrite" in refused.output
    replaced = cli(args + ["--cases", 2, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert not (out / "volume-2.nii.gz").exists() and not (out / "volume-2_params.json").exists()
    assert (out / "notes.txt").read_text() == "mine"
    # A case depends on (seed, index) only, not on how many cases were asked for.
    np.testing.assert_array_equal(np.asanyarray(nib.load(str(out / "volume-1.nii.gz")).dataobj), first)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--shape", "64,64"], "--shape"),
        (["--shape", "64,64,abc"], "--shape"),
        (["--shape", "8,8,8"], "at least 16"),
        (["--kind", "lung"], "lung"),
        (["--cases", "0"], "--cases"),
        (["--seed", "-1"], "--seed"),
        (["--max-lesions", "0"], "--max-lesions"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_sentence(cli, tmp_path: Path, extra, message) -> None:
    result = cli(["phantom", "--output", tmp_path / "ph", "--quiet"] + extra)
    assert result.exit_code == 2
    assert result.output.startswith("error:") and message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "ph").exists() or not any((tmp_path / "ph").iterdir())


@pytest.mark.parametrize("text, shape", [("64,64,40", (64, 64, 40)), ("96x96x48", (96, 96, 48)), (" 32, 32 ,16", (32, 32, 16))])
def test_parse_shape(text: str, shape: tuple[int, int, int]) -> None:
    assert parse_shape(text) == shape


def test_generate_phantom_refuses_a_file_as_output(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(UserError, match="file.txt"):
        generate_phantom(target, cases=1, seed=0, shape=(32, 32, 16), progress=False)
