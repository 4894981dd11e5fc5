"""`pseudohealthy healthiness`: the "Healthiness" of Xia et al. for one method's outputs, one number."""
from __future__ import annotations

from pathlib import Path

import typer

from pseudohealthy.cli.common import friendly

ORDER = 62


def register(app: typer.Typer) -> None:
    @app.command("healthiness")
    @friendly
    def healthiness_command(
        data: Path = typer.Option(..., "--data", "-d", help="Data set folder of the pathological inputs with lesion masks."),
        method: str = typer.Option(..., "--method", "-m", help="NAME=DIR (outputs <case_id>.nii.gz), NAME=@original or NAME=@healthy."),
        cases: str = typer.Option(None, "--cases", help="Evaluated cases (comma-separated ids or a splits.json's test cases); the others train the reference segmentor."),
        healthy: Path = typer.Option(None, "--healthy", help="Folder of true healthy volumes <case_id>.nii.gz (for @healthy on data without them)."),
        epochs: int = typer.Option(10, "--epochs", help="Training epochs of the reference segmentor."),
        working_size: int = typer.Option(64, "--working-size", help="Slice size the reference segmentor works at (multiple of 16)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the reference segmentor's training."),
        cache: Path = typer.Option(None, "--cache", help="Folder of cached reference segmentors (default: ~/.cache/pseudohealthy/healthiness)."),
        device: str = typer.Option("cpu", help="cpu | cuda | auto"),
        output: Path = typer.Option(None, "--output", "-o", help="Also write the result and settings to this JSON file."),
        source: str = typer.Option("auto", help="Data layout: auto | brats | lits | folder."),
        modality: str = typer.Option("t2", help="BraTS modality suffix."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
    ) -> None:
        """Healthiness of Xia et al. (higher is healthier): 1 - lesion predicted on outputs / on inputs."""
        from dataclasses import asdict, replace

        from pseudohealthy.evaluation.inputs import parse_cases
        from pseudohealthy.evaluation.outputs import refuse_existing_file, write_json
        from pseudohealthy.evaluation.runner import collect_method_slices, healthiness_training_slices
        from pseudohealthy.metrics.healthiness import HealthinessConfig, HealthinessMetric, reference_segmentor
        from pseudohealthy.device import resolve_device

        cfg = replace(HealthinessConfig(), epochs=epochs, seed=seed, device=str(resolve_device(device)))
        if output is not None:
            refuse_existing_file(output, overwrite)
        slices = collect_method_slices(data, method, parse_cases(cases), working_size, source, modality, healthy)
        images, lesions, trained_on, on_evaluated = healthiness_training_slices(slices.others, slices.evaluated, slices.source, modality, working_size)
        segmentor, cache_file, reused = reference_segmentor(images, lesions, cfg, cache, progress=True)
        metric = HealthinessMetric(segmentor, cfg.device)
        metric.update(slices.synthetic, slices.pathological, slices.lesions)
        result = metric.aggregate()
        if on_evaluated:
            typer.echo("warning: no cases besides the evaluated ones; the reference segmentor was trained on the evaluated cases themselves.", err=True)
        typer.echo(f"Healthiness {slices.spec.name}: {result['healthiness']:.3f} (lesion pixels predicted: {result['predicted_synthetic']} on outputs, "
                   f"{result['predicted_pathological']} on inputs; reference segmentor {'reused from' if reused else 'cached in'} {cache_file})")
        if output is not None:
            write_json(output, {"method": slices.spec.name, "source": slices.spec.source, "data": str(data), "cases": slices.spec.available,
                                "missing": slices.spec.missing, "working_size": working_size, "trained_on": trained_on,
                                "cache_file": str(cache_file), "config": asdict(cfg), **result})
