"""The rater page in a real browser: Debian's headless Chromium driven by Playwright for Python.

Rates by mouse and keyboard, reloads, finishes, exports and checks Table II against the key. Skips
where Chromium or Playwright is absent, except in CI (``CI=true``), where that is a failure.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from pseudohealthy.study.export import export_study
from studydata import METHODS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).parent / "artifacts"

pytest_plugins = ["studykit"]  # the study fixtures (tests/study/studykit.py)


def _browser_or_skip():
    """Playwright's sync API, or a skip (a failure in CI) saying what is missing."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright for Python is not installed (pip install -e '.[test]')"
    if reason is None and not CHROMIUM.is_file():
        reason = f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"{reason}; CI must run the browser test (.ci/run installs chromium)")
        pytest.skip(reason)
    return sync_playwright


def _key(study):
    """(seq, position) -> method for rater-1."""
    conn = sqlite3.connect(str(study / "study.sqlite"))
    try:
        return {(q, p): m for q, p, m in conn.execute(
            "SELECT q.seq, p.position, m.name FROM sequence q JOIN positions p ON p.rater_id = q.rater_id AND p.slice_id = q.slice_id "
            "JOIN outputs o ON o.id = p.output_id JOIN methods m ON m.id = o.method_id WHERE q.rater_id = 1")}
    finally:
        conn.close()


def test_rate_reload_finish_and_export_in_chromium(make_study, live_server, tmp_path):
    sync_playwright = _browser_or_skip()
    from playwright.sync_api import expect
    names = METHODS[:3]
    study = make_study(slices=2, raters=1, names=names)
    server = live_server(study)
    link = f"{server.base}/r/{server.raters['rater-1']}"
    given: dict[tuple[int, int, str], int] = {}  # (seq, position, criterion) -> score

    def saved(page, count):
        expect(page.locator("fieldset.scale.saved")).to_have_count(count, timeout=15000)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(15000)
            page.goto(link)
            assert page.url.endswith("/1")  # resumed at the first slice
            assert "Slice 1 of 2" in page.inner_text("#step")
            captions = page.locator("figcaption").all_inner_texts()
            assert captions == ["Input", "Output 1", "Output 2", "Output 3", "Lesion annotation"]

            # Output 1 by mouse: click the labels "4" (healthiness) and "2" (identity).
            page.click('fieldset[data-position="1"][data-criterion="healthiness"] label[title="4 good"]')
            page.click('fieldset[data-position="1"][data-criterion="identity"] label[title="2 poor"]')
            given |= {(1, 1, "healthiness"): 4, (1, 1, "identity"): 2}
            saved(page, 2)
            # The rest by keyboard: the highlight moves on after each score.
            page.click('fieldset[data-position="2"][data-criterion="healthiness"] legend')
            for (position, criterion), key in zip([(2, "healthiness"), (2, "identity"), (3, "healthiness"), (3, "identity")], "5314"):
                page.keyboard.press(key)
                given[(1, position, criterion)] = int(key)
            saved(page, 6)
            assert page.inner_text("#complete") == "1"
            screenshot = tmp_path / "rating-page.png"
            page.screenshot(path=str(screenshot), full_page=True)
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(screenshot, ARTIFACTS / "rating-page.png")

            # Reload: every score is still there.
            page.reload()
            for (seq, position, criterion), score in given.items():
                assert page.is_checked(f'input[name="p{position}-{criterion}"][value="{score}"]'), (position, criterion)

            # Next slice by keyboard, rate it by keyboard only, finish.
            page.keyboard.press("ArrowRight")
            page.wait_for_url("**/2")
            for i, key in enumerate("123451"):
                page.keyboard.press(key)
                given[(2, 1 + i // 2, ("healthiness", "identity")[i % 2])] = int(key)
            saved(page, 6)
            page.keyboard.press("ArrowRight")
            page.wait_for_url("**/done")
            assert "Done: thank you" in page.inner_text("h1")

            # Go back and change one score: the last value wins.
            page.click("text=Back to the last slice")
            page.wait_for_url("**/2")
            page.click('fieldset[data-position="3"][data-criterion="identity"] label[title="3 fair"]')
            given[(2, 3, "identity")] = 3
            page.wait_for_selector('fieldset[data-position="3"][data-criterion="identity"].saved')
            page.keyboard.press("ArrowLeft")
            page.wait_for_url("**/1")
            assert page.is_checked('input[name="p3-identity"][value="4"]')
        finally:
            browser.close()

    assert screenshot.stat().st_size > 10_000
    result = export_study(study)
    key = _key(study)
    assert result.stored == result.expected == 2 * 3 * 2
    for row in result.table:
        for criterion in ("healthiness", "identity"):
            mine = [score for (seq, position, c), score in given.items() if c == criterion and key[(seq, position)] == row["method"]]
            assert row[f"{criterion}_mean"] == pytest.approx(sum(mine) / len(mine)), (row["method"], criterion)
    html = (result.folder / "table2.html").read_text()
    assert all(name in html for name in names)


@pytest.mark.parametrize("ci, outcome", [("", pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_missing_chromium_skips_here_but_fails_in_ci(monkeypatch, tmp_path, ci, outcome):
    monkeypatch.setitem(globals(), "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="chromium is not installed"):
        _browser_or_skip()
