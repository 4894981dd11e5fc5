"""`pseudohealthy study create`: slice selection, rendering, the stored study, refused inputs."""
from __future__ import annotations

import re
import shutil
import sqlite3

import nibabel as nib
import numpy as np
import pytest
import yaml
from PIL import Image

from pseudohealthy.study.render import display, slice_window
from studydata import METHODS, method_args

NAME = re.compile(r"^[0-9a-f]{24}\.png$")

pytest_plugins = ["studykit"]  # the study fixtures (tests/study/studykit.py)


def _lesion_slices(data):
    found = set()
    for case in sorted(p for p in data.iterdir() if p.is_dir()):
        seg = nib.as_closest_canonical(nib.load(str(case / f"{case.name}_seg.nii.gz"))).get_fdata()
        found |= {(case.name, int(z)) for z in np.flatnonzero((seg > 0).any(axis=(0, 1)))}
    return found


def _query(study, sql, args=()):
    conn = sqlite3.connect(str(study / "study.sqlite"))
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_create_writes_a_complete_blinded_study(cli, study_inputs, tmp_path):
    data, methods = study_inputs
    out = tmp_path / "study"
    result = cli(["study", "create", "--data", data, *method_args(methods), "--slices", 12, "--raters", 3,
                  "--seed", 1, "--output", out])
    assert result.exit_code == 0, result.output
    assert "12 slice(s)" in result.output

    slices = _query(out, "SELECT id, case_id, z, input_image, annotation_image FROM slices")
    assert len(slices) == 12
    assert {(c, z) for _, c, z, _, _ in slices} <= _lesion_slices(data)  # every slice shows a lesion
    images = sorted(p.name for p in (out / "images").iterdir())
    assert len(images) == 12 * (len(METHODS) + 2)
    assert all(NAME.match(n) for n in images)
    assert len(set(images)) == len(images)

    config = yaml.safe_load((out / "study.yaml").read_text())
    assert config["seed"] == 1 and config["raters"] == 3 and set(config["methods"]) == set(METHODS)

    outputs = {}
    for sid, oid in _query(out, "SELECT slice_id, id FROM outputs"):
        outputs.setdefault(sid, set()).add(oid)
    for rater, in _query(out, "SELECT id FROM raters"):
        seq = _query(out, "SELECT seq, slice_id FROM sequence WHERE rater_id = ? ORDER BY seq", (rater,))
        assert [s for s, _ in seq] == list(range(1, 13))
        assert sorted(sid for _, sid in seq) == sorted(s[0] for s in slices)
        for sid, oids in outputs.items():
            pos = _query(out, "SELECT position, output_id FROM positions WHERE rater_id = ? AND slice_id = ? ORDER BY position",
                         (rater, sid))
            assert [p for p, _ in pos] == list(range(1, len(METHODS) + 1))
            assert {o for _, o in pos} == oids


def test_selection_is_seeded_but_tokens_and_orders_are_secret(make_study):
    a, b, c = make_study(slices=8, seed=0), make_study(slices=8, seed=0), make_study(slices=8, seed=5)
    pick = {s: set(_query(s, "SELECT case_id, z FROM slices")) for s in (a, b, c)}
    assert pick[a] == pick[b]
    assert pick[a] != pick[c]
    tokens = {s: {t for t, in _query(s, "SELECT token FROM raters")} for s in (a, b)}
    assert not tokens[a] & tokens[b]
    assert all(len(t) >= 32 for t in tokens[a])
    # Same slices and seed, yet the orders are drawn afresh: the seed does not give the key away.
    order = {s: _query(s, "SELECT p.rater_id, sl.case_id, sl.z, p.position, m.name FROM positions p JOIN outputs o ON o.id = p.output_id "
                          "JOIN slices sl ON sl.id = p.slice_id JOIN methods m ON m.id = o.method_id ORDER BY 1, 2, 3, 4") for s in (a, b)}
    assert order[a] != order[b]


def test_uses_every_lesion_slice_when_fewer_than_asked(cli, study_inputs, tmp_path):
    data, methods = study_inputs
    out = tmp_path / "all"
    result = cli(["study", "create", "--data", data, *method_args(methods), "--slices", 1000, "--raters", 1, "--output", out])
    assert result.exit_code == 0, result.output
    available = _lesion_slices(data)
    assert f"only {len(available)} slice(s) with a lesion" in result.output
    assert set(_query(out, "SELECT case_id, z FROM slices")) == available


def test_cases_missing_from_a_method_are_left_out(cli, study_inputs, tmp_path):
    data, methods = study_inputs
    copied = {}
    for name, folder in methods.items():
        copied[name] = tmp_path / "m" / name
        shutil.copytree(folder, copied[name])
    (copied["GVSbasicMethod"] / "Case001.nii.gz").unlink()
    out = tmp_path / "study"
    result = cli(["study", "create", "--data", data, *method_args(copied), "--slices", 1000, "--output", out])
    assert result.exit_code == 0, result.output
    assert "1 of 6 case(s) lack an output" in result.output
    cases = {c for c, in _query(out, "SELECT case_id FROM slices")}
    assert "Case001" not in cases and {"Case000", "Case002"} <= cases


def _png(study, name):
    return np.asarray(Image.open(study / "images" / name))


def test_all_images_of_a_slice_share_the_input_window(make_study, study_inputs):
    study = make_study(slices=6)
    data, _ = study_inputs
    rows = _query(study, "SELECT s.case_id, s.z, s.input_image, s.window_low, s.window_high, m.name, o.image "
                         "FROM outputs o JOIN slices s ON s.id = o.slice_id JOIN methods m ON m.id = o.method_id")
    checked = 0
    for case_id, z, input_image, low, high, method, image in rows:
        raw = nib.as_closest_canonical(nib.load(str(data / case_id / f"{case_id}_t2.nii.gz"))).get_fdata()[:, :, z]
        lesion = nib.as_closest_canonical(nib.load(str(data / case_id / f"{case_id}_seg.nii.gz"))).get_fdata()[:, :, z] > 0
        assert (low, high) == pytest.approx(slice_window(raw), rel=1e-6)
        shown, original = _png(study, image), _png(study, input_image)
        if method == "OriginalImagesMethod":
            np.testing.assert_array_equal(shown, original)  # same data, same window: the very same pixels
        elif method == "GVSfullMethod":
            inside = display(lesion)
            np.testing.assert_array_equal(shown[~inside], original[~inside])
            assert np.abs(shown[inside].astype(int) - original[inside]).mean() > 20
            checked += 1
    assert checked == 6


def test_display_is_radiological():
    canonical = np.zeros((4, 3))  # (X: towards the patient's right, Y: towards anterior)
    canonical[3, 2] = 1  # right, anterior
    canonical[0, 0] = 2  # left, posterior
    shown = display(canonical)
    assert shown.shape == (3, 4)
    assert shown[0, 0] == 1  # anterior at the top, the patient's right on the viewer's left
    assert shown[-1, -1] == 2


@pytest.mark.parametrize("use_region", [False, True])
def test_slice_window_takes_region_percentiles(use_region):
    image = np.zeros((40, 50))
    image[5:35, 5:45] = np.linspace(1, 1000, 30 * 40).reshape(30, 40)
    region = np.zeros_like(image, bool)
    region[5:20, 5:45] = True
    low, high = slice_window(image, region if use_region else None)
    values = image[region] if use_region else image[image > 0]
    assert low == pytest.approx(np.percentile(values, 0.5), rel=1e-9)
    assert high == pytest.approx(np.percentile(values, 99.5), rel=1e-9)
    assert 1 <= low < 10 and (480 < high < 510 if use_region else 990 < high <= 1000)


def test_flat_slice_gets_a_usable_window():
    low, high = slice_window(np.full((8, 8), 7.0))
    assert (low, high) == (7.0, 8.0)


@pytest.mark.parametrize("case, message", [
    ("no-equals", "expected NAME=DIR"),
    ("missing-dir", "output folder of method 'X1' not found"),
    ("duplicate", "is given twice"),
    ("bad-name", "method name must start"),
    ("no-common-case", "holds no <case_id>.nii.gz"),
    ("shape-mismatch", "does not match the input"),
    ("existing-output", "pass --overwrite"),
    ("no-data", "input folder not found"),
    ("zero-slices", "at least one slice"),
    ("bad-window", "expected LOW,HIGH"),
    ("inverted-window", "upper bound must be above"),
])
def test_create_refuses_bad_input(cli, study_inputs, tmp_path, case, message):
    data, methods = study_inputs
    good = f"GVSfullMethod={methods['GVSfullMethod']}"
    out = tmp_path / "study"
    extra: list = []
    args = ["--method", good]
    if case == "no-equals":
        args = ["--method", str(methods["GVSfullMethod"])]
    elif case == "missing-dir":
        args = ["--method", f"X1={tmp_path / 'nowhere'}"]
    elif case == "duplicate":
        args = ["--method", good, "--method", good]
    elif case == "bad-name":
        args = ["--method", f"../x={methods['GVSfullMethod']}"]
    elif case == "no-common-case":
        (tmp_path / "other").mkdir()
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / "other" / "Unrelated.nii.gz"))
        args = ["--method", good, "--method", f"Other={tmp_path / 'other'}"]
    elif case == "shape-mismatch":
        bad = tmp_path / "bad"
        shutil.copytree(methods["GVSfullMethod"], bad)
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.diag([-1.0, -1.0, 1.0, 1.0])), str(bad / "Case000.nii.gz"))
        args = ["--method", f"Bad={bad}"]
        extra = ["--slices", 1000]
    elif case == "existing-output":
        out.mkdir()
        (out / "keep.txt").write_text("x")
    elif case == "no-data":
        data = tmp_path / "absent"
    elif case == "zero-slices":
        extra = ["--slices", 0]
    elif case == "bad-window":
        extra = ["--window", "low"]
    elif case == "inverted-window":
        extra = ["--window", "250,-200"]
    result = cli(["study", "create", "--data", data, *args, "--output", out, *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    if case == "existing-output":
        assert (out / "keep.txt").read_text() == "x"
    else:
        assert not (out / "study.sqlite").exists()  # nothing half-made is left behind


def test_overwrite_replaces_a_study(cli, make_study, study_inputs):
    data, methods = study_inputs
    study = make_study(slices=3)
    before = set((study / "images").iterdir())
    result = cli(["study", "create", "--data", data, *method_args(methods), "--slices", 4, "--output", study, "--overwrite"])
    assert result.exit_code == 0, result.output
    after = set((study / "images").iterdir())
    assert len(after) == 4 * (len(METHODS) + 2) and not before & after
    assert len(_query(study, "SELECT id FROM slices")) == 4
