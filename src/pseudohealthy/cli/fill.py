"""`pseudohealthy fill`: classical lesion fills (mean, median, biharmonic, Telea, Navier-Stokes) as methods."""
from __future__ import annotations

from pathlib import Path

import typer

from pseudohealthy.cli.common import friendly

ORDER = 56


def register(app: typer.Typer) -> None:
    @app.command("fill")
    @friendly
    def fill(
        data: Path = typer.Option(..., "--data", "-d", help="Data set folder with lesion masks (BraTS, LiTS, nnU-Net layout, phantom)."),
        kind: str = typer.Option(..., "--kind", help="mean | median | biharmonic | biharmonic3 | telea | ns: how the lesion mask is filled from the normal tissue around it."),
        output: Path = typer.Option(..., "--output", "-o", help="Folder for <case_id>.nii.gz (the layout of `pseudohealthy synthesize`) and fill.json."),
        cases: str = typer.Option(None, "--cases", help="Only these cases: comma-separated ids, or a splits.json (its test cases)."),
        seed: int = typer.Option(0, "--seed", help="Recorded in fill.json; the fills themselves are deterministic."),
        source: str = typer.Option("auto", help="Data layout: auto | brats | lits | folder."),
        modality: str = typer.Option("t2", help="BraTS modality suffix."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder's contents."),
    ) -> None:
        """Fill the known lesion masks with a classical method: a yardstick for learned pseudo-healthy synthesis."""
        from pseudohealthy.evaluation.inputs import parse_cases
        from pseudohealthy.inference.fills import write_fill

        written = write_fill(data, kind, output, cases=parse_cases(cases), source=source, modality=modality, seed=seed,
                             overwrite=overwrite)
        typer.echo(f"wrote {len(written)} {kind}-filled volume(s) to {output}")
