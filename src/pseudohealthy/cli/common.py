"""Shared CLI helpers: turn user errors into one sentence and exit status 2."""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import typer

from pseudohealthy.errors import UserError

EXIT_USER_ERROR = 2


def friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command so that a :class:`UserError` prints ``error: <sentence>`` and exits 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None

    return wrapper


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s: %(message)s")


def warn(message: str) -> None:
    """A warning the user must see (on stderr), e.g. a volume with no lesion kept as healthy."""
    typer.echo(f"warning: {message}", err=True)
