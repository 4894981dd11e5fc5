"""The paper's Table I in one framework: GVS, basic GVS and the three baselines, trained with one time
budget each on the same slice cache, synthesised, evaluated together and tabled beside the paper.

Stages (each recorded in ``<out>/table1.json`` when finished and skipped on a rerun; an interrupted
training run is resumed from its last checkpoint):

    <out>/cache/                 slice cache (when DATA is a raw data set; a cache is used in place)
    <out>/runs/<name>/           one training run per row (config.yaml, losses.csv, checkpoints/)
    <out>/synthesis/<name>/      pseudo-healthy test volumes; counterfeit-mean/, counterfeit-noise/
    <out>/evaluation/            metrics.json, metrics.csv, report.html of every method together, with
                                 the mask-aware classical fills (evaluation/fills/<kind>/) as yardsticks
    <out>/table1.md, table1.html Table I: our numbers beside the paper's (SPEC section 7)
"""
from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from pseudohealthy.config import PreprocessConfig, RunConfig, resolve_run_config
from pseudohealthy.errors import UserError
from pseudohealthy.pipeline import DEFAULT_FILLS


@dataclass(frozen=True)
class Row:
    name: str  # run and method name in the evaluation
    method: str  # registry name
    overrides: tuple[str, ...]
    paper: str  # the paper's row it stands beside


# GVS as the paper's published model was trained: the reference code's generator loss (residual on
# normal tissue, lesion pixels pulled to the mean normal tissue; weight 5 there, 2 here, lambda 50),
# measured on the phantom at 0.445 lesion error reduction, 34.0 dB (the first demo; SPEC section 3).
GVS_REFERENCE_LOSS = ("train.residual_region=normal", "train.lesion_fill_weight=2", "train.lambda_residual=50")


def table_rows() -> tuple[Row, ...]:
    """The trained rows, in the paper's order of comparison."""
    gvs = GVS_REFERENCE_LOSS
    return (
        Row("gvs", "gvs", gvs, "GVS(1.0)"),
        Row("gvs-basic", "gvs", (*gvs, "train.seg_loss=ce"), "GVS w/o L_wce"),
        Row("vagan", "vagan", (), "VA-GAN"),
        Row("phsgan", "phsgan", (), "PHS-GAN"),
        Row("antgan", "antgan", (), "ANT-GAN"),
    )


# SPEC section 7 (BraTS, Table I; the paper's PSNR and SSIM headers swapped back): PSNR dB, SSIM, A-Dice +- std.
PAPER: dict[str, tuple[float | None, float | None, float | None, float | None]] = {
    "original images": (None, None, 0.736, 0.310),
    "VA-GAN": (21.89, 0.742, None, None),
    "PHS-GAN": (29.51, 0.966, 0.607, None),
    "ANT-GAN": (28.75, 0.963, 0.618, None),
    "GVS(0.3)": (38.79, 0.995, 0.615, None),
    "GVS w/o L_wce": (37.31, 0.991, 0.549, None),
    "GVS(1.0)": (37.31, 0.991, 0.512, None),
}
REFERENCE_ROWS = {"original": "original images"}  # evaluation name -> paper row, besides the trained rows


@dataclass
class Table1Config:
    """Settings of a Table I run; written to ``table1.json``."""

    minutes_per_method: float = 3.0  # CPU time budget of each training run (process CPU time)
    preset: str = "small"
    working_size: int = 64  # when DATA is a raw data set
    test_fraction: float = 0.2  # when DATA is a raw data set
    batch_size: int = 8
    seed: int = 0
    adice_trials: int = 1
    healthiness: bool = True  # also the Healthiness of Xia et al. (trains one reference segmentor)
    device: str = "cpu"
    overrides: tuple[str, ...] = ()  # config overrides for every run, after the rows' own (e.g. phsgan.lr=1e-4)
    fills: tuple[str, ...] = tuple(DEFAULT_FILLS)  # the mask-aware classical fills evaluated beside (inference.fills)


class _State:
    """``table1.json``: the settings and the finished stages."""

    def __init__(self, path: Path, cfg: Table1Config, data: Path, overwrite: bool = False) -> None:
        self.path = path
        settings = json.loads(json.dumps({**asdict(cfg), "data": str(data.resolve())}))  # tuples as lists, as saved
        saved = json.loads(path.read_text()) if path.is_file() else None
        self.stages: dict[str, Any] = {}
        if saved is not None:
            before = {k: v for k, v in saved.get("settings", {}).items() if k != "minutes_per_method"}
            if before != {k: v for k, v in settings.items() if k != "minutes_per_method"}:
                if not overwrite:
                    raise UserError(f"{path}: this output folder holds a Table I run with other settings; "
                                    "choose another --output or pass --overwrite.")
                _clear(path.parent)
                saved = {"settings": settings, "stages": {}}
            self.stages = dict(saved.get("stages", {}))
            if saved["settings"].get("minutes_per_method") != cfg.minutes_per_method:
                # A new budget: training continues (or is already past it); everything after it is redone.
                self.stages = {k: v for k, v in self.stages.items() if k == "preprocess"}
        self.settings = settings
        self.write()

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def finish(self, stage: str, seconds: float, **extra: Any) -> None:
        self.stages[stage] = {"seconds": round(seconds, 1), **extra}
        self.write()

    def write(self) -> None:
        self.path.write_text(json.dumps({"settings": self.settings, "stages": self.stages}, indent=2) + "\n")


def _clear(output: Path) -> None:
    """Remove what a Table I run wrote into ``output`` (only its own files and folders)."""
    import shutil

    for name in ("cache", "runs", "synthesis", "evaluation", "healthiness-cache"):
        shutil.rmtree(output / name, ignore_errors=True)
    for name in ("table1.json", "table1.md", "table1.html", "table1-rows.json"):
        (output / name).unlink(missing_ok=True)


def _cache_and_raw(data: Path, output: Path, cfg: Table1Config, state: _State, echo: Callable[[str], None],
                   progress: bool) -> tuple[Path, Path, str]:
    """The slice cache, the raw data set behind it and its layout name."""
    from pseudohealthy.data.cache import preprocess_dataset, read_fingerprint

    if (data / "fingerprint.json").is_file():
        fingerprint = read_fingerprint(data)
        cache = data
    else:
        cache = output / "cache"
        pre = PreprocessConfig(source="auto", working_size=cfg.working_size, test_fraction=cfg.test_fraction, split_seed=cfg.seed)
        t = time.perf_counter()
        summary = preprocess_dataset(data, cache, pre, overwrite=True, progress=progress)
        echo(f"[preprocess] {summary['status']}: {summary['slices']} slices, {summary['train_cases']} train / "
             f"{summary['test_cases']} test cases")
        state.finish("preprocess", time.perf_counter() - t)
        fingerprint = read_fingerprint(cache)
    raw = Path(fingerprint["input"])
    if not raw.is_dir():
        raise UserError(f"{cache}: the raw data set it was made from ({raw}) is gone; synthesis and evaluation need it.")
    return cache, raw, str(fingerprint.get("source") or fingerprint["config"]["source"])


def run_config_for(row: Row, cache: Path, cfg: Table1Config) -> RunConfig:
    """One row's training config: the preset, the method, a CPU-time budget and epochs enough to spend it."""
    overrides = [f"method={row.method}", f"train.seed={cfg.seed}", f"train.batch_size={cfg.batch_size}",
                 f"train.device={cfg.device}", f"train.max_minutes={cfg.minutes_per_method}", "train.budget_clock=cpu",
                 "train.epochs=100000", "train.keep_checkpoints=1", *row.overrides, *cfg.overrides]
    return resolve_run_config(preset=cfg.preset, overrides=overrides, data=str(cache.resolve()))


def run_table1(data: Path, output: Path, cfg: Table1Config, echo: Callable[[str], None] = print,
               progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Run (or resume) every stage; returns the table's rows (also written as table1.md / table1.html)."""
    from pseudohealthy.data.sources import find_cases
    from pseudohealthy.evaluation.runner import EvaluationSettings, evaluate
    from pseudohealthy.inference.synthesize import run_synthesis
    from pseudohealthy.metrics.adice import ADiceConfig
    from pseudohealthy.metrics.counterfeits import write_counterfeits
    from pseudohealthy.metrics.healthiness import HealthinessConfig
    from pseudohealthy.methods import check_run_config
    from pseudohealthy.training.loop import TrainingInterrupted, train

    if not data.exists():
        raise UserError(f"{data}: data not found; pass a data set folder or a slice cache.")
    if not cfg.minutes_per_method > 0:
        raise UserError(f"--minutes-per-method must be positive, got {cfg.minutes_per_method}.")
    from pseudohealthy.inference.fills import check_kind

    for kind in cfg.fills:
        check_kind(kind)
    output.mkdir(parents=True, exist_ok=True)
    state = _State(output / "table1.json", cfg, data, overwrite)
    start = time.perf_counter()
    cache, raw, source = _cache_and_raw(data, output, cfg, state, echo, progress)
    test_ids = sorted(json.loads((cache / "splits.json").read_text())["test"])
    if not test_ids:
        raise UserError(f"{cache}: no test cases in splits.json; Table I is measured on held-out cases.")

    configs = {row.name: run_config_for(row, cache, cfg) for row in table_rows()}
    for run_config in configs.values():
        check_run_config(run_config)  # every row's settings, before the first run starts
    for row in table_rows():
        stage = f"train:{row.name}"
        run = output / "runs" / row.name
        if state.done(stage):
            echo(f"[train {row.name}] done")
            continue
        resume = (run / "checkpoints" / "last.pt").is_file()
        echo(f"[train {row.name}] {row.method}, {cfg.minutes_per_method:g} CPU min" + (" (resuming)" if resume else ""))
        t = time.perf_counter()
        try:
            train(configs[row.name], run, resume=resume, progress=progress)
        except TrainingInterrupted:
            raise TrainingInterrupted(f"{output}: Table I interrupted while training {row.name}; its last epoch is saved, "
                                      "run the same table1 command again to continue.") from None
        state.finish(stage, time.perf_counter() - t)

    inputs = [(c.case_id, c.image) for c in find_cases(raw, source=source, require_mask=False) if c.case_id in set(test_ids)]
    methods = []
    for row in table_rows():
        folder = output / "synthesis" / row.name
        methods.append(f"{row.name}={folder}")
        if not state.done(f"synthesize:{row.name}"):
            t = time.perf_counter()
            echo(f"[synthesize {row.name}] {len(inputs)} test case(s)")
            run_synthesis(output / "runs" / row.name, inputs, folder, device=cfg.device, overwrite=True, progress=progress)
            state.finish(f"synthesize:{row.name}", time.perf_counter() - t)
    for kind in ("mean", "noise"):
        folder = output / "synthesis" / f"counterfeit-{kind}"
        methods.append(f"counterfeit-{kind}={folder}")
        if not state.done(f"counterfeit:{kind}"):
            t = time.perf_counter()
            write_counterfeits(raw, kind, folder, seed=cfg.seed, overwrite=True, cases=test_ids, source=source, progress=False)
            state.finish(f"counterfeit:{kind}", time.perf_counter() - t)
    methods.append("original=@original")
    if any(c.healthy is not None for c in find_cases(raw, source=source, require_mask=False) if c.case_id in set(test_ids)):
        methods.append("truth=@healthy")

    evaluation = output / "evaluation"
    if not state.done("evaluate"):
        t = time.perf_counter()
        echo(f"[evaluate] {', '.join(m.split('=')[0] for m in methods)}; A-Dice with {cfg.adice_trials} trial(s)")
        settings = EvaluationSettings(working_size=int(json.loads((cache / "fingerprint.json").read_text())["working_size"][0]),
                                      seed=cfg.seed, source=source, device=cfg.device,
                                      adice=ADiceConfig(trials=cfg.adice_trials, seed=cfg.seed) if cfg.adice_trials > 0 else None,
                                      healthiness=HealthinessConfig(seed=cfg.seed) if cfg.healthiness else None,
                                      healthiness_cache=str(output / "healthiness-cache"), fills=list(cfg.fills))
        evaluate(raw, methods, evaluation, settings, cases=test_ids, overwrite=True, progress=progress)
        state.finish("evaluate", time.perf_counter() - t)
    results = json.loads((evaluation / "metrics.json").read_text())
    rows = table1_rows(results, output)
    write_table1(rows, output, cfg, time.perf_counter() - start)
    echo(f"Table I: {output / 'table1.md'} and {output / 'table1.html'}")
    return {"rows": rows, "stages": state.stages}


def _steps_trained(run: Path) -> int | None:
    losses = run / "losses.csv"
    if not losses.is_file():
        return None
    import csv

    with losses.open() as fh:
        return sum(int(r["steps"]) for r in csv.DictReader(fh))


def table1_rows(results: dict[str, Any], output: Path) -> list[dict[str, Any]]:
    """One dict per evaluated method: our PSNR, SSIM, A-Dice, lesion error reduction, steps trained, and
    the paper's numbers where the paper has the row."""
    from pseudohealthy.evaluation.tables import method_value

    paper_of = {r.name: r.paper for r in table_rows()} | REFERENCE_ROWS
    rows = []
    for name, method in results["methods"].items():
        summary = method["summary"]
        adice, adice_std = method_value(method, "adice")
        if method.get("adice") and len(method["adice"].get("trials", [])) < 2:
            adice_std = None  # one trial has no spread
        paper = PAPER.get(paper_of.get(name, ""), (None, None, None, None))
        rows.append({
            "method": name, "paper_row": paper_of.get(name, ""),
            "psnr": summary.get("psnr", {}).get("mean"), "ssim": summary.get("ssim", {}).get("mean"),
            "adice": adice, "adice_std": adice_std,
            "error_reduction": summary.get("error_reduction", {}).get("mean"),
            "steps": _steps_trained(output / "runs" / name),
            "paper_psnr": paper[0], "paper_ssim": paper[1], "paper_adice": paper[2], "paper_adice_std": paper[3],
        })
    return rows


HEADER = ("method", "steps", "PSNR (dB)", "SSIM", "A-Dice", "lesion error reduction", "paper row", "paper PSNR",
          "paper SSIM", "paper A-Dice")


def _cells(row: dict[str, Any]) -> list[str]:
    from pseudohealthy.evaluation.tables import fmt, fmt_mean_std

    def dash(text: str) -> str:
        return text or "-"

    return [row["method"], dash("" if row["steps"] is None else str(row["steps"])), dash(fmt(row["psnr"], 2)),
            dash(fmt(row["ssim"], 4)), fmt_mean_std(row["adice"], row["adice_std"], 3), dash(fmt(row["error_reduction"], 3)),
            dash(row["paper_row"]), dash(fmt(row["paper_psnr"], 2)), dash(fmt(row["paper_ssim"], 3)),
            fmt_mean_std(row["paper_adice"], row["paper_adice_std"], 3)]


def write_table1(rows: list[dict[str, Any]], output: Path, cfg: Table1Config, seconds: float) -> None:
    """``table1.md`` and ``table1.html`` (same content) and the rows as ``table1-rows.json``."""
    note = (f"Ours: held-out test cases, each method trained for {cfg.minutes_per_method:g} CPU minutes "
            f"(preset {cfg.preset}, batch {cfg.batch_size}, seed {cfg.seed}); PSNR and SSIM between input and output "
            f"on normal tissue, A-Dice over {cfg.adice_trials} trial(s) (lower is healthier), lesion error reduction "
            "against the true healthy image (phantom only). Paper: BraTS, Table I (SPEC section 7). "
            f"This run's stages took {seconds:.0f} s in this process.")
    lines = ["# Table I", "", note, "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    (output / "table1.md").write_text("\n".join(lines) + "\n")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r)) + "</tr>" for r in rows)
    (output / "table1.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Table I</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style></head>"
        f"<body><h1>Table I</h1><p>{html.escape(note)}</p><table><tr>{head}</tr>{body}</table></body></html>\n")
    (output / "table1-rows.json").write_text(json.dumps(rows, indent=2) + "\n")
