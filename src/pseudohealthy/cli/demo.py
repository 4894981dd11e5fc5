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
        working_size: Optional[int] = typer.Option(None, help="Square slice size of the cache; default the recipe's (hybrid: native)."),
        preset: str = typer.Option("hybrid", help="Training recipe: hybrid (default) | small | paper | tiny."),
        train_minutes: float = typer.Option(6.0, help="Wall-clock training budget in minutes."),
        adice_trials: int = typer.Option(1, help="A-Dice trials in the final evaluation (evaluate's default is 3)."),
        evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="End with the full evaluation report."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    ) -> None:
        """Phantom -> the pipeline (preprocess, train within the budget, synthesize, evaluate beside the fills).

        Extra arguments are training overrides (see README, "Recipes"), for example
        train.supervised_weight=0 train.gate_weight=0 for the game alone.
        """
        from pseudohealthy.demo import demo_config, run_demo

        cfg = demo_config(cases, seed, shape, working_size, preset, train_minutes, list(ctx.args), adice_trials, evaluate)
        result = run_demo(output, cfg, echo=typer.echo, progress=not quiet)
        typer.echo("")
        typer.echo(f"test cases: {', '.join(result['test_cases'])}  (pooled over their lesion / normal voxels)")
        typer.echo(f"{'method':18s}{'lesion-region error reduction':>32s}{'normal-tissue PSNR':>22s}")
        for name, score in result["pooled"].items():
            typer.echo(f"{name:18s}{score['lesion_error_reduction']:>32.3f}{score['normal_tissue_psnr_db']:>19.2f} dB")
        if result.get("report"):
            typer.echo(f"evaluation report (GVS beside the mask-aware fills, A-Dice, identity, ground truth): {result['report']}")
        typer.echo(f"total time: {result['timings']['total_s']:.0f} s; figures and settings in {output / 'demo.json'}")
