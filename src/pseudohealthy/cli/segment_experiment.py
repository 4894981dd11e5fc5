"""`pseudohealthy segment-experiment`: does a segmentor trained on enhanced images segment better?"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pseudohealthy.cli.common import friendly

ORDER = 70


def register(app: typer.Typer) -> None:
    @app.command("segment-experiment")
    @friendly
    def segment_experiment(
        data: Path = typer.Option(..., "--data", help="Slice cache written by `pseudohealthy preprocess`."),
        checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="GVS checkpoint or run folder (same preprocessing as the cache)."),
        output: Path = typer.Option(..., "--output", "-o", help="Experiment folder; an interrupted experiment resumes there."),
        alpha: List[float] = typer.Option([0.3, 0.5, 0.7, 1.0], "--alpha", help="Enhancement degrees (alpha 0 is always run)."),
        fraction: List[float] = typer.Option([1.0], "--fraction", help="Fractions of the training cases (Fig. 8b sweeps 0.1 0.3 0.5 1)."),
        loss: List[str] = typer.Option(["ce"], "--loss", help="ce | ce+dice; repeat to sweep (Fig. 8c)."),
        mixup: List[bool] = typer.Option([False], "--mixup/--no-mixup", help="Mixup augmentation."),
        trials: int = typer.Option(3, help="Seeded repetitions per setting."),
        epochs: int = typer.Option(10, help="Segmentor training epochs per run."),
        seg_base: int = typer.Option(16, help="U-Net first-level width."),
        lr: float = typer.Option(1e-3, help="Adam learning rate."),
        batch_size: int = typer.Option(8),
        seed: int = typer.Option(0),
        device: str = typer.Option("auto", help="auto | cpu | cuda"),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Table III: train U-Nets on original vs lesion-enhanced slices, report test Dice per alpha."""
        from pseudohealthy.experiments.segmentation import SegmentExperimentConfig, run_segment_experiment

        cfg = SegmentExperimentConfig(alphas=list(alpha), fractions=list(fraction), losses=list(loss), mixup=list(mixup),
                                      trials=trials, epochs=epochs, seg_base=seg_base, lr=lr, batch_size=batch_size,
                                      seed=seed, device=device)
        result = run_segment_experiment(data, checkpoint, output, cfg, progress=not quiet, echo=typer.echo)
        typer.echo(f"{'variant':<16}{'fraction':>9}{'alpha':>7}{'Dice':>8}{'std':>7}{'change':>8}")
        for r in result["rows"]:
            typer.echo(f"{r['variant']:<16}{r['fraction']:>9g}{r['alpha']:>7.2f}{r['dice_mean']:>8.3f}{r['dice_std']:>7.3f}{r['change_vs_alpha0']:>+8.3f}")
        typer.echo(f"table and report in {output}")
