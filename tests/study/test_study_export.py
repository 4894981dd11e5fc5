"""`pseudohealthy study export`: Table II as the paper reports it, agreement, files, refusals."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from pseudohealthy.study import db
from pseudohealthy.study.export import export_study, fmt
from studydata import METHODS

# Scores per (method, criterion) as a function of (rater index 0..2, slice index 0..3).
PLAN = {
    ("GVSfullMethod", "healthiness"): lambda r, s: 5,                 # unanimous: 5.000 (±0.000)
    ("GVSfullMethod", "identity"): lambda r, s: 4,
    ("GVSbasicMethod", "healthiness"): lambda r, s: (4, 2, 3)[r],     # raters differ: 3.000 (±1.000)
    ("GVSbasicMethod", "identity"): lambda r, s: (5, 4, 3)[r],
    ("OriginalImagesMethod", "healthiness"): lambda r, s: 1 + s,      # slices differ: 2.500 (±0.000) over raters
    ("OriginalImagesMethod", "identity"): lambda r, s: 5,
    ("CounterfeitMeanMethod", "healthiness"): lambda r, s: 2,
    ("CounterfeitMeanMethod", "identity"): lambda r, s: 2 + (r == 0 and s == 0),
    ("CounterfeitNoiseMethod", "healthiness"): lambda r, s: 1,
    ("CounterfeitNoiseMethod", "identity"): lambda r, s: 3,
}

pytest_plugins = ["studykit"]  # the study fixtures (tests/study/studykit.py)


def _fill(study, plan=PLAN, skip=()):
    """Store the planned scores in one transaction (setup only; the app's save path is tested elsewhere)."""
    conn = db.connect(study)
    rows = []
    try:
        raters = [r.id for r in db.raters(conn)]
        slices = [s for s, in conn.execute("SELECT id FROM slices ORDER BY id")]
        outputs = {(m, s): o for m, s, o in conn.execute(
            "SELECT m.name, o.slice_id, o.id FROM outputs o JOIN methods m ON m.id = o.method_id")}
        for (method, criterion), score in plan.items():
            for ri, rater in enumerate(raters):
                for si, sid in enumerate(slices):
                    if (ri, si) not in skip:
                        rows.append((rater, outputs[(method, sid)], criterion, score(ri, si), db.now()))
        with conn:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO ratings (rater_id, output_id, criterion, score, updated_at) VALUES (?, ?, ?, ?, ?)", rows)
    finally:
        conn.close()


def test_table_two_over_raters_and_over_slices(study_copy):
    study = study_copy(slices=4, raters=3)
    _fill(study)
    result = export_study(study)
    rows = {row["method"]: row for row in result.table}
    assert list(rows) == list(METHODS)  # the order given at creation
    full, basic, orig, mean = (rows[m] for m in METHODS[:4])
    assert (full["healthiness_mean"], full["healthiness_std"]) == (pytest.approx(5.0), pytest.approx(0.0, abs=1e-12))
    assert (basic["healthiness_mean"], basic["healthiness_std"]) == (pytest.approx(3.0), pytest.approx(1.0))
    assert (basic["identity_mean"], basic["identity_std"]) == (pytest.approx(4.0), pytest.approx(1.0))
    assert (basic["healthiness_slices_mean"], basic["healthiness_slices_std"]) == (pytest.approx(3.0), pytest.approx(0.0, abs=1e-12))
    # Slices differ, raters agree: no spread over raters, the spread of 1..4 over slices (sample std).
    assert (orig["healthiness_mean"], orig["healthiness_std"]) == (pytest.approx(2.5), pytest.approx(0.0, abs=1e-12))
    assert orig["healthiness_slices_std"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    # One extra point from one rater on one slice: rater means 2.25, 2, 2 -> mean 2.0833, std 0.1443.
    assert mean["identity_mean"] == pytest.approx(np.mean([2.25, 2, 2]), abs=1e-9)
    assert mean["identity_std"] == pytest.approx(np.std([2.25, 2, 2], ddof=1), abs=1e-9)
    assert all(r["raters"] == 3 and r["slices"] == 4 and r["ratings"] == 24 for r in rows.values())
    assert result.stored == result.expected == 3 * 4 * 5 * 2
    assert fmt(basic["healthiness_mean"], basic["healthiness_std"]) == "3.000 (±1.000)"

    # Files: CSV and JSON carry the same numbers, the HTML page shows them in the paper's format.
    with open(result.folder / "table2.csv") as handle:
        csv_rows = {r["method"]: r for r in csv.DictReader(handle)}
    assert float(csv_rows["GVSbasicMethod"]["healthiness_std"]) == pytest.approx(1.0)
    summary = json.loads((result.folder / "table2.json").read_text())
    assert summary["table"][1]["identity_mean"] == pytest.approx(4.0)
    html = (result.folder / "table2.html").read_text()
    assert "5.000 (±0.000)" in html and "3.000 (±1.000)" in html and "GVSbasicMethod" in html
    with open(result.folder / "ratings.csv") as handle:
        raw = list(csv.DictReader(handle))
    assert len(raw) == result.stored and {r["method"] for r in raw} == set(METHODS)


def test_agreement_is_krippendorffs_ordinal_alpha(study_copy):
    import krippendorff

    agreeing = {key: (lambda r, s, k=i: 1 + (k + s) % 5) for i, key in enumerate(PLAN)}
    study = study_copy(slices=4, raters=3)
    _fill(study, agreeing)
    result = export_study(study)
    assert result.agreement["healthiness"]["krippendorff_alpha_ordinal"] == pytest.approx(1.0)
    assert result.agreement["identity"]["units"] == 4 * 5

    other = study_copy(slices=4, raters=3)
    _fill(other)
    alpha = export_study(other).agreement["healthiness"]
    # Against the library on the same raters x units matrix, built here independently.
    matrix = np.array([[PLAN[(m, "healthiness")](r, s) for m in METHODS for s in range(4)] for r in range(3)], float)
    assert alpha["krippendorff_alpha_ordinal"] == pytest.approx(
        krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5]), abs=1e-9)
    assert 0.0 < alpha["krippendorff_alpha_ordinal"] < 1.0


def test_export_cli_incomplete_study_one_rater_and_refusals(cli, study_copy):
    study = study_copy(slices=4, raters=2)
    _fill(study, {k: v for k, v in PLAN.items()}, skip={(1, s) for s in range(4)})  # rater 2 has not started
    result = cli(["study", "export", study])
    assert result.exit_code == 0, result.output
    assert "40 of 80 scores are still missing" in result.output
    assert "GVSbasicMethod" in result.output and "4.000" in result.output
    assert "no unit is rated by two raters yet" in result.output
    summary = json.loads((study / "export" / "table2.json").read_text())
    assert summary["table"][0]["healthiness_std"] is None  # one rater: no spread over raters
    again = cli(["study", "export", study])
    assert again.exit_code == 2 and "pass --overwrite" in again.output
    assert cli(["study", "export", study, "--overwrite"]).exit_code == 0
    (study / "study.sqlite").write_bytes(b"not a database at all, just some bytes" * 40)
    for name in ("study.sqlite-wal", "study.sqlite-shm"):
        (study / name).unlink(missing_ok=True)
    broken = cli(["study", "export", study, "--output", study / "x"])
    assert broken.exit_code == 2 and "not a readable study database" in broken.output
