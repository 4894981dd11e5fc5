"""`pseudohealthy demo`: the main job on the built-in phantom, end to end, on a CPU in minutes."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pseudohealthy.cli.common import friendly

ORDER = 10


def register(app: typer.Typer) -> None:
    @app.command("demo", context_settings={"allow_extra_args": True})
    @friendly
    def demo(
        ctx: typer.Context,
        output: Path = typer.Option(Path("runs/demo"), "--output", "-o", help="Folder for every stage's outputs; an interrupted demo resumes there."),
        cases: int = typer.Option(20, help="Phantom brain cases."),
        seed: int = typer.Option(0, help="Seed for the phantom, the split and training."),
        shape: str = typer.Option("96,96,64", help="Phantom grid X,Y,Z (the brain fills it)."),
        working_size: int = typer.Option(64, help="Square slice size for training (divisible by 16)."),
        preset: str = typer.Option("small", help="Network preset: tiny | small | paper."),
        epochs: int = typer.Option(14, help="GVS training epochs."),
        max_steps_per_epoch: Optional[int] = typer.Option(None, help="Cap on steps per epoch (quick runs)."),
        adice_trials: int = typer.Option(1, help="A-Dice trials in the final evaluation (evaluate's default is 3)."),
        evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="End with the full evaluation report."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    ) -> None:
        """Phantom -> preprocess -> train GVS -> synthesize the test cases -> score and evaluate them.

        Extra arguments are training overrides applied after the demo's own (see README, "The demo"),
        for example train.residual_region=image train.lesion_fill_weight=0 train.lambda_residual=10 for
        the paper's loss.
        """
        from pseudohealthy.demo import demo_config, run_demo

        cfg = demo_config(cases, seed, shape, working_size, preset, epochs, max_steps_per_epoch, list(ctx.args), adice_trials, evaluate)
        result = run_demo(output, cfg, echo=typer.echo, progress=not quiet)
        typer.echo("")
        typer.echo(f"test cases: {', '.join(result['test_cases'])}")
        typer.echo(f"lesion-region error reduction vs true healthy: {result['lesion_error_reduction']:.3f}  (target >= 0.4)")
        typer.echo(f"normal-tissue PSNR x_s vs x_p:                 {result['normal_tissue_psnr_db']:.2f} dB  (target >= 30 dB)")
        if result.get("report"):
            typer.echo(f"evaluation report (A-Dice, identity, ground truth, counterfeits): {result['report']}")
        typer.echo(f"total time: {result['timings']['total_s']:.0f} s; figures and settings in {output / 'demo.json'}")
