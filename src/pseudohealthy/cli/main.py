"""The ``pseudohealthy`` command: one small module per command, registered here.

Command modules import nothing heavy at module level (torch, nibabel, nilearn are imported inside
the command), so ``pseudohealthy --help`` is fast.
"""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="pseudohealthy",
    help="Pseudo-healthy synthesis of medical images (Generator Versus Segmentor, GVS).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



def _command_modules() -> list:
    """Every module of this package that defines ``register(app)``, sorted by its ``ORDER`` (help order)."""
    import pkgutil

    import pseudohealthy.cli as package

    modules = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in ("main", "common") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"pseudohealthy.cli.{info.name}")
        if hasattr(module, "register"):
            modules.append(module)
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


for _module in _command_modules():
    _module.register(app)


@app.callback()
def _root() -> None:
    """Pseudo-healthy synthesis of medical images (Generator Versus Segmentor, GVS)."""


def main() -> None:
    app()
