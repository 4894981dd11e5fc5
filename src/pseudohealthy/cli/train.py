"""`pseudohealthy train`: GVS (or a baseline: `--method vagan|phsgan|antgan`) on a slice cache, into a run
folder; `--resume RUN_DIR` continues one.

Multi-GPU (or multi-process CPU) training: `torchrun --nproc_per_node=N -m pseudohealthy train ...`.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pseudohealthy.cli.common import friendly

ORDER = 40

# Trainable parameters (generator, segmentor) per preset; stated here so that `--help` needs no torch.
# tests/training/test_cli_train.py checks them against the networks the presets build.
PRESET_PARAMETERS = {"hybrid": (4_317_858, 4_317_858), "paper": (11_360_385, 19_585_218), "small": (1_956_929, 4_898_914), "tiny": (49_169, 76_122),
                     "reference": (11_360_385, 17_266_306)}


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.0f}k"


PRESET_HELP = "Network/training preset: " + "; ".join(
    f"{name} (G {_millions(g)}, S {_millions(s)} parameters)" for name, (g, s) in PRESET_PARAMETERS.items()
) + ". Default: the config file's, else hybrid."


def register(app: typer.Typer) -> None:
    @app.command("train", help="Train GVS (generator versus segmentor), or a baseline with --method, on a slice cache into a run folder.")
    @friendly
    def train_command(
        overrides: Optional[List[str]] = typer.Argument(
            None, help="Config overrides key=value, e.g. train.epochs=5 train.seg_loss=ce model.gen_blocks=4.",
            show_default=False),
        data: Optional[Path] = typer.Option(None, "--data", help="Slice cache folder written by `pseudohealthy preprocess`."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run folder to create (config, losses, previews, checkpoints)."),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON RunConfig file (see config.yaml of any run)."),
        preset: Optional[str] = typer.Option(None, "--preset", help=PRESET_HELP),
        method: Optional[str] = typer.Option(None, "--method", help="gvs (default) | vagan | phsgan | antgan: the paper's Table I baselines."),
        device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda (bf16 autocast on CUDA)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (train.seed; default 0)."),
        resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder after its last completed epoch."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace the files of an existing run folder."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per epoch."),
    ) -> None:
        from pseudohealthy.config import resolve_run_config
        from pseudohealthy.errors import UserError, refuse_existing_output
        from pseudohealthy.training.distributed import detect
        from pseudohealthy.training.loop import TrainingInterrupted, train

        extra = list(overrides or [])
        if device is not None:
            extra.append(f"train.device={device}")
        if seed is not None:
            extra.append(f"train.seed={seed}")
        if method is not None:
            extra.append(f"method={method}")
        if resume is not None:
            if config is not None or preset is not None or method is not None or overrides:
                raise UserError(f"{resume}: --resume continues with the run's own config.yaml; drop --config, --preset, --method and overrides.")
            if output is not None and output.resolve() != resume.resolve():
                raise UserError(f"{output}: --output differs from the --resume folder {resume}; give only --resume.")
            if not (resume / "config.yaml").is_file():
                raise UserError(f"{resume}: not a training run folder (no config.yaml).")
            run_config = resolve_run_config(config_file=resume / "config.yaml", overrides=extra,
                                            data=str(data.resolve()) if data is not None else None)
            folder = resume
        else:
            if data is None or output is None:
                raise UserError("train needs --data CACHE_DIR and --output RUN_DIR (or --resume RUN_DIR).")
            # Under torchrun every rank runs this; only rank 0's view of the folder counts, and the
            # others must not refuse the folder rank 0 has just started writing.
            if detect().is_main:
                refuse_existing_output(output, overwrite)
            # An absolute cache path keeps `--resume` working from any directory.
            run_config = resolve_run_config(config_file=config, preset=preset, overrides=extra, data=str(data.resolve()))
            folder = output
        try:
            last = train(run_config, folder, resume=resume is not None, progress=progress)
        except TrainingInterrupted as exc:
            typer.echo(f"interrupted: {exc}", err=True)
            raise typer.Exit(130) from None
        if detect().is_main:
            typer.echo(f"trained: {last}")
