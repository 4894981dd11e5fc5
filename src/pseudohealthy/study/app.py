"""The rater and admin web app (Flask).

URLs carry a secret token as their first part: ``/r/<rater token>/...`` for a rater, ``/admin/<admin
token>`` for the study's owner. Every request checks its token before anything else; a wrong or
missing token gets 403. A rater addresses outputs only by their own positions on a slice, so no
URL, page, image name, header or API answer carries a method name or the key. Each rating is saved
by its own request in its own transaction (``db.save_rating``), so a reload or a killed server loses
nothing that was acknowledged.
"""
from __future__ import annotations

import re
import secrets
import sqlite3
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, g, jsonify, redirect, render_template, request, url_for

from pseudohealthy.study import db
from pseudohealthy.study.create import IMAGES_DIR

IMAGE_NAME = re.compile(r"^[0-9a-f]{24}\.png$")
SCALE = ((5, "excellent"), (4, "good"), (3, "fair"), (2, "poor"), (1, "bad"))
# The paper's wording (section V-D) for the two 5-point scales.
QUESTIONS = {
    "healthiness": ("Healthiness", "Are the pathological regions in harmony with the normal ones? "
                    "From 5 to 1 the healthiness declines step by step."),
    "identity": ("Subject identity", "Does the output belong to the same subject as the input? "
                 "From 5 to 1 the subject identity is erased step by step."),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never send it elsewhere
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class ApiError(Exception):
    """A refused API request: HTTP status and one sentence for the rater's page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(study_dir: str | Path) -> Flask:
    """The app for one study folder (checked now, so a bad folder fails before serving)."""
    study_dir = Path(study_dir).resolve()
    conn = db.connect(study_dir)  # raises UserError for a folder without a study
    admin_token = db.get_meta(conn, "admin_token") or ""
    conn.close()
    images = study_dir / IMAGES_DIR

    app = Flask(__name__, static_url_path="/static")
    app.config.update(STUDY_DIR=str(study_dir), MAX_CONTENT_LENGTH=4096)
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True

    def conn_() -> sqlite3.Connection:
        if "conn" not in g:
            g.conn = db.connect(study_dir)
        return g.conn

    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        conn = g.pop("conn", None)
        if conn is not None:
            conn.close()

    @app.before_request
    def _guard() -> Any:
        """Check the token in the first part of the path before any view runs."""
        parts = request.path.strip("/").split("/")
        if parts[0] == "r":
            token = parts[1] if len(parts) > 1 else ""
            rater = db.rater_by_token(conn_(), token) if token else None
            if rater is None:
                return _forbidden()
            g.rater = rater
        elif parts[0] == "admin":
            token = parts[1] if len(parts) > 1 else ""
            if not (token and admin_token and secrets.compare_digest(token.encode(), admin_token.encode())):
                return _forbidden()
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if request.path.startswith("/static/"):
            response.headers["Cache-Control"] = "public, max-age=300"
        return response

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return jsonify(ok=False, error=exc.message), exc.status

    @app.errorhandler(404)
    def _not_found(_exc: Exception) -> Response:
        if request.path.split("/")[3:4] == ["api"]:
            return jsonify(ok=False, error="not found"), 404
        return render_template("message.html", title="Not found", text="There is no such page."), 404

    @app.get("/")
    def index() -> Any:
        return render_template("message.html", title="Reader study",
                               text="Open the private link you were given to rate images.")

    @app.get("/r/<token>")
    @app.get("/r/<token>/")
    def resume(token: str) -> Any:
        """Go to the first slice this rater has not finished, or to the done page."""
        conn = conn_()
        complete = db.complete_seqs(conn, g.rater.id)
        for seq in range(1, db.n_slices(conn) + 1):
            if seq not in complete:
                return redirect(url_for("rate", token=token, seq=seq))
        return redirect(url_for("done", token=token))

    @app.get("/r/<token>/<int:seq>")
    def rate(token: str, seq: int) -> Any:
        conn = conn_()
        total = db.n_slices(conn)
        row = db.slice_at(conn, g.rater.id, seq)
        if row is None:
            abort(404)
        return render_template(
            "rate.html", token=token, seq=seq, total=total, slice=row, complete=len(db.complete_seqs(conn, g.rater.id)),
            outputs=db.page_outputs(conn, g.rater.id, row["id"]), scale=SCALE, questions=QUESTIONS,
            prev_url=url_for("rate", token=token, seq=seq - 1) if seq > 1 else "",
            next_url=url_for("rate", token=token, seq=seq + 1) if seq < total else url_for("done", token=token),
        )

    @app.get("/r/<token>/done")
    def done(token: str) -> Any:
        conn = conn_()
        total = db.n_slices(conn)
        complete = db.complete_seqs(conn, g.rater.id)
        missing = [s for s in range(1, total + 1) if s not in complete]
        return render_template("done.html", token=token, total=total, complete=len(complete), missing=missing)

    @app.post("/r/<token>/api/rating")
    def save(token: str) -> Any:
        """Store one score: ``{"slice": public id, "position": 1..M, "criterion", "score": 1..5}``."""
        conn = conn_()
        body = request.get_json(silent=True) if request.is_json else None
        if not isinstance(body, dict):
            raise ApiError(400, "send a JSON object with slice, position, criterion and score.")
        public_id, position, criterion, score = (body.get(k) for k in ("slice", "position", "criterion", "score"))
        if criterion not in db.CRITERIA:
            raise ApiError(400, f"criterion must be one of {', '.join(db.CRITERIA)}.")
        if not _is_int(score) or score not in db.SCORES:
            raise ApiError(400, "score must be an integer from 1 to 5.")
        if not isinstance(public_id, str) or (row := db.slice_by_public_id(conn, public_id)) is None:
            raise ApiError(404, "unknown slice id.")
        n = db.n_methods(conn)
        if not _is_int(position) or not 1 <= position <= n:
            raise ApiError(400, f"position must be an integer from 1 to {n}.")
        output_id = db.output_at(conn, g.rater.id, row["id"], position)
        if output_id is None:  # cannot happen for a valid slice and position; refuse rather than guess
            raise ApiError(404, "unknown slice id.")
        db.save_rating(conn, g.rater.id, output_id, criterion, score)
        return jsonify(ok=True, complete=len(db.complete_seqs(conn, g.rater.id)), total=db.n_slices(conn))

    @app.get("/r/<token>/api/slice/<public_id>")
    def saved(token: str, public_id: str) -> Any:
        """This rater's saved scores on one slice, keyed by their own positions."""
        conn = conn_()
        row = db.slice_by_public_id(conn, public_id)
        if row is None:
            raise ApiError(404, "unknown slice id.")
        scores = db.rater_scores(conn, g.rater.id, row["id"])
        return jsonify(ok=True, slice=public_id, ratings={str(k): v for k, v in sorted(scores.items())})

    @app.get("/r/<token>/img/<name>")
    def image(token: str, name: str) -> Any:
        """A study image by its neutral name; only names the database knows are served."""
        if not IMAGE_NAME.match(name):
            abort(404)
        conn = conn_()
        known = conn.execute(
            "SELECT 1 FROM outputs WHERE image = ? UNION ALL SELECT 1 FROM slices WHERE input_image = ? OR annotation_image = ?",
            (name, name, name),
        ).fetchone()
        path = images / name
        if known is None or not path.is_file():
            abort(404)
        # Plain bytes, no ETag or Last-Modified: file times must not hint at the order of rendering.
        response = Response(path.read_bytes(), mimetype="image/png")
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    @app.get("/admin/<token>")
    def admin(token: str) -> Any:
        return render_template("admin.html", rows=db.progress(conn_()))

    return app


def _forbidden() -> Response:
    if "/api/" in request.path:
        response = jsonify(ok=False, error="this link is not valid.")
    else:
        response = Response(render_template("message.html", title="Forbidden", text="This link is not valid."), mimetype="text/html")
    response.status_code = 403
    return response


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
