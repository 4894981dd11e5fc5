"""Serve a study with waitress (a production WSGI server, pure Python, threaded), and its private links."""
from __future__ import annotations

import errno
import ipaddress
from pathlib import Path
from typing import Any

from pseudohealthy.errors import UserError
from pseudohealthy.study import db


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(study_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, threads: int = 8) -> Any:
    """A waitress server bound to ``host:port`` (port 0: the system picks a free one); not yet running."""
    from waitress import create_server

    from pseudohealthy.study.app import create_app

    app = create_app(study_dir)
    try:
        return create_server(app, host=host, port=port, threads=threads, ident="study")
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"{host}:{port}: the port is already in use; pass another --port (0 picks a free one).") from None
        raise UserError(f"{host}:{port}: cannot listen there ({exc.strerror or exc}).") from None


def links(study_dir: str | Path, base_url: str) -> tuple[list[tuple[str, str]], str]:
    """``([(rater name, private link)], admin link)`` for a server reachable at ``base_url``."""
    conn = db.connect(study_dir)
    try:
        raters = [(r.name, f"{base_url}/r/{r.token}") for r in db.raters(conn)]
        admin = f"{base_url}/admin/{db.get_meta(conn, 'admin_token')}"
    finally:
        conn.close()
    return raters, admin


def base_url(server: Any, host: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{server.effective_port}"
