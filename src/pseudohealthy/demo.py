"""The main job on built-in data: phantom -> preprocess -> train GVS -> synthesize -> score.

Each stage writes into its own folder under the demo's output and is skipped or resumed when its
result is already there, so an interrupted demo picks up where it stopped:

    <out>/phantom/      brain phantom in the BraTS layout, with true healthy volumes
    <out>/cache/        slice cache at the working size (fingerprint.json, splits.json)
    <out>/run/          GVS training run (config.yaml, losses.csv, previews/, checkpoints/)
    <out>/synthesis/gvs/  pseudo-healthy test volumes (NIfTI, input geometry and units)
    <out>/synthesis/counterfeit-mean/, counterfeit-noise/   the paper's Fig. 6 counterfeits
    <out>/evaluation/   metrics.json, metrics.csv, report.html (GVS, original, truth, counterfeits)
    <out>/demo.json     the demo's settings and the figures it printed
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pseudohealthy.config import PreprocessConfig, RunConfig, resolve_run_config, to_dict


# The paper's loss alone (train.residual_region=image, no fill term, lambda 10) leaves the phantom's
# lesions almost untouched within a CPU budget of ~450 steps: measured lesion error reduction 0.014
# at 41.7 dB (small preset, 64x64, 6 epochs). The generator learns a fixed pattern where lesions
# usually are that fools the segmentor. The reference code's generator loss removes them: residual
# on normal tissue only plus a pull of lesion pixels towards the mean normal tissue (weight 2 here,
# 5 in that code), lambda 50; measured 0.445 at 34.0 dB with the demo's 14 epochs. See README "The demo".
DEMO_TRAINING = ["train.residual_region=normal", "train.lesion_fill_weight=2", "train.lambda_residual=50", "train.keep_checkpoints=1"]


@dataclass
class DemoConfig:
    """Sizes chosen so the whole demo runs in under 10 minutes on 2 CPU cores (see README)."""

    cases: int = 20
    seed: int = 0
    shape: tuple[int, int, int] = (96, 96, 64)  # phantom grid; voxel size scales so the FOV is the brain
    working_size: int = 64
    preset: str = "small"
    epochs: int = 14
    max_steps_per_epoch: int | None = None
    test_fraction: float = 0.2
    adice_trials: int = 1  # the demo's evaluation; `pseudohealthy evaluate` defaults to 3
    evaluate: bool = True
    overrides: list[str] = field(default_factory=lambda: list(DEMO_TRAINING))  # training overrides


def _phantom_up_to_date(folder: Path, cfg: DemoConfig) -> bool:
    meta = folder / "phantom.json"
    if not meta.is_file():
        return False
    try:
        saved = json.loads(meta.read_text())
    except json.JSONDecodeError:
        return False
    want = {"cases": cfg.cases, "seed": cfg.seed, "kind": "brain", "shape": list(cfg.shape)}
    return all(saved.get(k) == v for k, v in want.items())


def run_config_for(cfg: DemoConfig, cache: Path) -> RunConfig:
    overrides = [f"train.epochs={cfg.epochs}", f"train.seed={cfg.seed}"]
    if cfg.max_steps_per_epoch:
        overrides.append(f"train.max_steps_per_epoch={cfg.max_steps_per_epoch}")
    return resolve_run_config(preset=cfg.preset, overrides=overrides + list(cfg.overrides), data=str(cache))


def score_test_cases(phantom: Path, synthesis: Path, case_ids: list[str]) -> dict[str, Any]:
    """The demo's two figures over the test cases, against the phantom's true healthy volumes.

    - lesion-region error reduction ``1 - mean|x_s - x_h| / mean|x_p - x_h|`` inside the lesion mask,
      pooled over all test lesion voxels with a known (finite) truth (and per case);
    - normal-tissue PSNR between ``x_s`` and ``x_p`` (brain minus lesion), both scaled by the input's
      ``[0, V99.5]`` window to [0, 1], MSE pooled over the test cases' normal voxels.
    """
    from pseudohealthy.data.nifti_io import load_nifti
    from pseudohealthy.data.sources import find_cases, load_case
    from pseudohealthy.metrics.ground_truth import error_reduction, scored_voxels
    from pseudohealthy.metrics.identity import window_to_unit

    cases = {c.case_id: c for c in find_cases(phantom, "brats")}
    before, after, sq_err, n_normal, per_case = 0.0, 0.0, 0.0, 0, {}
    for case_id in case_ids:
        case = load_case(cases[case_id], "brats")
        x_p, x_h = case.image.data, case.healthy.data
        x_s = load_nifti(synthesis / f"{case_id}.nii.gz", "synthetic image").data
        lesion = case.lesion
        brain = x_p > 0
        normal = brain & ~lesion
        high = float(np.percentile(x_p[brain], 99.5))
        p, s = window_to_unit(x_p, (0.0, high)), window_to_unit(x_s, (0.0, high))
        sq_err += float(((p - s)[normal] ** 2).sum())
        n_normal += int(normal.sum())
        scored = scored_voxels(x_h, lesion)  # NaN truth = unknown there (an inserted data set's own lesions)
        before += float(np.abs(x_p - x_h)[scored].sum())
        after += float(np.abs(x_s - x_h)[scored].sum())
        per_case[case_id] = {"error_reduction": error_reduction(x_p, x_s, x_h, lesion), "lesion_voxels": int(lesion.sum()),
                             "scored_voxels": int(scored.sum())}
    mse = sq_err / max(n_normal, 1)
    return {
        "lesion_error_reduction": 1.0 - after / before if before > 0 else float("nan"),
        "normal_tissue_psnr_db": float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf"),
        "per_case": per_case,
    }


def run_demo(output: Path, cfg: DemoConfig, echo: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) every stage of the demo; returns the figures written to ``demo.json``."""
    from pseudohealthy.data.cache import preprocess_dataset
    from pseudohealthy.data.phantom import generate_phantom
    from pseudohealthy.inference.synthesize import run_synthesis
    from pseudohealthy.training.loop import train

    output.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    phantom = output / "phantom"
    if _phantom_up_to_date(phantom, cfg):
        echo(f"[1/5] phantom: {cfg.cases} cases already in {phantom}")
    else:
        echo(f"[1/5] phantom: writing {cfg.cases} brain cases of shape {cfg.shape} to {phantom}")
        generate_phantom(phantom, cases=cfg.cases, seed=cfg.seed, kind="brain", shape=tuple(cfg.shape), overwrite=True, progress=progress)
    timings["phantom_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    cache = output / "cache"
    pre = PreprocessConfig(source="brats", working_size=cfg.working_size, test_fraction=cfg.test_fraction, split_seed=cfg.seed)
    summary = preprocess_dataset(phantom, cache, pre, overwrite=True, progress=progress)
    echo(
        f"[2/5] preprocess: {summary['status']}; {summary['slices']} slices ({summary['lesion_slices']} with lesion), "
        f"{summary['train_cases']} train / {summary['test_cases']} test cases, {summary['cache_bytes'] / 1e6:.1f} MB"
    )
    timings["preprocess_s"] = time.perf_counter() - t

    t = time.perf_counter()
    run = output / "run"
    run_cfg = run_config_for(cfg, cache)
    resume = (run / "checkpoints" / "last.pt").is_file()
    echo(f"[3/5] train: preset {cfg.preset}, {run_cfg.train.epochs} epochs" + (" (resuming)" if resume else ""))
    checkpoint = train(run_cfg, run, resume=resume, progress=progress)
    timings["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    splits = json.loads((cache / "splits.json").read_text())
    test_ids = list(splits["test"])
    test_input = output / "test-inputs"
    _link_cases(phantom, test_input, test_ids)
    synthesis = output / "synthesis" / "gvs"
    echo(f"[4/5] synthesize: {len(test_ids)} held-out test case(s) -> {synthesis}")
    run_synthesis(Path(checkpoint), test_input, synthesis, overwrite=True, progress=progress)
    timings["synthesize_s"] = time.perf_counter() - t

    scores = score_test_cases(phantom, synthesis, test_ids)
    timings["figures_s"] = time.perf_counter() - t0
    echo(
        f"      lesion error reduction {scores['lesion_error_reduction']:.3f}, normal-tissue PSNR "
        f"{scores['normal_tissue_psnr_db']:.2f} dB after {timings['figures_s']:.0f} s"
    )
    report = None
    if cfg.evaluate:
        t = time.perf_counter()
        report = evaluate_demo(output, phantom, synthesis, test_ids, cfg, echo, progress)
        timings["evaluate_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    result = {
        "settings": to_dict(cfg),
        "run_config": to_dict(run_cfg),
        "test_cases": test_ids,
        "lesion_error_reduction": scores["lesion_error_reduction"],
        "normal_tissue_psnr_db": scores["normal_tissue_psnr_db"],
        "per_case": scores["per_case"],
        "report": str(report) if report else None,
        "timings": timings,
    }
    (output / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def evaluate_demo(output: Path, phantom: Path, synthesis: Path, test_ids: list[str], cfg: DemoConfig,
                  echo: Callable[[str], None], progress: bool) -> Path:
    """Counterfeits of the test cases, then `evaluate` with GVS, the originals, the truth and both
    counterfeits as methods; returns the report's path."""
    from pseudohealthy.evaluation.runner import EvaluationSettings, evaluate
    from pseudohealthy.metrics.adice import ADiceConfig
    from pseudohealthy.metrics.counterfeits import write_counterfeits

    methods = [f"gvs={synthesis}", "original=@original", "truth=@healthy"]
    for kind in ("mean", "noise"):
        folder = output / "synthesis" / f"counterfeit-{kind}"
        write_counterfeits(phantom, kind, folder, seed=cfg.seed, overwrite=True, cases=test_ids, source="brats", progress=False)
        methods.append(f"counterfeit-{kind}={folder}")
    echo(f"[5/5] evaluate: {', '.join(m.split('=')[0] for m in methods)}; A-Dice with {cfg.adice_trials} trial(s)")
    settings = EvaluationSettings(working_size=cfg.working_size, seed=cfg.seed, source="brats",
                                  adice=ADiceConfig(trials=cfg.adice_trials, seed=cfg.seed),
                                  healthiness_cache=str(output / "healthiness-cache"))
    evaluation = output / "evaluation"
    evaluate(phantom, methods, evaluation, settings, cases=test_ids, overwrite=True, progress=progress)
    return evaluation / "report.html"


def _link_cases(phantom: Path, folder: Path, case_ids: list[str]) -> None:
    """A folder holding only the test cases' pathological volumes (symlinks; no mask, no truth)."""
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    for case_id in case_ids:
        (folder / case_id).mkdir(parents=True)
        src = phantom / case_id / f"{case_id}_t2.nii.gz"
        (folder / case_id / src.name).symlink_to(src.resolve())


def demo_config(cases: int, seed: int, shape: str, working_size: int, preset: str, epochs: int,
                max_steps_per_epoch: int | None, overrides: list[str], adice_trials: int = 1, evaluate: bool = True) -> DemoConfig:
    from pseudohealthy.data.phantom import parse_shape

    return DemoConfig(cases=cases, seed=seed, shape=parse_shape(shape), working_size=working_size, preset=preset, epochs=epochs,
                      max_steps_per_epoch=max_steps_per_epoch, overrides=DEMO_TRAINING + list(overrides), adice_trials=adice_trials,
                      evaluate=evaluate)

