"""`pseudohealthy counterfeit`: write counterfeit "pseudo-healthy" volumes (paper Fig. 6) to test metrics."""
from __future__ import annotations

from pathlib import Path

import typer

from pseudohealthy.cli.common import friendly

ORDER = 63


def register(app: typer.Typer) -> None:
    @app.command("counterfeit")
    @friendly
    def counterfeit(
        data: Path = typer.Option(..., "--data", "-d", help="Data set folder with lesion masks (BraTS, LiTS, nnU-Net layout, phantom)."),
        kind: str = typer.Option(..., "--kind", help="mean: lesion filled with the mean of normal tissue; noise: Gaussian noise (variance 0.2, normalised scale) added in the lesion."),
        output: Path = typer.Option(..., "--output", "-o", help="Folder for <case_id>.nii.gz (the layout of `pseudohealthy synthesize`)."),
        cases: str = typer.Option(None, "--cases", help="Only these cases: comma-separated ids, or a splits.json (its test cases)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the noise."),
        source: str = typer.Option("auto", help="Data layout: auto | brats | lits | folder."),
        modality: str = typer.Option("t2", help="BraTS modality suffix."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder's contents."),
    ) -> None:
        """Write counterfeit pseudo-healthy volumes (lesion mean-filled or noised) for testing metrics."""
        from pseudohealthy.evaluation.inputs import parse_cases
        from pseudohealthy.metrics.counterfeits import write_counterfeits

        written = write_counterfeits(data, kind, output, seed=seed, overwrite=overwrite, cases=parse_cases(cases),
                                     source=source, modality=modality)
        typer.echo(f"wrote {len(written)} {kind} counterfeit volume(s) to {output}")
