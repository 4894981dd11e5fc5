"""`pseudohealthy evaluate`: every metric for every method, metrics.json / metrics.csv and an HTML report."""
from __future__ import annotations

from pathlib import Path

import typer

from pseudohealthy.cli.common import friendly

ORDER = 60


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    @friendly
    def evaluate_command(
        data: Path = typer.Option(..., "--data", "-d", help="Data set folder of the pathological inputs with lesion masks (the phantom carries true healthy volumes)."),
        method: list[str] = typer.Option([], "--method", "-m", help="NAME=DIR (outputs <case_id>.nii.gz), NAME=@original (the inputs) or NAME=@healthy (true healthy volumes); repeat (optional with --fills)."),
        output: Path = typer.Option(..., "--output", "-o", help="Folder for metrics.json, metrics.csv, config.yaml and report.html."),
        cases: str = typer.Option(None, "--cases", help="Evaluated cases: comma-separated ids, or a splits.json (its test cases); default all."),
        healthy: Path = typer.Option(None, "--healthy", help="Folder of true healthy volumes <case_id>.nii.gz, for data that does not carry them."),
        fills: str = typer.Option(None, "--fills", help="Also evaluate classical lesion fills, comma-separated (mean, median, biharmonic, biharmonic3, telea, ns), as methods fill-<kind>; written to OUTPUT/fills/<kind>."),
        segmentor: list[str] = typer.Option([], "--segmentor", help="NAME=CHECKPOINT: Dice of a GVS checkpoint's segmentor on the pathological slices (Fig. 8a); repeat."),
        adice_trials: int = typer.Option(3, "--adice-trials", help="A-Dice trials per method (0 skips A-Dice)."),
        adice_epochs: int = typer.Option(20, "--adice-epochs", help="A-Dice epochs E (eq. 8)."),
        healthiness: bool = typer.Option(True, "--healthiness/--no-healthiness", help="Also compute the Healthiness of Xia et al."),
        healthiness_cache: Path = typer.Option(None, "--healthiness-cache", help="Folder of cached reference segmentors (default: ~/.cache/pseudohealthy/healthiness)."),
        working_size: int = typer.Option(64, "--working-size", help="Slice size the metrics' segmentors work at (multiple of 16)."),
        identity_slices: str = typer.Option("lesion", "--identity-slices", help="lesion: identity on the slices with lesion (paper); all: every slice."),
        figure_slices: int = typer.Option(4, "--figure-slices", help="Rows of the comparison figure."),
        seed: int = typer.Option(0, "--seed", help="Seed of the figure's slices, the A-Dice trials and the reference segmentor."),
        device: str = typer.Option("cpu", help="cpu | cuda | auto (for the metrics' segmentors)."),
        source: str = typer.Option("auto", help="Data layout: auto | brats | lits | folder."),
        modality: str = typer.Option("t2", help="BraTS modality suffix."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder's contents."),
    ) -> None:
        """Evaluate methods' outputs: identity, A-Dice, Healthiness, ground truth; writes an HTML report."""
        from dataclasses import replace

        from pseudohealthy.errors import UserError
        from pseudohealthy.evaluation.inputs import parse_cases
        from pseudohealthy.evaluation.runner import EvaluationSettings, evaluate
        from pseudohealthy.evaluation.tables import table_rows
        from pseudohealthy.metrics.adice import ADiceConfig
        from pseudohealthy.metrics.healthiness import HealthinessConfig
        from pseudohealthy.device import resolve_device

        dev = str(resolve_device(device))
        checkpoints = {}
        for item in segmentor:
            name, sep, path = item.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise UserError(f"--segmentor {item!r}: expected NAME=CHECKPOINT.")
            checkpoints[name.strip()] = path.strip()
        settings = EvaluationSettings(
            working_size=working_size, seed=seed,
            adice=replace(ADiceConfig(), trials=adice_trials, epochs=adice_epochs, seed=seed, device=dev) if adice_trials > 0 else None,
            healthiness=replace(HealthinessConfig(), seed=seed, device=dev) if healthiness else None,
            healthiness_cache=str(healthiness_cache) if healthiness_cache is not None else None,
            identity_slices=identity_slices, figure_slices=figure_slices, source=source, modality=modality, device=dev,
            fills=[k.strip() for k in (fills or "").split(",") if k.strip()],
        )
        results = evaluate(data, list(method), output, settings, cases=parse_cases(cases), healthy_dir=healthy,
                           segmentors=checkpoints, overwrite=overwrite)
        header, rows = table_rows(results)
        widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
        for row in [header] + rows:
            typer.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
        for note in results["notes"]:
            typer.echo(f"note: {note}", err=True)
        typer.echo(f"report: {output / 'report.html'}")
