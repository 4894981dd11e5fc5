"""`pseudohealthy table1`: the paper's Table I measured in this toolkit (GVS, basic GVS, VA-GAN, PHS-GAN,
ANT-GAN with one CPU time budget each), beside the paper's numbers; resumes where it stopped."""
from __future__ import annotations

from pathlib import Path

import typer

from pseudohealthy.cli.common import friendly

ORDER = 65


def register(app: typer.Typer) -> None:
    @app.command("table1", context_settings={"allow_extra_args": True})
    @friendly
    def table1_command(
        ctx: typer.Context,
        data: Path = typer.Option(..., "--data", "-d", help="Data set folder with lesion masks (e.g. a phantom), or a slice cache made from one."),
        output: Path = typer.Option(..., "--output", "-o", help="Folder for caches, runs, syntheses, evaluation and table1.md/html; a rerun resumes there."),
        minutes_per_method: float = typer.Option(3.0, "--minutes-per-method", help="CPU minutes of training per method (process CPU time)."),
        preset: str = typer.Option("small", "--preset", help="Network preset of every method: tiny | small | paper."),
        working_size: int = typer.Option(64, "--working-size", help="Slice size when DATA is a raw data set (multiple of 16)."),
        batch_size: int = typer.Option(8, "--batch-size", help="Training batch size of every method."),
        adice_trials: int = typer.Option(1, "--adice-trials", help="A-Dice trials per method (0 skips A-Dice)."),
        fills: str = typer.Option("mean,median,biharmonic,biharmonic3,telea", "--fills", help="Classical fills evaluated beside the methods, comma-separated; 'none' for none."),
        seed: int = typer.Option(0, "--seed", help="Seed of the split, training and evaluation."),
        device: str = typer.Option("cpu", "--device", help="cpu | cuda | auto."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Start over in an output folder that holds a Table I run with other settings."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    ) -> None:
        """Train, synthesise and evaluate GVS, basic GVS, VA-GAN, PHS-GAN and ANT-GAN; write Table I.

        Extra arguments are config overrides for every run, after each row's own, for example
        phsgan.lr=1e-4 (a method's section is read only by that method).
        """
        from pseudohealthy.table1 import Table1Config, run_table1

        cfg = Table1Config(minutes_per_method=minutes_per_method, preset=preset, working_size=working_size,
                           batch_size=batch_size, seed=seed, adice_trials=adice_trials, device=device,
                           overrides=tuple(ctx.args), fills=tuple(k.strip() for k in fills.split(",") if k.strip() not in ("", "none")))
        run_table1(data, output, cfg, echo=typer.echo, progress=not quiet, overwrite=overwrite)
        typer.echo((output / "table1.md").read_text())
