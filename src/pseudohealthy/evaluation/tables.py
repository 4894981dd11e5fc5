"""Tables of an evaluation: the per-case and aggregate CSV, and the Table-I-style rows of the report."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    digits: int
    better: str  # "higher" | "lower"
    what: str  # one line for the report's legend


PER_CASE_COLUMNS = (
    Column("ssim", "SSIM (normal)", 4, "higher", "identity: SSIM between input and output on normal tissue"),
    Column("psnr", "PSNR (normal, dB)", 2, "higher", "identity: PSNR between input and output on normal tissue"),
    Column("gt_ssim", "SSIM (lesion vs truth)", 4, "higher", "ground truth: SSIM between output and true healthy image in the lesion"),
    Column("gt_psnr", "PSNR (lesion vs truth, dB)", 2, "higher", "ground truth: PSNR in the lesion"),
    Column("gt_mse", "MSE (lesion vs truth)", 5, "lower", "ground truth: MSE in the lesion, [0, 1] scale"),
    Column("gt_mae", "MAE (lesion vs truth)", 4, "lower", "ground truth: MAE in the lesion, [0, 1] scale"),
    Column("error_reduction", "lesion error reduction", 3, "higher", "1 - mean|x_s - x_h| / mean|x_p - x_h| in the lesion"),
)
METHOD_COLUMNS = (
    Column("adice", "A-Dice", 3, "lower", "A-Dice (eq. 8), mean +- std over trials"),
    Column("healthiness", "Healthiness (Xia)", 3, "higher", "1 - predicted lesion pixels on outputs / on inputs"),
)


def _number_text(value: Any, finite: Any) -> str:
    """Empty for undefined (None, NaN), ``inf``/``-inf`` for infinities, else ``finite(value)``."""
    if value is None:
        return ""
    value = float(value)
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return finite(value)


def fmt(value: Any, digits: int) -> str:
    """A number for a table: fixed digits, ``inf``, or an empty string for undefined."""
    return _number_text(value, lambda v: f"{v:.{digits}f}")


def fmt_mean_std(mean: Any, std: Any, digits: int) -> str:
    """``mean +- std`` (``mean`` alone where the std is undefined)."""
    m, s = fmt(mean, digits), fmt(std, digits)
    if not m:
        return "-"
    return f"{m} ± {s}" if s else m


def present_columns(results: dict[str, Any]) -> list[Column]:
    """The per-case columns that hold at least one value for some method."""
    keep = []
    for col in PER_CASE_COLUMNS:
        for method in results["methods"].values():
            if method["summary"].get(col.key, {}).get("n", 0):
                keep.append(col)
                break
    return keep


def method_value(method: dict[str, Any], key: str) -> tuple[Any, Any]:
    """(mean, std) of a method-level metric: A-Dice over trials; Healthiness has no spread."""
    if key == "adice" and method.get("adice"):
        return method["adice"]["mean"], method["adice"]["std"]
    if key == "healthiness" and method.get("healthiness"):
        return method["healthiness"]["healthiness"], None
    return None, None


def table_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Table I style: one row per method, ``mean +- std`` over cases (A-Dice: over trials)."""
    columns = present_columns(results)
    method_cols = [c for c in METHOD_COLUMNS if any(method_value(m, c.key)[0] is not None for m in results["methods"].values())]
    header = ["method", "cases"] + [c.label for c in columns] + [c.label for c in method_cols]
    rows = []
    for name, method in results["methods"].items():
        row = [name, f"{len(method['cases'])}" + (f" ({len(method['missing'])} missing)" if method["missing"] else "")]
        for col in columns:
            stats = method["summary"].get(col.key, {})
            row.append(fmt_mean_std(stats.get("mean"), stats.get("std"), col.digits))
        for col in method_cols:
            mean, std = method_value(method, col.key)
            row.append(fmt_mean_std(mean, std, col.digits))
        rows.append(row)
    return header, rows


def write_csv(results: dict[str, Any], path: str | Path) -> Path:
    """``metrics.csv``: per method, one row per case (``row=case``), one per missing case
    (``row=missing``, empty values), then ``row=mean`` and ``row=std`` (over cases; A-Dice over trials).
    """
    path = Path(path)
    keys = [c.key for c in PER_CASE_COLUMNS]
    fields = ["method", "case_id", "row"] + keys + ["adice", "healthiness"]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(fields)
        for name, method in results["methods"].items():
            for case_id in method["cases"]:
                values = method["per_case"].get(case_id, {})
                writer.writerow([name, case_id, "case"] + [_csv_value(values.get(k)) for k in keys] + ["", ""])
            for case_id in method["missing"]:
                writer.writerow([name, case_id, "missing"] + [""] * (len(keys) + 2))
            for stat in ("mean", "std"):
                summary = [_csv_value(method["summary"].get(k, {}).get(stat)) for k in keys]
                adice_mean, adice_std = method_value(method, "adice")
                health, _ = method_value(method, "healthiness")
                extra = [_csv_value(adice_mean if stat == "mean" else adice_std), _csv_value(health) if stat == "mean" else ""]
                writer.writerow([name, "", stat] + summary + extra)
    return path


def _csv_value(value: Any) -> str:
    """Full precision for CSV files."""
    return _number_text(value, repr)
