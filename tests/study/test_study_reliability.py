"""Reliability on a real server process: 20 concurrent raters, and a SIGKILL mid-study."""
from __future__ import annotations

import http.client
import json
import re
import sqlite3
import threading
import time
from urllib.parse import urlsplit

from studydata import METHODS

CRITERIA = ("healthiness", "identity")

pytest_plugins = ["studykit"]  # the study fixtures (tests/study/studykit.py)


class Client:
    """One keep-alive HTTP connection, as a browser tab holds; reconnects after a failure."""

    def __init__(self, base: str) -> None:
        self.host, self.port = urlsplit(base).hostname, urlsplit(base).port
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = self.conn.getresponse()
            return response.status, response.read().decode()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _slice_ids(client: Client, token: str, n: int) -> list[str]:
    ids = []
    for seq in range(1, n + 1):
        status, page = client.request("GET", f"/r/{token}/{seq}")
        assert status == 200
        ids.append(re.search(r'data-slice="([0-9a-f]+)"', page).group(1))
    return ids


def _stored(study) -> tuple[dict[tuple[str, str, int, str], int], int]:
    """((rater, slice public id, that rater's position, criterion) -> score, number of log rows), via the key."""
    conn = sqlite3.connect(str(study / "study.sqlite"))
    try:
        rows = conn.execute(
            "SELECT ra.name, s.public_id, p.position, r.criterion, r.score FROM ratings r "
            "JOIN raters ra ON ra.id = r.rater_id JOIN positions p ON p.rater_id = r.rater_id AND p.output_id = r.output_id "
            "JOIN slices s ON s.id = p.slice_id").fetchall()
        log = conn.execute("SELECT COUNT(*) FROM rating_log").fetchone()[0]
    finally:
        conn.close()
    stored = {(a, b, c, d): e for a, b, c, d, e in rows}
    assert len(stored) == len(rows)  # one row per rater, output and criterion
    return stored, log


def test_twenty_raters_at_once_lose_nothing(make_study, live_server):
    n_slices, n_methods, n_raters = 4, 3, 20
    study = make_study(slices=n_slices, raters=n_raters, names=METHODS[:n_methods])
    server = live_server(study)
    expected: dict[tuple[str, str, int, str], int] = {}
    results: dict[str, dict] = {}
    start = threading.Barrier(n_raters, timeout=30)
    lock = threading.Lock()

    def rater(name: str, token: str) -> None:
        client = Client(server.base)
        done = {"requests": 0, "errors": 0, "posts_ok": 0}
        try:
            start.wait()
            ids = _slice_ids(client, token, n_slices)
            done["requests"] += n_slices
            mine = {}
            for k, public_id in enumerate(ids):
                for position in range(1, n_methods + 1):
                    for c, criterion in enumerate(CRITERIA):
                        mine[(name, public_id, position, criterion)] = 1 + (k + position + c + int(name.split("-")[1])) % 5
            sends = list(mine.items())
            sends += sends[:3]  # a double click on three scales
            changed = (sends[0][0], 1 + sends[0][1] % 5)
            sends.append(changed)  # and a change of mind: the last value must win
            mine[changed[0]] = changed[1]
            for (who, public_id, position, criterion), score in sends:
                status, _ = client.request("POST", f"/r/{token}/api/rating",
                                           {"slice": public_id, "position": position, "criterion": criterion, "score": score})
                done["requests"] += 1
                done["errors"] += status != 200
                done["posts_ok"] += status == 200
            with lock:
                expected.update(mine)
        except Exception as exc:  # counted, and reported by the assertions below
            done["errors"] += 1
            done["exception"] = repr(exc)
        finally:
            client.close()
            results[name] = done

    threads = [threading.Thread(target=rater, args=item, daemon=True) for item in server.raters.items()]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    seconds = time.perf_counter() - began
    assert not any(t.is_alive() for t in threads)
    requests = sum(r["requests"] for r in results.values())
    errors = sum(r["errors"] for r in results.values())
    print(f"\nload test: {n_raters} raters, {requests} requests in {seconds:.2f} s "
          f"({requests / seconds:.0f} requests/s), {errors} error(s)")
    assert len(results) == n_raters and errors == 0, results
    assert requests == n_raters * (n_slices + n_slices * n_methods * 2 + 4)
    stored, log = _stored(study)
    assert len(stored) == n_raters * n_slices * n_methods * 2  # every rating exactly once
    assert stored == expected  # none lost, none mixed up between raters, last value won
    assert log == sum(r["posts_ok"] for r in results.values())


def test_killed_server_keeps_every_acknowledged_rating(study_copy, live_server):
    study = study_copy(slices=4, raters=2)
    server = live_server(study)
    token = server.raters["rater-1"]
    client = Client(server.base)
    ids = _slice_ids(client, token, 4)
    cells = [(public_id, position, criterion) for public_id in ids for position in range(1, len(METHODS) + 1) for criterion in CRITERIA]
    acked: dict[tuple[str, int, str], int] = {}
    enough = threading.Event()

    def rate() -> None:
        worker = Client(server.base)
        for i, (public_id, position, criterion) in enumerate(cells):
            score = 1 + i % 5
            try:
                status, _ = worker.request("POST", f"/r/{token}/api/rating",
                                           {"slice": public_id, "position": position, "criterion": criterion, "score": score})
            except (OSError, http.client.HTTPException):
                break  # the server is gone: stop, as a browser's retries would give up
            if status == 200:
                acked[(public_id, position, criterion)] = score
            if len(acked) >= 12:
                enough.set()
            time.sleep(0.005)
        enough.set()
        worker.close()

    thread = threading.Thread(target=rate, daemon=True)
    thread.start()
    assert enough.wait(timeout=30)
    server.kill()  # SIGKILL: no shutdown code runs
    thread.join(timeout=30)
    client.close()
    assert 12 <= len(acked) < len(cells)  # killed mid-study

    again = live_server(study)
    assert again.raters["rater-1"] == token
    reader = Client(again.base)
    found = {}
    for public_id in ids:
        status, body = reader.request("GET", f"/r/{token}/api/slice/{public_id}")
        assert status == 200
        for position, scores in json.loads(body)["ratings"].items():
            for criterion, score in scores.items():
                found[(public_id, int(position), criterion)] = score
    # Every acknowledged rating survived; at most the one request in flight at the kill is extra.
    assert {k: found.get(k) for k in acked} == acked
    assert len(found) - len(acked) in (0, 1)
    # The study goes on where it stopped.
    status, _ = reader.request("POST", f"/r/{token}/api/rating",
                               {"slice": ids[-1], "position": 1, "criterion": "identity", "score": 5})
    reader.close()
    assert status == 200
