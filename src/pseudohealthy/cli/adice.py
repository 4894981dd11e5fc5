"""`pseudohealthy adice`: the A-Dice of one method's outputs (paper eq. 8), one number with its spread."""
from __future__ import annotations

from pathlib import Path

import typer

from pseudohealthy.cli.common import friendly

ORDER = 61


def register(app: typer.Typer) -> None:
    @app.command("adice")
    @friendly
    def adice_command(
        data: Path = typer.Option(..., "--data", "-d", help="Data set folder of the pathological inputs with lesion masks."),
        method: str = typer.Option(..., "--method", "-m", help="NAME=DIR (outputs <case_id>.nii.gz), NAME=@original or NAME=@healthy."),
        cases: str = typer.Option(None, "--cases", help="Only these cases: comma-separated ids, or a splits.json (its test cases)."),
        healthy: Path = typer.Option(None, "--healthy", help="Folder of true healthy volumes <case_id>.nii.gz (for @healthy on data without them)."),
        trials: int = typer.Option(3, "--trials", help="Repeated trials (seeds seed, seed+1, ...)."),
        epochs: int = typer.Option(20, "--epochs", help="E of eq. 8."),
        working_size: int = typer.Option(64, "--working-size", help="Slice size the U-Net trains at (multiple of 16)."),
        seed: int = typer.Option(0, "--seed"),
        device: str = typer.Option("cpu", help="cpu | cuda | auto"),
        output: Path = typer.Option(None, "--output", "-o", help="Also write the result, curves and settings to this JSON file."),
        source: str = typer.Option("auto", help="Data layout: auto | brats | lits | folder."),
        modality: str = typer.Option("t2", help="BraTS modality suffix."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
    ) -> None:
        """A-Dice of one method (lower is healthier): mean +- std over trials."""
        from dataclasses import replace

        from pseudohealthy.evaluation.inputs import parse_cases
        from pseudohealthy.evaluation.outputs import refuse_existing_file, write_json
        from pseudohealthy.evaluation.runner import collect_method_slices
        from pseudohealthy.metrics.adice import ADiceConfig, adice, check_config
        from pseudohealthy.device import resolve_device

        cfg = replace(ADiceConfig(), trials=trials, epochs=epochs, seed=seed, device=str(resolve_device(device)))
        check_config(cfg)
        if output is not None:
            refuse_existing_file(output, overwrite)
        slices = collect_method_slices(data, method, parse_cases(cases), working_size, source, modality, healthy)
        result = adice(slices.synthetic, slices.lesions, cfg, progress=True, label=f"A-Dice {slices.spec.name}")
        if slices.spec.missing:
            typer.echo(f"warning: method {slices.spec.name} lacks {len(slices.spec.missing)} case(s): {', '.join(slices.spec.missing)}", err=True)
        typer.echo(f"A-Dice {slices.spec.name}: {result.mean:.3f} ± {result.std:.3f} ({cfg.trials} trial(s) of {cfg.epochs} epochs, "
                   f"{result.n_slices} lesion slices, {result.seconds_per_trial:.1f} s per trial)")
        if output is not None:
            write_json(output, {"method": slices.spec.name, "source": slices.spec.source, "data": str(data),
                                "cases": slices.spec.available, "missing": slices.spec.missing,
                                "working_size": working_size, "adice": result.as_dict()})
