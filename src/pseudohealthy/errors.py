"""User-facing errors.

Every problem a user can cause (a missing file, a corrupt volume, an existing output folder) is
raised as a :class:`UserError` whose message is one sentence naming the file and what is wrong.
The CLI prints that sentence and exits with status 2; it never shows a traceback for these.
"""
from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input or a refused action; the message is shown to the user as is."""


def refuse_existing_output(path: str | Path, overwrite: bool) -> None:
    """Refuse to write into an existing, non-empty output folder unless ``overwrite`` is set."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())) and not overwrite:
        raise UserError(f"{path}: output folder already exists and is not empty; pass --overwrite to replace its contents.")
