"""`pseudohealthy table1`: five methods trained with one budget, synthesised, evaluated, tabled beside
the paper; finished stages are skipped on a rerun; other settings in the same folder are refused."""
from __future__ import annotations

import json

import pytest
import yaml

from pseudohealthy.errors import UserError
from pseudohealthy.table1 import PAPER, Table1Config, run_table1, table_rows

ROWS = [r.name for r in table_rows()]


def _data(root):
    from importlib.util import module_from_spec, spec_from_file_location
    from pathlib import Path

    spec = spec_from_file_location("_root_conftest_table1", Path(__file__).parent / "conftest.py")
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    for i in range(6):
        module.write_tiny_brats_case(root, f"Case{i:03d}", seed=i)
    return root


CFG = Table1Config(minutes_per_method=0.005, preset="tiny", working_size=32, test_fraction=0.34, batch_size=4,
                   adice_trials=0, healthiness=False, fills=("mean",))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("table1")
    data = _data(base / "raw")
    lines: list[str] = []
    result = run_table1(data, base / "out", CFG, echo=lines.append, progress=False)
    return data, base / "out", result, lines


def test_table1_trains_every_row_and_tables_it_beside_the_paper(finished):
    data, out, result, lines = finished
    names = [r["method"] for r in result["rows"]]
    assert names[:len(ROWS)] == ROWS and {"counterfeit-mean", "counterfeit-noise", "original", "fill-mean"} <= set(names)
    assert "truth" not in names  # these cases carry no true healthy volume (the phantom's do)
    for row in result["rows"][:len(ROWS)]:
        assert row["steps"] >= 1 and row["psnr"] is not None and 0 < row["ssim"] <= 1
    gvs = next(r for r in result["rows"] if r["method"] == "gvs")
    assert (gvs["paper_psnr"], gvs["paper_ssim"], gvs["paper_adice"]) == PAPER["GVS(1.0)"][:3]
    configs = {name: yaml.safe_load((out / "runs" / name / "config.yaml").read_text())
               for name in ROWS}
    assert [configs[n]["method"] for n in ROWS] == ["gvs", "gvs", "vagan", "phsgan", "antgan"]
    assert configs["gvs-basic"]["train"]["seg_loss"] == "ce" and configs["gvs"]["train"]["seg_loss"] == "wce"
    assert all(c["train"]["max_minutes"] == CFG.minutes_per_method and c["train"]["budget_clock"] == "cpu" for c in configs.values())
    md = (out / "table1.md").read_text()
    assert "| vagan |" in md and "| VA-GAN | 21.89 | 0.742 |" in md and "0.736 ± 0.310" in md
    assert "<table>" in (out / "table1.html").read_text()
    assert sorted(p.name for p in (out / "synthesis" / "antgan").glob("*.nii.gz") if "residual" not in p.name) == \
        sorted(f"{c}.nii.gz" for c in json.loads((out / "cache" / "splits.json").read_text())["test"])


def test_rerun_skips_finished_stages_and_resumes_an_unfinished_run(finished):
    data, out, result, _ = finished
    lines: list[str] = []
    run_table1(data, out, CFG, echo=lines.append, progress=False)
    assert all(f"[train {name}] done" in lines for name in ROWS)
    assert not any(line.startswith(("[synthesize", "[evaluate")) for line in lines)
    # As if stopped while training vagan: its checkpoint is there, its stage is not marked done.
    state = json.loads((out / "table1.json").read_text())
    steps = next(r["steps"] for r in result["rows"] if r["method"] == "vagan")
    del state["stages"]["train:vagan"]
    (out / "table1.json").write_text(json.dumps(state))
    lines.clear()
    again = run_table1(data, out, CFG, echo=lines.append, progress=False)
    assert any(line.startswith("[train vagan]") and line.endswith("(resuming)") for line in lines)
    assert next(r["steps"] for r in again["rows"] if r["method"] == "vagan") == steps  # its budget was spent already


def test_other_settings_in_the_same_folder_are_refused(finished):
    data, out, _, _ = finished
    other = Table1Config(**{**CFG.__dict__, "seed": 1})
    with pytest.raises(UserError, match="holds a Table I run with other settings"):
        run_table1(data, out, other, echo=lambda s: None, progress=False)
