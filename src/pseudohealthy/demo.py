"""The main job on built-in data: the phantom, then `pseudohealthy pipeline` on it.

Each stage writes into its own folder under the demo's output and is skipped or resumed when its
result is already there, so an interrupted demo picks up where it stopped:

    <out>/phantom/      brain phantom in the BraTS layout, with true healthy volumes
    <out>/cache/, run/, synthesis/gvs/, evaluation/ (with evaluation/fills/<kind>/), pipeline.json
                        the pipeline's stages (see pipeline.py)
    <out>/demo.json     the demo's settings and the figures it printed

Besides the evaluation report the demo prints, for GVS and for each mask-aware fill, two figures
pooled over the test cases: the lesion-region error reduction against the true healthy volume and
the normal-tissue PSNR.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pseudohealthy.config import to_dict
from pseudohealthy.pipeline import DEFAULT_FILLS, DEFAULT_PRESET, PipelineConfig, run_pipeline


@dataclass
class DemoConfig:
    """Sizes chosen so the whole demo runs in under 10 minutes on 2 CPU cores (see README)."""

    cases: int = 20
    seed: int = 0
    shape: tuple[int, int, int] = (96, 96, 64)  # phantom grid; voxel size scales so the FOV is the brain
    preset: str = DEFAULT_PRESET
    train_minutes: float = 6.0
    working_size: int | None = None  # None: the recipe's (hybrid: the phantom's native 96x96)
    test_fraction: float = 0.2
    adice_trials: int = 1  # the demo's evaluation; `pseudohealthy evaluate` defaults to 3
    evaluate: bool = True
    fills: list[str] = field(default_factory=lambda: list(DEFAULT_FILLS))
    overrides: list[str] = field(default_factory=list)  # training overrides


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


# The demo's test phantoms share the training phantoms' template anatomy, so the gate has no unseen
# anatomy to adapt to: measured on the demo's checkpoint (session 16, per-case error reduction / normal
# PSNR) 0.535 / 24.1 dB without adapting, 0.580 / 22.9 with 100 steps, 0.551 / 22.3 with the recipe's
# 300, which also took the demo to 12 minutes. A user's own overrides come after and win.
DEMO_OVERRIDES = ["model.gen_gate_adapt_steps=0"]


def pipeline_config_for(cfg: DemoConfig) -> PipelineConfig:
    return PipelineConfig(preset=cfg.preset, train_minutes=cfg.train_minutes, seed=cfg.seed, working_size=cfg.working_size,
                          test_fraction=cfg.test_fraction, source="brats", fills=list(cfg.fills),
                          adice_trials=cfg.adice_trials, evaluate=cfg.evaluate,
                          overrides=DEMO_OVERRIDES + list(cfg.overrides))


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
    """Run (or resume) the phantom and the pipeline on it; returns the figures written to ``demo.json``."""
    from pseudohealthy.data.phantom import generate_phantom

    output.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    phantom = output / "phantom"
    if _phantom_up_to_date(phantom, cfg):
        echo(f"[1/5] phantom: {cfg.cases} cases already in {phantom}")
    else:
        echo(f"[1/5] phantom: writing {cfg.cases} brain cases of shape {cfg.shape} to {phantom}")
        generate_phantom(phantom, cases=cfg.cases, seed=cfg.seed, kind="brain", shape=tuple(cfg.shape), overwrite=True, progress=progress)
    phantom_s = time.perf_counter() - t0
    result = run_pipeline(phantom, output, pipeline_config_for(cfg), echo=echo, progress=progress, stage_offset=1, stages=4)
    test_ids = result["test_cases"]
    methods = {"gvs": output / "synthesis" / "gvs"}
    if cfg.evaluate:
        methods.update({f"fill-{kind}": output / "evaluation" / "fills" / kind for kind in cfg.fills})
    scores = {name: score_test_cases(phantom, folder, test_ids) for name, folder in methods.items()}
    timings = {"phantom_s": phantom_s, **result["timings"], "total_s": time.perf_counter() - t0}
    summary = {
        "settings": to_dict(cfg),
        "run_config": result["run_config"],
        "test_cases": test_ids,
        "lesion_error_reduction": scores["gvs"]["lesion_error_reduction"],
        "normal_tissue_psnr_db": scores["gvs"]["normal_tissue_psnr_db"],
        "per_case": scores["gvs"]["per_case"],
        "pooled": {name: {k: v for k, v in score.items() if k != "per_case"} for name, score in scores.items()},
        "figures": result["figures"],
        "report": result["report"],
        "timings": timings,
    }
    (output / "demo.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def demo_config(cases: int, seed: int, shape: str, working_size: int | None, preset: str, train_minutes: float,
                overrides: list[str], adice_trials: int = 1, evaluate: bool = True) -> DemoConfig:
    from pseudohealthy.data.phantom import parse_shape

    return DemoConfig(cases=cases, seed=seed, shape=parse_shape(shape), working_size=working_size, preset=preset,
                      train_minutes=train_minutes, overrides=list(overrides), adice_trials=adice_trials, evaluate=evaluate)
