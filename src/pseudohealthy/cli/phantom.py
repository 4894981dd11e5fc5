"""``pseudohealthy phantom``: write a synthetic data set with its true healthy volumes.

``--kind brain|liver``: the built-in phantoms; ``--kind inserted --from DATA``: real scans with synthetic
lesions inserted into their lesion-free tissue, in the source's own layout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pseudohealthy.cli.common import friendly
from pseudohealthy.errors import UserError

ORDER = 20


def register(app: typer.Typer) -> None:
    @app.command("phantom", help="Write synthetic cases with known healthy volumes (brain T2 in BraTS layout, liver CT in LiTS layout, "
                                 "or real scans with inserted lesions: --kind inserted --from DATA).")
    @friendly
    def phantom(
        output: Path = typer.Option(..., "--output", "-o", help="Folder to write the cases and phantom.json to."),
        cases: Optional[int] = typer.Option(None, "--cases", "-n", help="Number of cases (brain, liver; default 20)."),
        seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives the same cases."),
        kind: str = typer.Option("brain", "--kind", help="brain (T2, BraTS layout) | liver (CT, LiTS layout) | inserted (lesions inserted into the scans of --from)."),
        source: Optional[Path] = typer.Option(None, "--from", help="inserted: the BraTS or LiTS data set whose scans receive the lesions."),
        copies: Optional[int] = typer.Option(None, "--copies", help="inserted: differently seeded cases per source case (default 1)."),
        fit_intensity: bool = typer.Option(False, "--fit-intensity", help="inserted: fit the lesion intensity ranges to the data set's own lesions."),
        shape: Optional[str] = typer.Option(None, "--shape", help="Grid X,Y,Z (same field of view); default 240,240,155 brain, 512,512,64 liver."),
        max_lesions: int = typer.Option(3, "--max-lesions", help="Each case gets 1 to this many lesions."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier phantom in a non-empty output folder."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        import time

        start = time.perf_counter()
        if kind == "inserted":
            from pseudohealthy.data.phantom.inserted import generate_inserted

            if source is None:
                raise UserError("--kind inserted needs --from DATA_DIR, the BraTS or LiTS data set to insert lesions into.")
            if cases is not None or shape is not None:
                raise UserError("--cases and --shape do not apply to --kind inserted; use --copies (cases per source case).")
            written = generate_inserted(source, output, copies=1 if copies is None else copies, seed=seed, max_lesions=max_lesions,
                                        fit_intensity=fit_intensity, overwrite=overwrite, progress=not quiet)
            typer.echo(f"{output}: {len(written)} cases with inserted lesions (layout of {source}, with true healthy volumes) in {time.perf_counter() - start:.1f} s")
            return
        if source is not None or copies is not None or fit_intensity:
            raise UserError(f"--from, --copies and --fit-intensity apply to --kind inserted only, not to --kind {kind}.")
        from pseudohealthy.data.phantom import generate_phantom, parse_shape

        grid = parse_shape(shape) if shape is not None else None
        written = generate_phantom(output, 20 if cases is None else cases, seed, kind=kind, shape=grid, overwrite=overwrite,
                                   progress=not quiet, max_lesions=max_lesions)
        layout = "BraTS" if kind == "brain" else "LiTS"
        typer.echo(f"{output}: {len(written)} {kind} cases ({layout} layout, with true healthy volumes) in {time.perf_counter() - start:.1f} s")
