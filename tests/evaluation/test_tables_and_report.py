"""Tables (CSV, Table-I rows) and the self-contained HTML report, from a hand-made results dict."""
from __future__ import annotations

import base64
import csv
import re

import numpy as np
import pytest

from pseudohealthy.evaluation.figures import adice_curves, comparison_grid, dice_boxplot
from pseudohealthy.evaluation.outputs import json_safe
from pseudohealthy.evaluation.report import render_report
from pseudohealthy.evaluation.runner import FigureSlice
from pseudohealthy.evaluation.tables import fmt, fmt_mean_std, table_rows, write_csv

PNG = b"\x89PNG\r\n\x1a\n"


def _results():
    return {
        "version": "0.1.0", "data": "/data", "source": "brats", "cases": ["A", "B"], "notes": ["method gvs: 1 of 2 cases missing (B)"],
        "settings": {"seed": 0, "working_size": 64},
        "methods": {
            "original": {"source": "@original", "special": "@original", "cases": ["A", "B"], "missing": [],
                         "per_case": {"A": {"ssim": 1.0, "psnr": float("inf")}, "B": {"ssim": 1.0, "psnr": float("inf")}},
                         "summary": {"ssim": {"mean": 1.0, "std": 0.0, "n": 2}, "psnr": {"mean": float("inf"), "std": float("nan"), "n": 2}},
                         "adice": {"mean": 0.6, "std": 0.02, "trials": [0.58, 0.62], "curves": [[0.5, 0.66], [0.6, 0.64]], "n_slices": 10, "seconds_per_trial": 1.0},
                         "healthiness": {"healthiness": 0.0, "predicted_synthetic": 10, "predicted_pathological": 10}},
            "gvs": {"source": "/out/gvs", "special": None, "cases": ["A"], "missing": ["B"],
                    "per_case": {"A": {"ssim": 0.98, "psnr": 37.5}},
                    "summary": {"ssim": {"mean": 0.98, "std": 0.0, "n": 1}, "psnr": {"mean": 37.5, "std": 0.0, "n": 1}},
                    "adice": {"mean": 0.3, "std": 0.01, "trials": [0.3, 0.3], "curves": [[0.2, 0.4], [0.25, 0.35]], "n_slices": 5, "seconds_per_trial": 1.0},
                    "healthiness": None},
        },
        "segmentors": {"full": {"mean": 0.8, "std": 0.1, "pooled": 0.82, "n": 3, "per_sample": [0.7, 0.8, 0.9], "checkpoint": "x.pt"}},
    }


@pytest.mark.parametrize("value,digits,expected", [(None, 2, ""), (float("nan"), 2, ""), (float("inf"), 2, "inf"), (0.12345, 3, "0.123")])
def test_fmt(value, digits, expected):
    assert fmt(value, digits) == expected


def test_fmt_mean_std():
    assert fmt_mean_std(0.5, 0.01, 2) == "0.50 ± 0.01"
    assert fmt_mean_std(float("inf"), float("nan"), 2) == "inf"
    assert fmt_mean_std(None, None, 2) == "-"


def test_table_rows_show_missing_and_method_metrics():
    header, rows = table_rows(_results())
    assert header[:2] == ["method", "cases"] and "A-Dice" in header and "Healthiness (Xia)" in header
    assert "SSIM (lesion vs truth)" not in header  # no ground-truth values at all: no column
    gvs = rows[1]
    assert gvs[0] == "gvs" and gvs[1] == "1 (1 missing)"
    assert gvs[header.index("A-Dice")] == "0.300 ± 0.010"
    assert rows[0][header.index("PSNR (normal, dB)")] == "inf"


def test_csv_rows(tmp_path):
    path = write_csv(_results(), tmp_path / "m.csv")
    rows = list(csv.DictReader(path.open()))
    assert [(r["method"], r["case_id"], r["row"]) for r in rows] == [
        ("original", "A", "case"), ("original", "B", "case"), ("original", "", "mean"), ("original", "", "std"),
        ("gvs", "A", "case"), ("gvs", "B", "missing"), ("gvs", "", "mean"), ("gvs", "", "std"),
    ]
    assert rows[0]["psnr"] == "inf" and float(rows[4]["psnr"]) == 37.5
    assert float(rows[6]["adice"]) == 0.3 and float(rows[7]["adice"]) == 0.01 and rows[5]["ssim"] == ""


def test_json_safe_has_no_nan_or_infinity_tokens():
    import json

    text = json.dumps(json_safe({"a": float("nan"), "b": [float("inf"), np.float32(1.5)], "c": np.int64(3), "d": np.bool_(True)}))
    assert text == '{"a": null, "b": ["inf", 1.5], "c": 3, "d": true}'


def test_figures_are_png_and_empty_inputs_give_none():
    row = FigureSlice("A", 3, (0.0, 100.0), np.random.default_rng(0).uniform(0, 100, (20, 16)), np.zeros((20, 16), bool),
                      {"gvs": np.zeros((20, 16))})
    assert comparison_grid([row], ["gvs", "absent"]).startswith(PNG)
    assert adice_curves({"a": [[0.1, 0.2]], "b": []}).startswith(PNG)
    assert dice_boxplot({"x": [0.5, 0.7]}).startswith(PNG)
    assert comparison_grid([], ["gvs"]) is None and adice_curves({}) is None and dice_boxplot({}) is None


def test_report_embeds_every_image_and_escapes_text():
    results = _results()
    results["notes"].append("<script>alert(1)</script>")
    row = FigureSlice("A", 3, (0.0, 1.0), np.zeros((8, 8)), np.ones((8, 8), bool), {"original": np.zeros((8, 8))})
    html = render_report(results, [row])
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == 3  # grid, A-Dice curves, segmentor box plot
    assert all(base64.b64decode(i).startswith(PNG) for i in images)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "1 of 2 cases missing" in html and "Segmentor generalisation" in html and "0.800 ± 0.100" in html
