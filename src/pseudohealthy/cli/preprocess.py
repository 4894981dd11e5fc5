"""``pseudohealthy preprocess``: raw volumes -> slice cache (+ fingerprint and split)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pseudohealthy.cli.common import friendly, warn

ORDER = 30


def _summary_lines(summary: dict) -> list[str]:
    size_mb = summary["cache_bytes"] / 2**20
    h, w = summary["working_size"]
    return [
        f"{summary['output']}: {summary['status']}",
        f"  cases {summary['cases']} ({summary['train_cases']} train / {summary['test_cases']} test), "
        f"slices {summary['slices']} ({summary['lesion_slices']} with lesion), size {h}x{w}",
        f"  cache {size_mb:.1f} MiB, {summary['seconds']:.1f} s",
    ]


def register(app: typer.Typer) -> None:
    @app.command("preprocess", help="Read raw volumes (BraTS, LiTS, nnU-Net folder) or the reference code's .npy slices once into a slice cache with a fingerprint and a split.")
    @friendly
    def preprocess(
        input: Path = typer.Option(..., "--input", "-i", help="Data set folder (BraTS, LiTS, nnU-Net raw layout, or reference .npy case folders)."),
        output: Path = typer.Option(..., "--output", "-o", help="Cache folder to write."),
        source: Optional[str] = typer.Option(None, "--source", help="brats | lits | folder | reference-npy | auto (default: the config's, else auto)."),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON file with PreprocessConfig fields."),
        modality: Optional[str] = typer.Option(None, "--modality", help="BraTS modality (t2, flair, t1, t1ce; 2023+: t2w, ...)."),
        grade: Optional[str] = typer.Option(None, "--grade", help="BraTS HGG or LGG, where the layout has them."),
        working_size: Optional[int] = typer.Option(None, "--working-size", help="Square in-plane size (multiple of 16); default keeps the original."),
        resize_mode: Optional[str] = typer.Option(None, "--resize-mode", help="resize | crop."),
        normalization: Optional[str] = typer.Option(None, "--normalization", help="volume | zscore-slice | reference (default: volume; reference for reference-npy)."),
        test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help="Held-out fraction of cases (default 0.1)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the train/test split (default 0)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Write into an existing folder that is not a cache of ours."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
        overrides: Optional[List[str]] = typer.Argument(None, help="More config fields as key=value (e.g. slice_margin=10)."),
    ) -> None:
        from pseudohealthy.config import read_mapping, resolve_preprocess_config
        from pseudohealthy.data.cache import preprocess_dataset
        from pseudohealthy.errors import UserError

        if source is None:
            source = (read_mapping(config).get("source") if config is not None else None) or "auto"
        if source not in ("brats", "lits", "folder", "reference-npy", "auto"):
            raise UserError(f"--source {source!r} is unknown; choose one of brats, lits, folder, reference-npy, auto.")
        settled = (read_mapping(config) if config is not None else {}).keys() | {o.split("=")[0] for o in overrides or []}
        if source == "reference-npy" and normalization is None and "normalization" not in settled:
            normalization = "reference"  # exactly the slices the reference code trained on, unless asked otherwise
        cfg = resolve_preprocess_config(
            config, overrides, source=source, modality=modality, grade=grade, working_size=working_size,
            resize_mode=resize_mode, normalization=normalization, test_fraction=test_fraction, split_seed=seed,
        )
        summary = preprocess_dataset(input, output, cfg, overwrite=overwrite, progress=not quiet, warn=warn)
        for line in _summary_lines(summary):
            typer.echo(line)
