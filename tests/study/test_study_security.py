"""Tokens, scoping and refusals of the rater app; parameterised SQL; loopback by default; rater page."""
from __future__ import annotations

import ast
import re
import sqlite3
from pathlib import Path

import pytest

import pseudohealthy.study as study_package
from pseudohealthy.study.app import create_app
from studydata import METHODS

pytest_plugins = ["studykit"]  # the study fixtures (tests/study/studykit.py)


def _db(study, sql, args=()):
    conn = sqlite3.connect(str(study / "study.sqlite"))
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


@pytest.fixture
def app_study(study_copy):
    """A 4-slice, 2-rater study with a test client; returns (study, client, [tokens], admin token)."""
    study = study_copy(slices=4, raters=2)
    tokens = [t for t, in _db(study, "SELECT token FROM raters ORDER BY id")]
    admin = _db(study, "SELECT value FROM meta WHERE key = 'admin_token'")[0][0]
    return study, create_app(study).test_client(), tokens, admin


def _slice_id(client, token, seq=1):
    page = client.get(f"/r/{token}/{seq}").get_data(as_text=True)
    return re.search(r'data-slice="([0-9a-f]+)"', page).group(1)


def _rate(client, token, **body):
    return client.post(f"/r/{token}/api/rating", json=body)


def _counts(study):
    return _db(study, "SELECT COUNT(*) FROM ratings")[0][0], _db(study, "SELECT COUNT(*) FROM rating_log")[0][0]


@pytest.mark.parametrize("path", [
    "/r/", "/r", "/r/WRONGTOKEN", "/r/WRONGTOKEN/1", "/r/WRONGTOKEN/api/slice/00", "/r/WRONGTOKEN/img/" + "0" * 24 + ".png",
    "/r/' OR '1'='1", "/r/%27%20OR%201=1--/1", "/admin", "/admin/", "/admin/WRONG", "/admin/' OR 1=1--",
])
def test_wrong_or_missing_token_gets_403(app_study, path):
    study, client, tokens, admin = app_study
    response = client.get(path)
    assert response.status_code == 403, path
    assert tokens[0] not in response.get_data(as_text=True)


def test_tokens_are_scoped(app_study):
    study, client, (a, b), admin = app_study
    assert client.get(f"/admin/{a}").status_code == 403  # a rater is no admin
    assert client.get(f"/r/{admin}/1").status_code == 403  # the admin token is no rater token
    assert client.get(f"/r/{a[:-1]}/1").status_code == 403  # a near miss is a miss
    public_id = _slice_id(client, a)
    assert _rate(client, a, slice=public_id, position=2, criterion="healthiness", score=5).status_code == 200
    mine = client.get(f"/r/{a}/api/slice/{public_id}").get_json()
    theirs = client.get(f"/r/{b}/api/slice/{public_id}").get_json()
    assert mine["ratings"] == {"2": {"healthiness": 5}}
    assert theirs["ratings"] == {}
    # b's click on the same slice and position is b's own row: a's score is untouched.
    assert _rate(client, b, slice=public_id, position=2, criterion="healthiness", score=1).status_code == 200
    assert client.get(f"/r/{a}/api/slice/{public_id}").get_json()["ratings"] == {"2": {"healthiness": 5}}
    rows = _db(study, "SELECT ra.name, r.score FROM ratings r JOIN raters ra ON ra.id = r.rater_id ORDER BY ra.name")
    assert rows == [("rater-1", 5), ("rater-2", 1)]
    # The admin page shows progress, never scores.
    admin_page = client.get(f"/admin/{admin}").get_data(as_text=True)
    assert "rater-1" in admin_page and "1 of 40" in admin_page
    assert "healthiness" not in admin_page.lower() and not any(m in admin_page for m in METHODS)


@pytest.mark.parametrize("body, status, message", [
    ({"position": 1, "criterion": "healthiness", "score": 0}, 400, "score must be an integer from 1 to 5"),
    ({"position": 1, "criterion": "healthiness", "score": 6}, 400, "score must be an integer from 1 to 5"),
    ({"position": 1, "criterion": "identity", "score": -3}, 400, "score must be an integer from 1 to 5"),
    ({"position": 1, "criterion": "identity", "score": "4"}, 400, "score must be an integer from 1 to 5"),
    ({"position": 1, "criterion": "identity", "score": 4.0}, 400, "score must be an integer from 1 to 5"),
    ({"position": 1, "criterion": "identity", "score": True}, 400, "score must be an integer from 1 to 5"),
    ({"position": 1, "criterion": "identity", "score": None}, 400, "score must be an integer from 1 to 5"),
    ({"position": 1, "criterion": "beauty", "score": 3}, 400, "criterion must be one of healthiness, identity"),
    ({"position": 0, "criterion": "identity", "score": 3}, 400, "position must be an integer from 1 to 5"),
    ({"position": 6, "criterion": "identity", "score": 3}, 400, "position must be an integer from 1 to 5"),
    ({"position": "1", "criterion": "identity", "score": 3}, 400, "position must be an integer from 1 to 5"),
    ({"slice": "ffffffffffffffff", "position": 1, "criterion": "identity", "score": 3}, 404, "unknown slice id"),
    ({"slice": "' OR '1'='1", "position": 1, "criterion": "identity", "score": 3}, 404, "unknown slice id"),
    ({"slice": 7, "position": 1, "criterion": "identity", "score": 3}, 404, "unknown slice id"),
    ({"slice": None, "position": 1, "criterion": "identity", "score": 3}, 404, "unknown slice id"),
])
def test_bad_ratings_are_refused_and_nothing_is_stored(app_study, body, status, message):
    study, client, (a, _), _ = app_study
    body = {"slice": _slice_id(client, a), **body}
    response = _rate(client, a, **body)
    assert response.status_code == status
    assert message in response.get_json()["error"]
    assert _counts(study) == (0, 0)


@pytest.mark.parametrize("kind", ["form", "text", "list", "huge"])
def test_non_json_bodies_are_refused(app_study, kind):
    study, client, (a, _), _ = app_study
    public_id = _slice_id(client, a)
    url = f"/r/{a}/api/rating"
    if kind == "form":  # what a cross-site HTML form could send
        response = client.post(url, data={"slice": public_id, "position": "1", "criterion": "identity", "score": "3"})
    elif kind == "text":
        response = client.post(url, data="slice=x", content_type="text/plain")
    elif kind == "list":
        response = client.post(url, json=[public_id, 1, "identity", 3])
    else:
        response = client.post(url, json={"slice": public_id, "position": 1, "criterion": "identity", "score": 3, "pad": "x" * 10000})
    assert response.status_code in (400, 413)
    assert _counts(study) == (0, 0)


def test_repeated_rating_is_stored_once_and_last_value_wins(app_study):
    study, client, (a, _), _ = app_study
    public_id = _slice_id(client, a)
    for score in (2, 2, 4):
        assert _rate(client, a, slice=public_id, position=3, criterion="identity", score=score).status_code == 200
    assert _db(study, "SELECT criterion, score FROM ratings") == [("identity", 4)]
    assert [s for s, in _db(study, "SELECT score FROM rating_log ORDER BY id")] == [2, 2, 4]


def test_rater_page_flow_resume_progress_and_done(app_study):
    study, client, (a, _), _ = app_study
    response = client.get(f"/r/{a}")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/r/{a}/1")
    page = client.get(f"/r/{a}/1").get_data(as_text=True)
    assert "Slice 1 of 4" in page
    assert "Are the pathological regions in harmony with the normal ones?" in page
    assert "Does the output belong to the same subject as the input?" in page
    assert [w in page for w in ("5</span><span class=\"word\">excellent", "1</span><span class=\"word\">bad")] == [True, True]
    alts = re.findall(r'alt="([^"]+)"', page)
    assert alts == ["Input", *[f"Output {i}" for i in range(1, len(METHODS) + 1)], "Lesion annotation"]
    assert page.count('type="radio"') == len(METHODS) * 2 * 5
    # Rate slice 1 completely: resuming then lands on slice 2, and the page shows the saved scores.
    public_id = _slice_id(client, a)
    for position in range(1, len(METHODS) + 1):
        for criterion in ("healthiness", "identity"):
            answer = _rate(client, a, slice=public_id, position=position, criterion=criterion, score=position)
    assert answer.get_json() == {"ok": True, "complete": 1, "total": 4}
    assert client.get(f"/r/{a}").headers["Location"].endswith(f"/r/{a}/2")
    again = client.get(f"/r/{a}/1").get_data(as_text=True)
    assert again.count(" checked") == len(METHODS) * 2
    assert 'name="p3-identity" value="3" checked' in again
    assert "1</span> of 4 complete" in again
    done = client.get(f"/r/{a}/done").get_data(as_text=True)
    assert "1 of 4 slices are complete" in done and f"/r/{a}/2" in done
    assert client.get(f"/r/{a}/5").status_code == 404
    assert client.get(f"/r/{a}/0").status_code == 404


def test_all_sql_is_parameterised():
    """Every execute() in the study package gets a constant SQL string; values travel as parameters."""
    calls = 0
    for path in Path(study_package.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        constants = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("execute", "executemany", "executescript"):
                calls += 1
                sql = node.args[0]
                ok = (isinstance(sql, ast.Constant) and isinstance(sql.value, str)) or (isinstance(sql, ast.Name) and sql.id in constants)
                assert ok, f"{path.name}:{node.lineno}: SQL built at run time"
    assert calls > 15


def test_server_binds_to_loopback_by_default(study_copy):
    from typer.main import get_command

    from pseudohealthy.cli.main import app
    from pseudohealthy.study.server import make_server

    serve = get_command(app).commands["study"].commands["serve"]
    assert {p.name: p.default for p in serve.params}["host"] == "127.0.0.1"
    server = make_server(study_copy(), port=0)
    try:
        assert server.effective_host == "127.0.0.1" and int(server.effective_port) > 0
    finally:
        server.close()


@pytest.mark.parametrize("args, message", [
    (["serve", "{missing}"], "not a study folder"),
    (["export", "{missing}"], "not a study folder"),
    (["serve", "{study}", "--port", "{busy}"], "already in use"),
])
def test_cli_refuses_bad_study_folders_and_ports(cli, study_copy, tmp_path, args, message):
    import socket

    study = study_copy()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        values = {"missing": tmp_path / "nothing", "study": study, "busy": busy.getsockname()[1]}
        result = cli(["study", *[a.format(**values) for a in args]])
    finally:
        busy.close()
    assert result.exit_code == 2, result.output
    assert message in result.output
