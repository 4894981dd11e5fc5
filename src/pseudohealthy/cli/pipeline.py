"""`pseudohealthy pipeline`: data set -> cache -> training within a time budget -> synthesis -> report."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pseudohealthy.cli.common import friendly

ORDER = 15


def _names(text: Optional[str]) -> Optional[list[str]]:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def register(app: typer.Typer) -> None:
    @app.command("pipeline", help="One command from a data set to a report: preprocess, train the default recipe "
                                  "within a time budget, synthesise the test cases, evaluate them beside the mask-aware fills.")
    @friendly
    def pipeline(
        overrides: Optional[List[str]] = typer.Argument(None, help="Training overrides key=value, e.g. train.lr=5e-4.",
                                                        show_default=False),
        data: Path = typer.Option(..., "--data", "-d", help="Data set folder (BraTS, LiTS or nnU-Net-style layout)."),
        output: Path = typer.Option(..., "--output", "-o", help="Folder for every stage; an interrupted pipeline resumes there."),
        test_cases: Optional[str] = typer.Option(None, "--test-cases", help="Comma-separated test case ids (the rest trains)."),
        splits: Optional[Path] = typer.Option(None, "--splits", help="A splits.json whose train and test lists are used."),
        train_minutes: float = typer.Option(15.0, "--train-minutes", help="Wall-clock training budget; the learning rate decays over it."),
        preset: str = typer.Option("hybrid", "--preset", help="Training recipe: hybrid (default) | small | paper | tiny."),
        working_size: Optional[int] = typer.Option(None, "--working-size", help="In-plane size of the cache; default the recipe's (hybrid: native)."),
        intensity: Optional[str] = typer.Option(None, "--intensity", help="Intensity scaling of the cache: percentile | median | range; default the source's (MR: percentile; CT: HU window)."),
        fills: str = typer.Option("mean,median,biharmonic,biharmonic3,telea", "--fills", help="Mask-aware fills shown beside GVS ('' for none)."),
        adice_trials: int = typer.Option(3, "--adice-trials", help="A-Dice trials per method (0 skips A-Dice)."),
        healthiness: bool = typer.Option(True, "--healthiness/--no-healthiness", help="Also compute Xia et al.'s Healthiness."),
        evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="End with the evaluation report."),
        inserted_copies: int = typer.Option(2, "--inserted-copies", help="Data without true healthy volumes: inserted-lesion copies per test case."),
        train_copies: Optional[int] = typer.Option(None, "--train-copies", help="Inserted-lesion copies per training case (default: enough for 24 training volumes, at least --inserted-copies)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the split, the training and the metrics."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    ) -> None:
        from pseudohealthy.pipeline import PipelineConfig, format_figures, run_pipeline

        cfg = PipelineConfig(preset=preset, train_minutes=train_minutes, seed=seed, working_size=working_size, intensity=intensity,
                             test_cases=_names(test_cases), splits=str(splits) if splits else None,
                             fills=_names(fills) or [], adice_trials=adice_trials, healthiness=healthiness,
                             evaluate=evaluate, overrides=list(overrides or []), inserted_copies=inserted_copies,
                             train_copies=train_copies)
        result = run_pipeline(data, output, cfg, echo=typer.echo, progress=not quiet)
        typer.echo("")
        figures = result["figures"]
        parts = figures.items() if set(figures) == {"inserted", "real"} else [("test cases", figures)]
        for title, table in parts:
            if title == "inserted":
                title = "test cases with inserted lesions (ground truth known)"
            elif title == "real":
                title = "real test cases, their own lesions (no truth: A-Dice, Healthiness, identity)"
            typer.echo(title + ":")
            for line in format_figures(table):
                typer.echo("  " + line)
        if result.get("report"):
            typer.echo(f"report: {result['report']}")
        typer.echo(f"figures and settings: {output / 'pipeline.json'}")
