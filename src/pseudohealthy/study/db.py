"""The study database (SQLite, one file in the study folder): slices, methods, raters, orders, ratings.

The key that maps what a rater sees (a slice and a position on its page) to a method lives only
here. The file runs in WAL mode with ``synchronous=FULL`` and every request commits its own
transaction, so a killed server loses no rating it has acknowledged. All SQL is parameterised.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pseudohealthy.errors import UserError

DB_NAME = "study.sqlite"
CRITERIA = ("healthiness", "identity")
SCORES = (1, 2, 3, 4, 5)
SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE methods (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, source TEXT NOT NULL);
CREATE TABLE slices (
    id INTEGER PRIMARY KEY,
    public_id TEXT NOT NULL UNIQUE,
    case_id TEXT NOT NULL,
    z INTEGER NOT NULL,
    input_image TEXT NOT NULL UNIQUE,
    annotation_image TEXT NOT NULL UNIQUE,
    window_low REAL NOT NULL,
    window_high REAL NOT NULL,
    UNIQUE (case_id, z)
);
CREATE TABLE outputs (
    id INTEGER PRIMARY KEY,
    slice_id INTEGER NOT NULL REFERENCES slices(id),
    method_id INTEGER NOT NULL REFERENCES methods(id),
    image TEXT NOT NULL UNIQUE,
    UNIQUE (slice_id, method_id)
);
CREATE TABLE raters (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, token TEXT NOT NULL UNIQUE);
-- each rater's own order of the slices (seq 1..N)
CREATE TABLE sequence (
    rater_id INTEGER NOT NULL REFERENCES raters(id),
    seq INTEGER NOT NULL,
    slice_id INTEGER NOT NULL REFERENCES slices(id),
    PRIMARY KEY (rater_id, seq),
    UNIQUE (rater_id, slice_id)
);
-- each rater's own order of the methods on each slice (position 1..M): the key
CREATE TABLE positions (
    rater_id INTEGER NOT NULL REFERENCES raters(id),
    slice_id INTEGER NOT NULL REFERENCES slices(id),
    position INTEGER NOT NULL,
    output_id INTEGER NOT NULL REFERENCES outputs(id),
    PRIMARY KEY (rater_id, slice_id, position),
    UNIQUE (rater_id, output_id)
);
-- one row per rater, output and criterion: a repeated click updates it (last value wins)
CREATE TABLE ratings (
    rater_id INTEGER NOT NULL REFERENCES raters(id),
    output_id INTEGER NOT NULL REFERENCES outputs(id),
    criterion TEXT NOT NULL CHECK (criterion IN ('healthiness', 'identity')),
    score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    updated_at TEXT NOT NULL,
    PRIMARY KEY (rater_id, output_id, criterion)
);
-- every accepted click, in order (an audit trail; Table II reads `ratings` only)
CREATE TABLE rating_log (
    id INTEGER PRIMARY KEY,
    rater_id INTEGER NOT NULL,
    output_id INTEGER NOT NULL,
    criterion TEXT NOT NULL,
    score INTEGER NOT NULL,
    at TEXT NOT NULL
);
"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def db_path(study_dir: str | Path) -> Path:
    return Path(study_dir) / DB_NAME


def connect(study_dir: str | Path, create: bool = False) -> sqlite3.Connection:
    """Open the study database in autocommit mode (transactions are explicit: ``BEGIN IMMEDIATE``).

    Refuses a folder without a study unless ``create`` is set.
    """
    path = db_path(study_dir)
    if not create and not path.is_file():
        raise UserError(f"{study_dir}: not a study folder (no {DB_NAME}); create one with `pseudohealthy study create`.")
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the request is answered, so even a power cut keeps it.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        row = None if create else conn.execute("SELECT value FROM meta WHERE key = ?", ("schema",)).fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise UserError(f"{path}: not a readable study database ({exc}).") from None
    if not create and row is None:
        conn.close()
        raise UserError(f"{path}: study database has no schema version; it was not written by `pseudohealthy study create`.")
    return conn


def init_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("schema", SCHEMA_VERSION))


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else row["value"]


@dataclass
class Rater:
    id: int
    name: str
    token: str


def rater_by_token(conn: sqlite3.Connection, token: str) -> Rater | None:
    row = conn.execute("SELECT id, name, token FROM raters WHERE token = ?", (token,)).fetchone()
    return None if row is None else Rater(row["id"], row["name"], row["token"])


def raters(conn: sqlite3.Connection) -> list[Rater]:
    return [Rater(r["id"], r["name"], r["token"]) for r in conn.execute("SELECT id, name, token FROM raters ORDER BY id")]


def n_slices(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM slices").fetchone()[0])


def n_methods(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM methods").fetchone()[0])


def slice_at(conn: sqlite3.Connection, rater_id: int, seq: int) -> sqlite3.Row | None:
    """The slice a rater sees at step ``seq`` (1-based) of their own order."""
    return conn.execute(
        "SELECT s.id, s.public_id, s.input_image, s.annotation_image FROM sequence q "
        "JOIN slices s ON s.id = q.slice_id WHERE q.rater_id = ? AND q.seq = ?",
        (rater_id, seq),
    ).fetchone()


def slice_by_public_id(conn: sqlite3.Connection, public_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT id, public_id FROM slices WHERE public_id = ?", (public_id,)).fetchone()


def page_outputs(conn: sqlite3.Connection, rater_id: int, slice_id: int) -> list[dict]:
    """The outputs of one slice in this rater's order, with this rater's saved scores.

    Returns ``[{"position", "image", "healthiness", "identity"}]``; no method is named.
    """
    rows = conn.execute(
        "SELECT p.position, o.image, o.id AS output_id FROM positions p JOIN outputs o ON o.id = p.output_id "
        "WHERE p.rater_id = ? AND p.slice_id = ? ORDER BY p.position",
        (rater_id, slice_id),
    ).fetchall()
    scores = rater_scores(conn, rater_id, slice_id)
    return [
        {"position": r["position"], "image": r["image"], **{c: scores.get(r["position"], {}).get(c) for c in CRITERIA}}
        for r in rows
    ]


def rater_scores(conn: sqlite3.Connection, rater_id: int, slice_id: int) -> dict[int, dict[str, int]]:
    """This rater's scores on one slice, keyed by their own positions: ``{position: {criterion: score}}``."""
    found: dict[int, dict[str, int]] = {}
    for r in conn.execute(
        "SELECT p.position, r.criterion, r.score FROM positions p JOIN ratings r "
        "ON r.rater_id = p.rater_id AND r.output_id = p.output_id WHERE p.rater_id = ? AND p.slice_id = ?",
        (rater_id, slice_id),
    ):
        found.setdefault(r["position"], {})[r["criterion"]] = r["score"]
    return found


def output_at(conn: sqlite3.Connection, rater_id: int, slice_id: int, position: int) -> int | None:
    row = conn.execute(
        "SELECT output_id FROM positions WHERE rater_id = ? AND slice_id = ? AND position = ?",
        (rater_id, slice_id, position),
    ).fetchone()
    return None if row is None else int(row["output_id"])


def save_rating(conn: sqlite3.Connection, rater_id: int, output_id: int, criterion: str, score: int) -> None:
    """Store one score: insert or replace this rater's value for (output, criterion), in one transaction."""
    at = now()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT INTO ratings (rater_id, output_id, criterion, score, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (rater_id, output_id, criterion) DO UPDATE SET score = excluded.score, updated_at = excluded.updated_at",
            (rater_id, output_id, criterion, score, at),
        )
        conn.execute(
            "INSERT INTO rating_log (rater_id, output_id, criterion, score, at) VALUES (?, ?, ?, ?, ?)",
            (rater_id, output_id, criterion, score, at),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def complete_seqs(conn: sqlite3.Connection, rater_id: int) -> set[int]:
    """The steps (seq) at which this rater has given every score of the slice."""
    needed = n_methods(conn) * len(CRITERIA)
    rows = conn.execute(
        "SELECT q.seq FROM sequence q JOIN positions p ON p.rater_id = q.rater_id AND p.slice_id = q.slice_id "
        "LEFT JOIN ratings r ON r.rater_id = p.rater_id AND r.output_id = p.output_id "
        "WHERE q.rater_id = ? GROUP BY q.seq HAVING COUNT(r.score) = ?",
        (rater_id, needed),
    )
    return {int(r["seq"]) for r in rows}


def progress(conn: sqlite3.Connection) -> list[dict]:
    """Each rater's progress for the admin page: complete slices, scores given, last activity; no scores."""
    total = n_slices(conn)
    out = []
    for rater in raters(conn):
        row = conn.execute(
            "SELECT COUNT(*) AS n, MAX(updated_at) AS last FROM ratings WHERE rater_id = ?", (rater.id,)
        ).fetchone()
        out.append({
            "name": rater.name,
            "complete": len(complete_seqs(conn, rater.id)),
            "total": total,
            "scores": int(row["n"]),
            "scores_total": total * n_methods(conn) * len(CRITERIA),
            "last": row["last"],
        })
    return out
