"""One command from data to report (``pseudohealthy pipeline``); the demo runs it on the phantom.

    <out>/cache/            slice cache at the recipe's working size (fingerprint.json, splits.json)
    <out>/run/              training run within the time budget (config.yaml, losses.csv, checkpoints/)
    <out>/test-inputs/      links to the test cases' pathological volumes only (no mask, no truth)
    <out>/synthesis/gvs/    pseudo-healthy test volumes (NIfTI, the input's geometry and units)
    <out>/evaluation/fills/ the mask-aware classical fills of the test cases (the yardsticks)
    <out>/evaluation/       metrics.json, metrics.csv, report.html: GVS beside the fills, the
                            original images and, where the data set has them, the true healthy images
    <out>/pipeline.json     the settings, the stages' timings and the headline figures

A data set without true healthy volumes (any real one) gives no ground truth to score against (nor
to teach a recipe with a supervised term), so the pipeline first writes ``<out>/inserted/``: each
case with synthetic lesions inserted into its lesion-free tissue and its own scan as the truth
(``pseudohealthy phantom --kind inserted``); ``--inserted-copies 0`` skips this for recipes that need
no truth (then only the real cases are scored).
Training, synthesis and the ground-truth evaluation run on that copy, split by *source* case, so no
subject is on both sides; then ``<out>/evaluation-real/`` scores GVS on the untouched real test cases
(A-Dice, Healthiness, identity: no truth there), again beside the fills.

Every stage is skipped or resumed when its result is already there: the cache is kept when up to
date, training resumes from ``run/checkpoints/last.pt`` (a spent time budget ends it at once),
synthesis is skipped when it was made from the same checkpoint, and the evaluation runs last.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pseudohealthy.config import PRESET_WORKING_SIZE, PreprocessConfig, RunConfig, resolve_run_config, to_dict
from pseudohealthy.errors import UserError

DEFAULT_PRESET = "hybrid"
DEFAULT_FILLS = ["mean", "median", "biharmonic", "biharmonic3", "telea"]
# The headline numbers pipeline.json and the console show per method (from evaluate's summary).
HEADLINE = ("error_reduction", "gt_psnr", "gt_ssim", "psnr", "ssim", "adice", "healthiness")
# Inserted copies: a data set of few subjects gets at least this many training volumes, each with its
# own lesions (lesion variety is what one subject can multiply). Measured with one training subject
# and 5-minute gates over 3 seeds (docs/quality.md, session 5): unseen-subject error reduction 0.158
# with 24 copies against 0.135 with 6, inside the seed spread; kept because it costs little.
MIN_TRAIN_VOLUMES = 24


@dataclass
class PipelineConfig:
    """What `pseudohealthy pipeline` does; written to ``pipeline.json``."""

    preset: str = DEFAULT_PRESET
    train_minutes: float = 15.0
    seed: int = 0
    working_size: int | None = None  # None: the preset's (native resolution for hybrid)
    intensity: str | None = None  # the cache's intensity scaling (percentile | median | range); None: the source's (MR percentile, CT HU window)
    test_cases: list[str] | None = None  # explicit test cases; else --splits, else a seeded split
    splits: str | None = None  # a splits.json whose train/test lists are used
    test_fraction: float = 0.1
    source: str = "auto"
    fills: list[str] = field(default_factory=lambda: list(DEFAULT_FILLS))
    adice_trials: int = 3
    healthiness: bool = True
    evaluate: bool = True
    overrides: list[str] = field(default_factory=list)  # training overrides key=value
    inserted_copies: int = 2  # inserted-lesion copies per test case when the data set has no truth
    train_copies: int | None = None  # copies per training case; None: enough for MIN_TRAIN_VOLUMES (at least inserted_copies)


def working_size_for(cfg: PipelineConfig) -> int | None:
    if cfg.working_size is not None:
        return cfg.working_size
    return PRESET_WORKING_SIZE.get(cfg.preset, 64)


def run_config_for(cfg: PipelineConfig, cache: Path) -> RunConfig:
    overrides = [f"train.max_minutes={cfg.train_minutes}", f"train.seed={cfg.seed}", "train.keep_checkpoints=1"]
    return resolve_run_config(preset=cfg.preset, overrides=overrides + list(cfg.overrides), data=str(cache.resolve()))


def planned_test_subjects(subjects: list[str], cfg: PipelineConfig) -> tuple[list[str], str]:
    """The test subjects (``--test-cases``, ``--splits`` or the seeded split) and where they came from."""
    from pseudohealthy.data.splits import read_splits, split_cases

    if cfg.test_cases is not None and cfg.splits is not None:
        raise UserError("give either --test-cases or --splits, not both.")
    if cfg.test_cases is not None:
        return list(dict.fromkeys(cfg.test_cases)), "--test-cases"
    if cfg.splits is not None:
        return list(read_splits(Path(cfg.splits))["test"]), str(cfg.splits)
    return split_cases(sorted(set(subjects)), cfg.test_fraction, cfg.seed)[1], "the seeded split"


def choose_split(cache: Path, cfg: PipelineConfig, sources: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Write the pipeline's split into the cache's ``splits.json`` and return it (by case, never by slice).

    ``sources`` maps each cache case to the subject it was made from (inserted copies): the split is
    then drawn and named over the subjects, and every copy follows its subject.
    """
    from pseudohealthy.data.cache import read_fingerprint
    from pseudohealthy.data.splits import write_splits

    cases = sorted(read_fingerprint(cache)["cases"])
    subject_of = sources or {c: c for c in cases}
    subjects = sorted(set(subject_of[c] for c in cases))
    test, where = planned_test_subjects(subjects, cfg)
    unknown = [c for c in test if c not in subjects]
    if unknown:
        raise UserError(f"{where}: case(s) {', '.join(unknown[:5])} are not in the data set {cache}.")
    train_subjects = [c for c in subjects if c not in test]
    if not test or not train_subjects:
        raise UserError(f"{where}: the split needs at least one training and one test case.")
    test_cases = [c for c in cases if subject_of[c] in test]
    train_cases = [c for c in cases if subject_of[c] not in test]
    write_splits(cache / "splits.json", train_cases, test_cases, cfg.seed, len(test_cases) / len(cases))
    return {"train": train_cases, "test": test_cases, "test_subjects": test}


def _has_truth(data: Path, source: str) -> bool:
    from pseudohealthy.data.sources import detect_source, find_cases

    found = find_cases(data, detect_source(data) if source == "auto" else source)
    return bool(found) and all(c.healthy is not None for c in found)


def copies_per_subject(data: Path, cfg: PipelineConfig) -> dict[str, int]:
    """Inserted copies per source case: ``cfg.inserted_copies`` for a test subject; a training subject
    gets ``cfg.train_copies`` or, by default, enough copies for ``MIN_TRAIN_VOLUMES`` training volumes
    (and never fewer than ``cfg.inserted_copies``)."""
    from pseudohealthy.data.sources import detect_source, find_cases

    subjects = sorted(c.case_id for c in find_cases(data, detect_source(data) if cfg.source == "auto" else cfg.source))
    test = set(planned_test_subjects(subjects, cfg)[0])
    n_train = max(len([s for s in subjects if s not in test]), 1)
    train = cfg.train_copies if cfg.train_copies is not None else max(cfg.inserted_copies, math.ceil(MIN_TRAIN_VOLUMES / n_train))
    if train < 1:
        raise UserError(f"--train-copies {train}: need at least one copy per training case.")
    return {s: cfg.inserted_copies if s in test else int(train) for s in subjects}


def inserted_copy(data: Path, output: Path, cfg: PipelineConfig, echo: Callable[[str], None],
                  progress: bool) -> tuple[Path, dict[str, str]]:
    """``<output>/inserted``: the data set with inserted lesions and known truth (kept when it was made
    from the same data with the same seed and copies); returns it and ``{case: source case}``."""
    from pseudohealthy.data.phantom.inserted import generate_inserted

    folder = output / "inserted"
    record = folder / "phantom.json"
    per_subject = copies_per_subject(data, cfg)
    extra = {k: v for k, v in per_subject.items() if v != cfg.inserted_copies}
    want = {"source": str(data.absolute()), "seed": cfg.seed, "copies": cfg.inserted_copies, "copies_per_case": extra}
    saved = json.loads(record.read_text()) if record.is_file() else {}
    saved.setdefault("copies_per_case", {})  # a record written before per-case counts existed
    if any(saved.get(k) != v for k, v in want.items()):
        echo(f"      no true healthy volumes in {data}: inserting lesions ({sum(per_subject.values())} copies of "
             f"{len(per_subject)} cases) into {folder}")
        generate_inserted(data, folder, copies=cfg.inserted_copies, seed=cfg.seed, overwrite=True, progress=progress,
                          copies_per_case=extra)
        saved = json.loads(record.read_text())
    return folder, {case: entry["source"] for case, entry in saved["case_map"].items()}


def run_pipeline(data: Path, output: Path, cfg: PipelineConfig, echo: Callable[[str], None] = print,
                 progress: bool = True, stage_offset: int = 0, stages: int = 4) -> dict[str, Any]:
    """Run (or resume) every stage on the data set ``data``; returns what ``pipeline.json`` holds."""
    from pseudohealthy.data.cache import preprocess_dataset
    from pseudohealthy.data.preprocessing import validate_config
    from pseudohealthy.methods import check_run_config
    from pseudohealthy.training.loop import train

    data, output = Path(data), Path(output)
    if not data.is_dir():
        raise UserError(f"{data}: data set folder not found.")
    if cfg.train_minutes <= 0:
        raise UserError(f"--train-minutes {cfg.train_minutes}: the training budget must be positive.")
    cache = output / "cache"
    run_cfg = run_config_for(cfg, cache)
    check_run_config(run_cfg)  # a bad training setting is refused before any lesion is inserted, as is
    pre = PreprocessConfig(source=cfg.source, working_size=working_size_for(cfg), test_fraction=cfg.test_fraction,
                           split_seed=cfg.seed, intensity=cfg.intensity)
    validate_config(pre)  # a bad preprocessing setting
    output.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    step = iter(range(stage_offset + 1, stage_offset + stages + 1))
    label = lambda name: f"[{next(step)}/{stage_offset + stages}] {name}"  # noqa: E731

    t = time.perf_counter()
    real_data, sources = data, None
    if not _has_truth(data, cfg.source) and (cfg.inserted_copies > 0 or run_cfg.train.supervised_weight > 0
                                                    or run_cfg.train.fill_weight > 0):
        data, sources = inserted_copy(real_data, output, cfg, echo, progress)
    summary = preprocess_dataset(data, cache, pre, overwrite=True, progress=progress)
    split = choose_split(cache, cfg, sources)
    echo(f"{label('preprocess')}: {summary['status']}; {summary['slices']} slices ({summary['lesion_slices']} with lesion), "
         f"{len(split['train'])} train / {len(split['test'])} test cases")
    timings["preprocess_s"] = time.perf_counter() - t

    t = time.perf_counter()
    run = output / "run"
    resume = (run / "checkpoints" / "last.pt").is_file()
    echo(f"{label('train')}: preset {cfg.preset}, {cfg.train_minutes:g} min budget" + (" (resuming)" if resume else ""))
    checkpoint = train(run_cfg, run, resume=resume, progress=progress)
    timings["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    synthesis = output / "synthesis" / "gvs"
    echo(f"{label('synthesize')}: {len(split['test'])} held-out test case(s) -> {synthesis}")
    synthesize_test_cases(data, Path(checkpoint), split["test"], output, synthesis, progress)
    timings["synthesize_s"] = time.perf_counter() - t

    figures: dict[str, dict[str, Any]] = {}
    report = None
    if cfg.evaluate:
        t = time.perf_counter()
        echo(f"{label('evaluate')}: GVS, {', '.join('fill-' + k for k in cfg.fills)}, original"
             f"{', truth' if _has_healthy(cache) else ''}; A-Dice with {cfg.adice_trials} trial(s)")
        report, figures = evaluate_test_cases(data, output, synthesis, split["test"], cfg, progress)
        if sources is not None:
            real = split["test_subjects"]
            echo(f"      and the real test case(s) {', '.join(real)} as they are (their own lesions, no truth): evaluation-real/")
            real_synthesis = output / "synthesis" / "gvs-real"
            synthesize_test_cases(real_data, Path(checkpoint), real, output, real_synthesis, progress, inputs_name="test-inputs-real")
            report_real, figures_real = evaluate_test_cases(real_data, output, real_synthesis, real, cfg, progress,
                                                            name="evaluation-real", truth=False)
            figures = {"inserted": figures, "real": figures_real}
        timings["evaluate_s"] = time.perf_counter() - t
    result = {
        "data": str(real_data),
        "trained_on": str(data),
        "settings": to_dict(cfg),
        "run_config": to_dict(run_cfg),
        "test_cases": split["test"],
        "train_cases": split["train"],
        "figures": figures,
        "report": str(report) if report else None,
        "timings": timings,
    }
    (output / "pipeline.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def _has_healthy(cache: Path) -> bool:
    from pseudohealthy.data.cache import read_fingerprint

    return bool(read_fingerprint(cache).get("has_healthy", False))


def synthesize_test_cases(data: Path, checkpoint: Path, case_ids: list[str], output: Path, synthesis: Path,
                          progress: bool, inputs_name: str = "test-inputs") -> None:
    """Synthesise the test cases from their pathological volumes alone; skipped when ``synthesis``
    already holds every case made from this very checkpoint (same size and modification time)."""
    from pseudohealthy.inference.synthesize import run_synthesis

    stamp = synthesis / "checkpoint.json"
    made_from = {"checkpoint": str(checkpoint.resolve()), "size": checkpoint.stat().st_size,
                 "mtime_ns": checkpoint.stat().st_mtime_ns, "cases": sorted(case_ids)}
    if stamp.is_file() and json.loads(stamp.read_text()) == made_from and \
            all((synthesis / f"{c}.nii.gz").is_file() for c in case_ids):
        return
    inputs = output / inputs_name
    link_test_inputs(data, inputs, case_ids)
    run_synthesis(checkpoint, inputs, synthesis, overwrite=True, progress=progress)
    stamp.write_text(json.dumps(made_from, indent=2) + "\n")


def link_test_inputs(data: Path, folder: Path, case_ids: list[str]) -> None:
    """A folder holding only the test cases' pathological volumes (symlinks; no mask, no truth), so
    that synthesis cannot see anything but the image."""
    from pseudohealthy.data.sources import detect_source, find_cases

    if folder.exists():
        shutil.rmtree(folder)
    cases = {c.case_id: c for c in find_cases(data, detect_source(data))}
    for case_id in case_ids:
        image = cases[case_id].image
        (folder / case_id).mkdir(parents=True)
        (folder / case_id / image.name).symlink_to(image.resolve())


def evaluate_test_cases(data: Path, output: Path, synthesis: Path, case_ids: list[str], cfg: PipelineConfig,
                        progress: bool, name: str = "evaluation", truth: bool = True) -> tuple[Path, dict[str, dict[str, Any]]]:
    """`evaluate` with GVS, the fills, the originals and (where known) the truth; returns the report
    and the headline figures per method."""
    from pseudohealthy.evaluation.runner import EvaluationSettings, evaluate
    from pseudohealthy.metrics.adice import ADiceConfig
    from pseudohealthy.metrics.healthiness import HealthinessConfig

    methods = [f"gvs={synthesis}", "original=@original"]
    if truth and _has_healthy(output / "cache"):
        methods.append("truth=@healthy")
    settings = EvaluationSettings(seed=cfg.seed, source=cfg.source,
                                  adice=ADiceConfig(trials=cfg.adice_trials, seed=cfg.seed) if cfg.adice_trials > 0 else None,
                                  healthiness=HealthinessConfig() if cfg.healthiness else None,
                                  healthiness_cache=str(output / "healthiness-cache"), fills=list(cfg.fills))
    evaluation = output / name
    evaluate(data, methods, evaluation, settings, cases=case_ids, overwrite=True, progress=progress)
    metrics = json.loads((evaluation / "metrics.json").read_text())
    return evaluation / "report.html", headline_figures(metrics)


def headline_figures(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{method: {metric: mean over cases or trials}}`` from an evaluation's ``metrics.json``."""
    figures = {}
    for name, method in metrics["methods"].items():
        row = {}
        for key in HEADLINE:
            value = method.get(key) if key in ("adice", "healthiness") else method.get("summary", {}).get(key)
            if isinstance(value, dict):
                row[key] = value.get("mean", value.get(key))  # summaries: {"mean", ...}; Healthiness: {"healthiness", ...}
                if key == "adice" and "std" in value:
                    row["adice_std"] = value["std"]
            elif value is not None:
                row[key] = value
        figures[name] = row
    return figures


def format_figures(figures: dict[str, dict[str, Any]]) -> list[str]:
    """The headline table as aligned text lines (None as '-')."""
    columns = [("error_reduction", "lesion err. red."), ("gt_psnr", "lesion PSNR"), ("psnr", "normal PSNR"),
               ("adice", "A-Dice"), ("healthiness", "Healthiness")]

    def cell(value: Any) -> str:
        if isinstance(value, (int, float)):
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"
        return "-" if value is None else str(value)

    lines = ["method".ljust(18) + "".join(title.rjust(18) for _, title in columns)]
    for name, row in figures.items():
        lines.append(name.ljust(18) + "".join(cell(row.get(key)).rjust(18) for key, _ in columns))
    return lines
