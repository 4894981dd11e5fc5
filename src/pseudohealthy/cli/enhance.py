"""`pseudohealthy enhance`: lesion contrast enhancement x_en = x_p + alpha (x_p - x_s)."""
from __future__ import annotations

from pathlib import Path

import typer

from pseudohealthy.cli.common import friendly

ORDER = 55


def register(app: typer.Typer) -> None:
    @app.command("enhance")
    @friendly
    def enhance(
        checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="GVS checkpoint (.pt) or a run folder."),
        input: Path = typer.Option(..., "--input", "-i", help="One NIfTI volume, a case folder, or a data set folder."),
        output: Path = typer.Option(..., "--output", "-o", help="Folder; volumes go to alpha-<a>/<case>.nii.gz."),
        alpha: list[float] = typer.Option([0.7], "--alpha", "-a", help="Enhancement degree in [0, 2]; repeat for several."),
        device: str = typer.Option("auto", help="auto | cpu | cuda"),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder's contents."),
    ) -> None:
        """Raise lesion contrast by adding the pathological residual back: x_p + alpha (x_p - x_s)."""
        from pseudohealthy.inference.enhance import check_alpha, run_enhancement

        for a in alpha:
            check_alpha(a)
        written = run_enhancement(checkpoint, input, output, list(alpha), device=device, overwrite=overwrite)
        total = sum(len(v) for v in written.values())
        typer.echo(f"wrote {total} enhanced volume(s) for alpha {', '.join(f'{a:g}' for a in alpha)} to {output}")
