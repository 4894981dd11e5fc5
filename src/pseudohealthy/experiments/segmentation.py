"""The downstream segmentation experiment of the paper (Table III, Fig. 8b/8c).

A U-Net is trained to segment lesions on original slices (alpha = 0) and on slices enhanced with
``x_en = x + alpha (x - G(x))`` (see :mod:`pseudohealthy.inference.enhance` for the sign), and tested on
the test cases' slices enhanced with the same alpha. Options the paper studies are config fields and
can be swept: the training fraction (Fig. 8b), CE + Dice loss and mixup (Fig. 8c).

Work is done on the slice cache (normalised scale); since enhancement is linear, enhancing in the
normalised scale equals enhancing in input units and normalising afterwards. The generator runs once
over every cached slice (``synthetic.npy`` in the output folder); every (variant, alpha, fraction,
trial) run then writes ``runs/<key>.json`` when finished, so an interrupted experiment recomputes
nothing that was done.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from pseudohealthy.errors import UserError

# Preprocessing keys that change the cached pixels; the split keys do not.
PIXEL_KEYS = ("source", "modality", "lesion_labels", "region_labels", "intensity", "clip_percentile", "clip_range",
              "normalization", "working_size", "resize_mode", "slice_margin")


@dataclass
class SegmentExperimentConfig:
    """Defaults: Table III's alphas, 3 trials; a small U-Net so the phantom experiment runs on a CPU."""

    alphas: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 1.0])  # alpha 0 is always added
    fractions: list[float] = field(default_factory=lambda: [1.0])  # Fig. 8b: 0.1, 0.3, 0.5, 1.0
    losses: list[str] = field(default_factory=lambda: ["ce"])  # ce | ce+dice (Fig. 8c)
    mixup: list[bool] = field(default_factory=lambda: [False])  # Fig. 8c
    mixup_beta: float = 0.4  # mixing weight ~ Beta(b, b)
    trials: int = 3
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3  # Adam (0.9, 0.99), as the paper's GVS networks
    seg_base: int = 16
    seg_depth: int = 4
    lesion_only: bool = True  # train and test on lesion-containing slices (as GVS training)
    seed: int = 0
    device: str = "auto"


@dataclass
class RunSpec:
    loss: str
    mixup: bool
    alpha: float
    fraction: float
    trial: int

    @property
    def key(self) -> str:
        return f"{self.loss.replace('+', '-')}_mixup-{int(self.mixup)}_alpha-{self.alpha:.2f}_frac-{self.fraction:.2f}_trial-{self.trial}"

    @property
    def variant(self) -> str:
        return self.loss + (" + mixup" if self.mixup else "")


def check_config(cfg: SegmentExperimentConfig) -> None:
    from pseudohealthy.inference.enhance import check_alpha

    for alpha in cfg.alphas:
        check_alpha(alpha)
    for fraction in cfg.fractions:
        if not 0.0 < fraction <= 1.0:
            raise UserError(f"training fraction {fraction} must lie in (0, 1].")
    for loss in cfg.losses:
        if loss not in ("ce", "ce+dice"):
            raise UserError(f"loss {loss!r} is unknown; choose ce or ce+dice.")
    if cfg.trials < 1 or cfg.epochs < 1:
        raise UserError("trials and epochs must be at least 1.")


def run_specs(cfg: SegmentExperimentConfig) -> list[RunSpec]:
    alphas = [0.0] + [a for a in cfg.alphas if a != 0.0]
    return [RunSpec(loss, mix, alpha, frac, trial)
            for loss, mix, frac, alpha, trial in itertools.product(cfg.losses, cfg.mixup, cfg.fractions, alphas, range(cfg.trials))]


def check_compatible(cache_dir: Path, checkpoint: Path, fingerprint: dict[str, Any], preprocess: dict[str, Any]) -> None:
    """Refuse a checkpoint whose preprocessing differs from the cache's (the generator would see other pixels)."""
    cached = fingerprint.get("config", {})
    diffs = [k for k in PIXEL_KEYS if cached.get(k) != preprocess.get(k)]
    if diffs:
        detail = "; ".join(f"{k}: cache {cached.get(k)!r} vs checkpoint {preprocess.get(k)!r}" for k in diffs)
        raise UserError(f"{checkpoint}: preprocessing differs from the cache {cache_dir / 'fingerprint.json'} ({detail}).")


def synthesize_cache(generator: torch.nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 32,
                     progress: bool = True) -> np.ndarray:
    """``G(x)`` for every cached slice ``(N, H, W)``; float32."""
    from tqdm.auto import tqdm

    from pseudohealthy.inference.synthesize import generate_slices

    if getattr(generator, "context", 0):
        # cache rows run through every case: a slice's row neighbours need not be its neighbours in z
        raise UserError("this experiment runs the generator over cache rows, which a generator that sees neighbouring "
                        "slices (model.gen_gate_context > 0) cannot take; synthesise whole volumes instead.")
    out = np.empty(images.shape, np.float32)
    chunk = 512
    for start in tqdm(range(0, len(images), chunk), desc="generator over cache", unit="chunk", disable=not progress):
        out[start : start + chunk] = generate_slices(generator, np.asarray(images[start : start + chunk], np.float32), device, batch_size)
    return out


def enhanced_images(images: np.ndarray, synthetic: np.ndarray, regions: np.ndarray, alpha: float) -> np.ndarray:
    """``x + alpha (x - x_s)`` with the residual kept inside the region (background unchanged)."""
    residual = np.where(regions > 0, images - synthetic, 0.0)
    return (images + np.float32(alpha) * residual).astype(np.float32)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of the lesion class; ``target`` (B, H, W) probabilities of lesion."""
    prob = logits.softmax(dim=1)[:, 1]
    inter = (prob * target).sum(dim=(1, 2))
    denom = prob.sum(dim=(1, 2)) + target.sum(dim=(1, 2))
    return (1.0 - (2 * inter + eps) / (denom + eps)).mean()


def _loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Two-class CE with soft targets (so mixup's mixed labels work), plus soft Dice for ``ce+dice``."""
    probs = torch.stack([1.0 - target, target], dim=1)
    loss = F.cross_entropy(logits, probs)
    if kind == "ce+dice":
        loss = loss + soft_dice_loss(logits, target)
    return loss


def train_segmentor(images: np.ndarray, lesions: np.ndarray, cfg: SegmentExperimentConfig, spec: RunSpec,
                    device: torch.device, seed: int, progress: Callable[[str], None] | None = None) -> torch.nn.Module:
    """Train a fresh U-Net on ``(N, H, W)`` slices; seeded so a run replays."""
    from pseudohealthy.config import ModelConfig
    from pseudohealthy.models import build_segmentor

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_segmentor(ModelConfig(seg_base=cfg.seg_base, seg_depth=cfg.seg_depth, seg_max_channels=cfg.seg_base * 8)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    x_all = torch.from_numpy(np.ascontiguousarray(images, np.float32))[:, None]
    y_all = torch.from_numpy(np.ascontiguousarray(lesions, np.float32))
    n = len(x_all)
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(n)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            if len(idx) < 2 and n >= 2:  # BatchNorm needs two samples
                continue
            x, y = x_all[idx].to(device), y_all[idx].to(device)
            if spec.mixup:
                lam = float(rng.beta(cfg.mixup_beta, cfg.mixup_beta))
                perm = torch.from_numpy(rng.permutation(len(idx)))
                x = lam * x + (1 - lam) * x[perm]
                y = lam * y + (1 - lam) * y[perm]
            loss = _loss(model(x), y, spec.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if progress:
            progress(f"epoch {epoch + 1}/{cfg.epochs} loss {loss.item():.3f}")
    return model.eval()


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 32) -> np.ndarray:
    out = np.empty(images.shape, bool)
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size], np.float32))[:, None].to(device)
        out[start : start + batch_size] = (model(x).argmax(dim=1) == 1).cpu().numpy()
    return out


def dice_per_case(pred: np.ndarray, truth: np.ndarray, case_ids: list[str]) -> dict[str, float]:
    """3D Dice per case over its slices; 1.0 when both prediction and truth are empty."""
    from pseudohealthy.metrics.dice import dice_score

    ids = np.asarray(case_ids)
    return {c: dice_score(pred[ids == c], truth[ids == c], empty=1.0) for c in sorted(set(case_ids))}


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def summarise_runs(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table III rows: per (variant, fraction, alpha) the mean and std over trials of the mean test Dice,
    with the change against alpha = 0 of the same variant and fraction."""
    groups: dict[tuple[str, float, float], list[float]] = {}
    for r in results:
        groups.setdefault((r["variant"], r["fraction"], r["alpha"]), []).append(r["mean_dice"])
    rows = []
    for (variant, fraction, alpha), values in sorted(groups.items()):
        base = groups.get((variant, fraction, 0.0))
        mean = float(np.mean(values))
        rows.append({
            "variant": variant, "fraction": fraction, "alpha": alpha, "trials": len(values),
            "dice_mean": mean, "dice_std": float(np.std(values)),
            "change_vs_alpha0": mean - float(np.mean(base)) if base else float("nan"),
        })
    return rows


def run_segment_experiment(cache_dir: Path, checkpoint: Path, output: Path, cfg: SegmentExperimentConfig,
                           progress: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) every run of the experiment and write ``results.csv``, ``table.csv``,
    ``table.json``, ``report.html`` and ``config.json`` into ``output``."""
    from tqdm.auto import tqdm

    from pseudohealthy.config import to_dict
    from pseudohealthy.data.cache import open_array, read_fingerprint, read_slice_table
    from pseudohealthy.data.splits import read_splits, subset_cases
    from pseudohealthy.checkpoints import load_generator
    from pseudohealthy.device import resolve_device

    check_config(cfg)
    fingerprint = read_fingerprint(cache_dir)
    device = resolve_device(cfg.device)
    generator, _run_cfg, preprocess = load_generator(checkpoint, device)
    check_compatible(cache_dir, checkpoint, fingerprint, preprocess)
    splits = read_splits(cache_dir / "splits.json")
    if not splits["test"] or not splits["train"]:
        raise UserError(
            f"{cache_dir / 'splits.json'}: the experiment needs training and test cases, found {len(splits['train'])} and "
            f"{len(splits['test'])}; preprocess at least two cases."
        )
    for fraction in cfg.fractions:
        if len(splits["train"]) * fraction < 1:
            raise UserError(
                f"{cache_dir / 'splits.json'}: {len(splits['train'])} training case(s) are too few for fraction {fraction} "
                "(it would keep less than one case)."
            )

    output.mkdir(parents=True, exist_ok=True)
    ckpt_hash = hashlib.sha256(Path(checkpoint if Path(checkpoint).is_file() else Path(checkpoint) / "checkpoints" / "last.pt").read_bytes()).hexdigest()[:16]
    settings = {"cache": str(cache_dir), "checkpoint": str(checkpoint), "checkpoint_sha256_16": ckpt_hash, "config": to_dict(cfg)}
    saved = output / "config.json"
    if saved.is_file():
        previous = json.loads(saved.read_text())
        if previous.get("checkpoint_sha256_16") != ckpt_hash or previous.get("cache") != str(cache_dir):
            raise UserError(f"{output}: holds an experiment for another checkpoint or cache; choose a new output folder.")
    _write_json(saved, settings)

    images = open_array(cache_dir, "images")
    lesions = np.asarray(open_array(cache_dir, "lesions"))
    regions = np.asarray(open_array(cache_dir, "regions"))
    synth_path = output / "synthetic.npy"
    if synth_path.is_file():
        synthetic = np.load(synth_path)
    else:
        synthetic = synthesize_cache(generator, images, device, progress=progress)
        np.save(output / "synthetic.part.npy", synthetic)
        os.replace(output / "synthetic.part.npy", synth_path)
    images = np.asarray(images, np.float32)
    table = read_slice_table(cache_dir)
    case_of = np.array([r.case_id for r in table])
    lesion_slice = np.array([r.has_lesion for r in table])

    specs = run_specs(cfg)
    results = []
    bar = tqdm(specs, desc="segment-experiment", unit="run", disable=not progress)
    for spec in bar:
        path = output / "runs" / f"{spec.key}.json"
        if path.is_file():
            results.append(json.loads(path.read_text()))
            continue
        bar.set_postfix_str(spec.key)
        train_cases = set(subset_cases(splits["train"], spec.fraction, cfg.seed))
        test_cases = set(splits["test"])
        train_rows = np.isin(case_of, list(train_cases)) & (lesion_slice | (not cfg.lesion_only))
        test_rows = np.isin(case_of, list(test_cases)) & (lesion_slice | (not cfg.lesion_only))
        enhanced = enhanced_images(images, synthetic, regions, spec.alpha)
        seed = cfg.seed * 1000 + spec.trial
        model = train_segmentor(enhanced[train_rows], lesions[train_rows], cfg, spec, device, seed,
                                progress=lambda s: bar.set_postfix_str(f"{spec.key} {s}"))
        pred = predict(model, enhanced[test_rows], device)
        dices = dice_per_case(pred, lesions[test_rows] > 0, case_of[test_rows].tolist())
        result = {"key": spec.key, "variant": spec.variant, "loss": spec.loss, "mixup": spec.mixup, "alpha": spec.alpha,
                  "fraction": spec.fraction, "trial": spec.trial, "seed": seed, "train_cases": len(train_cases),
                  "train_slices": int(train_rows.sum()), "test_slices": int(test_rows.sum()),
                  "dice_per_case": dices, "mean_dice": float(np.mean(list(dices.values())))}
        _write_json(path, result)
        results.append(result)

    rows = summarise_runs(results)
    write_tables(output, results, rows)
    from pseudohealthy.experiments.segmentation_report import write_report

    write_report(output / "report.html", rows, results, settings)
    return {"rows": rows, "results": results}


def write_tables(output: Path, results: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    import csv

    with (output / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["variant", "fraction", "alpha", "trial", "case_id", "dice"])
        for r in results:
            for case_id, dice in r["dice_per_case"].items():
                writer.writerow([r["variant"], r["fraction"], r["alpha"], r["trial"], case_id, f"{dice:.6f}"])
    with (output / "table.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _write_json(output / "table.json", rows)
