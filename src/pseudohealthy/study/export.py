"""Table II from a study's ratings: per method, healthiness and identity, mean +- std, and agreement.

As the paper reports it, each rater's scores of a method are first averaged over the slices, then the
mean and standard deviation are taken over the raters. The same figures over the slices (each slice
averaged over its raters first) are written beside them. Standard deviations are sample ones
(``ddof=1``); with a single rater or slice there is none (empty in the CSV, null in the JSON).
Inter-rater agreement is Krippendorff's alpha for ordinal data (``krippendorff`` package) over every
(slice, method) unit, per criterion.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pseudohealthy import __version__
from pseudohealthy.errors import refuse_existing_output
from pseudohealthy.study import db

EXPORT_DIR = "export"
TABLE_COLUMNS = (
    "method", "healthiness_mean", "healthiness_std", "identity_mean", "identity_std",
    "healthiness_slices_mean", "healthiness_slices_std", "identity_slices_mean", "identity_slices_std",
    "raters", "slices", "ratings",
)


@dataclass
class ExportResult:
    folder: Path
    table: list[dict[str, Any]]
    agreement: dict[str, dict[str, Any]]
    stored: int
    expected: int


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), (float(array.std(ddof=1)) if array.size > 1 else None)


def read_ratings(conn) -> list[dict[str, Any]]:
    """Every stored score with its method, rater and slice, in a stable order."""
    rows = conn.execute(
        "SELECT ra.name AS rater, ra.id AS rater_id, s.id AS slice_id, s.case_id, s.z, m.name AS method, "
        "m.id AS method_id, o.id AS output_id, r.criterion, r.score, r.updated_at "
        "FROM ratings r JOIN raters ra ON ra.id = r.rater_id JOIN outputs o ON o.id = r.output_id "
        "JOIN slices s ON s.id = o.slice_id JOIN methods m ON m.id = o.method_id "
        "ORDER BY m.id, ra.id, s.id, r.criterion"
    ).fetchall()
    return [dict(r) for r in rows]


def table_two(ratings: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
    """One row per method (in ``methods`` order): mean and std over raters and over slices."""
    table = []
    for method in methods:
        mine = [r for r in ratings if r["method"] == method]
        row: dict[str, Any] = {"method": method}
        for criterion in db.CRITERIA:
            scores = [r for r in mine if r["criterion"] == criterion]
            by_rater: dict[int, list[int]] = {}
            by_slice: dict[int, list[int]] = {}
            for r in scores:
                by_rater.setdefault(r["rater_id"], []).append(r["score"])
                by_slice.setdefault(r["slice_id"], []).append(r["score"])
            row[f"{criterion}_mean"], row[f"{criterion}_std"] = _mean_std([float(np.mean(v)) for v in by_rater.values()])
            row[f"{criterion}_slices_mean"], row[f"{criterion}_slices_std"] = _mean_std(
                [float(np.mean(v)) for v in by_slice.values()])
        row["raters"] = len({r["rater_id"] for r in mine})
        row["slices"] = len({r["slice_id"] for r in mine})
        row["ratings"] = len(mine)
        table.append(row)
    return table


def agreement(ratings: list[dict[str, Any]], rater_ids: list[int]) -> dict[str, dict[str, Any]]:
    """Krippendorff's alpha (ordinal) per criterion over (slice, method) units; ``None`` where undefined."""
    import krippendorff

    out: dict[str, dict[str, Any]] = {}
    for criterion in db.CRITERIA:
        scores = [r for r in ratings if r["criterion"] == criterion]
        units = sorted({r["output_id"] for r in scores})
        column = {u: j for j, u in enumerate(units)}
        row_of = {rid: i for i, rid in enumerate(rater_ids)}
        matrix = np.full((len(rater_ids), len(units)), np.nan)
        for r in scores:
            matrix[row_of[r["rater_id"]], column[r["output_id"]]] = r["score"]
        pairable = int((np.sum(~np.isnan(matrix), axis=0) >= 2).sum()) if units else 0
        alpha: float | None = None
        note = ""
        if len(rater_ids) < 2:
            note = "needs at least two raters"
        elif pairable == 0:
            note = "no unit is rated by two raters yet"
        else:
            try:
                value = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal", value_domain=list(db.SCORES))
                alpha = None if math.isnan(value) else float(value)
                note = "" if alpha is not None else "undefined (no variation in the scores)"
            except (ValueError, ZeroDivisionError) as exc:
                note = f"undefined ({exc})"
        out[criterion] = {"krippendorff_alpha_ordinal": alpha, "units": len(units), "pairable_units": pairable, "note": note}
    return out


def export_study(study_dir: str | Path, output: str | Path | None = None, overwrite: bool = False) -> ExportResult:
    """Write ``table2.csv``, ``table2.json``, ``table2.html``, ``ratings.csv`` and ``export.json``."""
    study_dir = Path(study_dir)
    conn = db.connect(study_dir)
    try:
        methods = [r["name"] for r in conn.execute("SELECT name FROM methods ORDER BY id")]
        rater_ids = [r.id for r in db.raters(conn)]
        ratings = read_ratings(conn)
        expected = db.n_slices(conn) * len(methods) * len(db.CRITERIA) * len(rater_ids)
        created = db.get_meta(conn, "created")
    finally:
        conn.close()
    folder = Path(output) if output is not None else study_dir / EXPORT_DIR
    refuse_existing_output(folder, overwrite)
    folder.mkdir(parents=True, exist_ok=True)

    table = table_two(ratings, methods)
    agree = agreement(ratings, rater_ids)
    with open(folder / "table2.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        for row in table:
            writer.writerow({k: ("" if row[k] is None else (round(row[k], 6) if isinstance(row[k], float) else row[k])) for k in TABLE_COLUMNS})
    with open(folder / "ratings.csv", "w", newline="") as handle:
        fields = ("rater", "case_id", "z", "method", "criterion", "score", "updated_at")
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(ratings)
    summary = {
        "study": str(study_dir.resolve()), "created": created, "version": __version__,
        "definition": "mean and sample std (ddof=1) over raters of each rater's mean over slices; "
                      "*_slices_*: over slices of each slice's mean over raters",
        "ratings_stored": len(ratings), "ratings_expected": expected,
        "table": table, "agreement": agree,
    }
    (folder / "table2.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "table2.html").write_text(_html(summary))
    (folder / "export.json").write_text(json.dumps(
        {"command": "study export", "study": str(study_dir), "output": str(folder), "version": __version__}, indent=2) + "\n")
    return ExportResult(folder, table, agree, len(ratings), expected)


def fmt(mean: float | None, std: float | None) -> str:
    """The paper's format, ``4.457 (±0.330)``; a dash where there is no value."""
    if mean is None:
        return "-"
    return f"{mean:.3f}" + (f" (±{std:.3f})" if std is not None else "")


def _html(summary: dict[str, Any]) -> str:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")), autoescape=select_autoescape(["html"]))
    env.filters["fmt"] = lambda row, key: fmt(row[f"{key}_mean"], row[f"{key}_std"])
    return env.get_template("table2.html").render(**summary)

