"""``pseudohealthy phantom``: write the built-in synthetic data set with its true healthy volumes."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pseudohealthy.cli.common import friendly

ORDER = 20


def register(app: typer.Typer) -> None:
    @app.command("phantom", help="Write synthetic cases with known healthy volumes (brain T2 in BraTS layout, liver CT in LiTS layout).")
    @friendly
    def phantom(
        output: Path = typer.Option(..., "--output", "-o", help="Folder to write the cases and phantom.json to."),
        cases: int = typer.Option(20, "--cases", "-n", help="Number of cases."),
        seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives the same cases."),
        kind: str = typer.Option("brain", "--kind", help="brain (T2, BraTS layout) | liver (CT, LiTS layout)."),
        shape: Optional[str] = typer.Option(None, "--shape", help="Grid X,Y,Z (same field of view); default 240,240,155 brain, 512,512,64 liver."),
        max_lesions: int = typer.Option(3, "--max-lesions", help="Each case gets 1 to this many lesions."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier phantom in a non-empty output folder."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        import time

        from pseudohealthy.data.phantom import generate_phantom, parse_shape

        grid = parse_shape(shape) if shape is not None else None
        start = time.perf_counter()
        written = generate_phantom(output, cases, seed, kind=kind, shape=grid, overwrite=overwrite, progress=not quiet, max_lesions=max_lesions)
        layout = "BraTS" if kind == "brain" else "LiTS"
        typer.echo(f"{output}: {len(written)} {kind} cases ({layout} layout, with true healthy volumes) in {time.perf_counter() - start:.1f} s")
