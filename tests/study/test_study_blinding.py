"""Blinding: nothing served names a method or gives the key; orders and names are independent of methods."""
from __future__ import annotations

import random
import re
import sqlite3
from urllib.parse import quote

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from pseudohealthy.study.app import create_app
from pseudohealthy.study.create import assign_orders
from studydata import METHODS

# A chance failure of a correct implementation happens with this probability per test; a method that
# always sits in one position gives p far below it (see test_the_check_detects_a_fixed_order).
P_FLOOR = 1e-5

pytest_plugins = ["studykit"]  # the study fixtures (tests/study/studykit.py)


def _key(study):
    """image name -> method, and (rater, slice public id, position) -> method, read from the database."""
    conn = sqlite3.connect(str(study / "study.sqlite"))
    try:
        by_image = dict(conn.execute("SELECT o.image, m.name FROM outputs o JOIN methods m ON m.id = o.method_id"))
        slice_of_image = dict(conn.execute("SELECT o.image, s.public_id FROM outputs o JOIN slices s ON s.id = o.slice_id"))
        tokens = [t for t, in conn.execute("SELECT token FROM raters ORDER BY id")]
        admin = conn.execute("SELECT value FROM meta WHERE key = 'admin_token'").fetchone()[0]
        n = conn.execute("SELECT COUNT(*) FROM slices").fetchone()[0]
    finally:
        conn.close()
    return by_image, slice_of_image, tokens, admin, n


def _crawl(client, tokens, admin, n):
    """Every page, API answer, image and static file a rater or the admin can reach: (url, response)."""
    seen = []

    def get(url):
        response = client.get(url)
        seen.append((url, response))
        return response

    get("/")
    get(f"/admin/{admin}")
    for asset in ("study.css", "rate.js"):
        get(f"/static/{asset}")
    for token in tokens:
        get(f"/r/{token}")
        get(f"/r/{token}/done")
        for seq in range(1, n + 1):
            page = get(f"/r/{token}/{seq}").get_data(as_text=True)
            public_id = re.search(r'data-slice="([0-9a-f]+)"', page).group(1)
            get(f"/r/{token}/api/slice/{public_id}")
            for src in re.findall(r'<img src="([^"]+)"', page):
                get(src)
    return seen


def _leaks(text, names):
    lowered = text.lower()
    return [n for n in names if n.lower() in lowered or quote(n).lower() in lowered]


def test_nothing_served_names_a_method(make_study):
    study = make_study(slices=10, raters=3)
    by_image, _, tokens, admin, n = _key(study)
    client = create_app(study).test_client()
    # A rater sends a score on each position first, so that API answers with stored scores are crawled too.
    for token in tokens:
        page = client.get(f"/r/{token}/1").get_data(as_text=True)
        public_id = re.search(r'data-slice="([0-9a-f]+)"', page).group(1)
        for position in range(1, len(METHODS) + 1):
            answer = client.post(f"/r/{token}/api/rating", json={"slice": public_id, "position": position, "criterion": "identity", "score": 3})
            assert answer.status_code == 200 and set(answer.get_json()) == {"ok", "complete", "total"}
    seen = _crawl(client, tokens, admin, n)
    assert len(seen) > 3 * 10 * (len(METHODS) + 4)
    names = list(METHODS)
    for url, response in seen:
        assert response.status_code in (200, 302), url
        assert not _leaks(url, names), url
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        assert not _leaks(headers, names), (url, headers)
        if not url.startswith("/static/"):  # the app's own css/js may be cached; study data carry no file times
            assert "ETag" not in response.headers and "Last-Modified" not in response.headers, url
        body = response.get_data()
        assert not _leaks(body.decode("latin-1"), names), url
        if response.mimetype == "image/png":
            assert re.search(rb"[tiz]TXt|eXIf", body) is None  # no text or Exif chunk in any PNG
        if response.mimetype == "application/json":
            payload = response.get_json()
            assert set(payload) <= {"ok", "slice", "ratings", "complete", "total"}
    # The database, config and image folder are never served, whatever the path.
    for path in ("/study.sqlite", "/study.yaml", "/static/../study.sqlite", f"/r/{tokens[0]}/img/../study.sqlite",
                 f"/r/{tokens[0]}/img/study.sqlite", f"/r/{tokens[0]}/img/{'0' * 24}.png", "/images/"):
        response = client.get(path)
        assert response.status_code in (403, 404), path
        assert b"SQLite" not in response.get_data()


def _contingency(rows, categories):
    """Counts of (method, category) pairs as a (methods, categories) table."""
    table = np.zeros((len(METHODS), len(categories)), int)
    for method, category in rows:
        table[METHODS.index(method), categories.index(category)] += 1
    return table


def test_served_positions_and_image_names_are_independent_of_methods(make_study):
    study = make_study(slices=100, raters=4)  # all 34 lesion slices of the tiny cases
    by_image, slice_of_image, tokens, _, n = _key(study)
    client = create_app(study).test_client()
    positions, name_ranks, per_slice_orders = [], [], {}
    for token in tokens:
        for seq in range(1, n + 1):
            page = client.get(f"/r/{token}/{seq}").get_data(as_text=True)
            shown = [src.rsplit("/", 1)[1] for src in re.findall(r'<img src="([^"]+)"', page)]
            outputs = shown[1:-1]  # the input comes first and the annotation last
            assert shown[0] not in by_image and shown[-1] not in by_image and len(outputs) == len(METHODS)
            methods = [by_image[name] for name in outputs]
            assert sorted(methods) == sorted(METHODS)
            positions += [(m, p) for p, m in enumerate(methods)]
            if token == tokens[0]:  # names are per image, the same for every rater: count each slice once
                ranked = sorted(outputs)
                name_ranks += [(by_image[name], ranked.index(name)) for name in outputs]
            per_slice_orders.setdefault(slice_of_image[outputs[0]], []).append(tuple(methods))
    categories = list(range(len(METHODS)))
    for rows, count in ((positions, len(tokens) * n), (name_ranks, n)):
        table = _contingency(rows, categories)
        assert table.sum() == count * len(METHODS)
        assert chi2_contingency(table).pvalue > P_FLOOR, table
    # Raters do not share one order: two raters see the same order on a slice about 1 time in 120.
    same = np.mean([len(set(orders)) == 1 for orders in per_slice_orders.values()])
    assert same < 0.2
    # Image names are unique across the whole study, never reused between slices or methods.
    assert len(by_image) == n * len(METHODS)


def test_the_check_detects_a_fixed_order():
    """The chi-square check has the power to see a leak: a fixed order fails it by far."""
    rows = [(m, p) for _ in range(100) for p, m in enumerate(METHODS)]
    assert chi2_contingency(_contingency(rows, list(range(len(METHODS))))).pvalue < 1e-50


@pytest.mark.parametrize("seed", [0, 1])
def test_assign_orders_is_uniform_over_many_slices(seed):
    rng = random.Random(seed)
    slices = list(range(600))
    outputs = {s: [(s, m) for m in range(len(METHODS))] for s in slices}
    sequence, positions = assign_orders(rng, slices, outputs, rater_ids=[1, 2, 3])
    assert len(sequence) == 3 * 600 and len(positions) == 3 * 600 * len(METHODS)
    table = np.zeros((len(METHODS), len(METHODS)), int)
    for _, _, position, (_, method) in positions:
        table[method, position - 1] += 1
    assert table.sum(axis=1).tolist() == [1800] * len(METHODS)
    assert chi2_contingency(table).pvalue > 1e-3  # seeded here, so this never flakes
    # each rater's slice order is a fresh permutation, not the creation order
    firsts = [[s for r, seq, s in sequence if r == rater] for rater in (1, 2, 3)]
    assert all(sorted(f) == slices for f in firsts) and firsts[0] != slices and firsts[0] != firsts[1]
