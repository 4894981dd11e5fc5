"""``pseudohealthy import-reference``: a checkpoint of the paper's reference code -> a run folder."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pseudohealthy.cli.common import friendly

ORDER = 45


def register(app: typer.Typer) -> None:
    @app.command("import-reference")
    @friendly
    def import_reference(
        checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Reference-code checkpoint (.pth with 'reconstucter' and 'segmenter')."),
        output: Path = typer.Option(..., "--output", "-o", help="Run folder to write (config.yaml, checkpoints/last.pt)."),
        working_size: Optional[int] = typer.Option(None, "--working-size", help="Slice size for synthesis (multiple of 16); default: the input's own (the reference's)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder's contents."),
    ) -> None:
        """Map the reference networks onto the `reference` preset, exactly; synthesize, enhance and evaluate then use the folder."""
        from pseudohealthy.interop.reference_checkpoint import import_reference_checkpoint

        summary = import_reference_checkpoint(checkpoint, output, overwrite=overwrite, working_size=working_size)
        typer.echo(
            f"{output}: imported {checkpoint.name} (reference epoch {summary['reference_epoch']}), generator "
            f"{summary['generator_parameters']:,} and segmentor {summary['segmentor_parameters']:,} parameters, "
            f"{summary['dropped_norm_cancelled_biases']} instance-norm-cancelled biases dropped"
        )
