"""`pseudohealthy synthesize`: pathological NIfTI volumes in, pseudo-healthy NIfTI volumes out."""
from __future__ import annotations

from pathlib import Path

import typer

from pseudohealthy.cli.common import friendly

ORDER = 50


def register(app: typer.Typer) -> None:
    @app.command("synthesize")
    @friendly
    def synthesize(
        checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="GVS checkpoint (.pt) or a run folder (uses checkpoints/last.pt)."),
        input: Path = typer.Option(..., "--input", "-i", help="One NIfTI volume, a case folder, or a data set folder (BraTS, LiTS, nnU-Net layout)."),
        output: Path = typer.Option(..., "--output", "-o", help="Folder for <case>.nii.gz, <case>_residual.nii.gz and <case>.png."),
        device: str = typer.Option("auto", help="auto | cpu | cuda"),
        batch_size: int = typer.Option(16, help="Slices per generator forward."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder's contents."),
        adapt_steps: int = typer.Option(None, "--adapt-steps", help="Steps the gate first trains on each volume, with lesions "
                                        "pasted into its tissue (default: the checkpoint's model.gen_gate_adapt_steps; 0: off)."),
        adapt_silent_pixels: int = typer.Option(None, "--adapt-silent-pixels", help="While adapting, the loss is silent where "
                                                "the gate first opens, grown by this many pixels (default 2)."),
        adapt_silent_slices: int = typer.Option(None, "--adapt-silent-slices", help="...and carried to this many slices above "
                                                "and below (default 0; 2 with 5 pixels: more lesion found, less normal tissue kept, "
                                                "docs/quality.md)."),
        adapt_keep: float = typer.Option(None, "--adapt-keep", help="After adapting, a part of the gate's first opening "
                                         "that the adapted gate still opens on at least this share of is kept whole (default: "
                                         "the checkpoint's model.gen_gate_adapt_keep; 0: off; needs the volume fill)."),
        adapt_silent_growth: float = typer.Option(None, "--adapt-silent-growth", help="While adapting, the silent region "
                                                  "also grows each part of the gate's first opening by this share of its own "
                                                  "radius in mm (default: the checkpoint's model.gen_gate_adapt_growth; 0: off; "
                                                  "keeps a large lesion's faint rim from being taught as normal tissue)."),
        volume_fill: bool = typer.Option(None, "--volume-fill/--slice-fill", help="Fill the gate's opening from the whole "
                                         "volume (3-D) or slice by slice (default: the checkpoint's model.gen_fill_volume)."),
        fill_pull: str = typer.Option(None, "--fill-pull", help="mean | median: how the volume fill pools the tissue around "
                                      "the opening (default: the checkpoint's model.gen_fill_pull; median is robust to a "
                                      "bright ventricle or sulcus on the rim)."),
    ) -> None:
        """Synthesise pseudo-healthy volumes (input geometry, header and units kept); no mask needed."""
        from pseudohealthy.inference.synthesize import run_synthesis

        written = run_synthesis(checkpoint, input, output, device=device, overwrite=overwrite, batch_size=batch_size,
                                adapt_steps=adapt_steps, adapt_silent=(adapt_silent_pixels, adapt_silent_slices), volume_fill=volume_fill,
                                adapt_keep=adapt_keep, adapt_growth=adapt_silent_growth, fill_pull=fill_pull)
        typer.echo(f"wrote {len(written)} pseudo-healthy volume(s) to {output}")
