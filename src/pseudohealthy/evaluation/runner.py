"""Every metric the inputs allow, for every method, over a folder of outputs (``pseudohealthy evaluate``).

One pass over the evaluated cases loads each pathological input once and, for each method that has
the case, computes the per-case metrics (identity; ground-truth lesion metrics where a true healthy
volume exists) and collects the normalised working-size lesion slices. Then, per method, A-Dice and
Healthiness train their segmentors on those slices; GVS checkpoints give segmentor generalisation.
Results go to ``metrics.json``, ``metrics.csv``, ``config.yaml`` and ``report.html`` in the output folder.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pseudohealthy.errors import UserError, refuse_existing_output
from pseudohealthy.evaluation.inputs import (
    HEALTHY, ORIGINAL, MethodSpec, attach_cases, load_evaluation_case, method_volume, parse_methods,
    preprocess_config, resolve_cases,
)
from pseudohealthy.evaluation.outputs import json_safe
from pseudohealthy.inference.fills import check_kind
from pseudohealthy.metrics.adice import ADiceConfig, ADiceMetric, check_config
from pseudohealthy.metrics.ground_truth import GroundTruthMetric
from pseudohealthy.metrics.healthiness import HealthinessConfig
from pseudohealthy.metrics.identity import IdentityMetric

IDENTITY_SLICES = ("lesion", "all")


@dataclass
class EvaluationSettings:
    """Everything that decides the numbers of an evaluation; written to ``config.yaml`` and the report."""

    working_size: int = 64  # in-plane size of the slices A-Dice and Healthiness train on
    seed: int = 0  # figure slice choice; A-Dice trial t uses seed + t; Healthiness training
    adice: ADiceConfig | None = field(default_factory=ADiceConfig)  # None: skip A-Dice
    healthiness: HealthinessConfig | None = field(default_factory=HealthinessConfig)  # None: skip
    healthiness_cache: str | None = None  # folder of cached reference segmentors; None: the user cache
    identity_slices: str = "lesion"  # lesion: slices with lesion only (paper); all: every slice
    figure_slices: int = 4
    source: str = "auto"
    modality: str = "t2"
    device: str = "cpu"
    fills: list[str] = field(default_factory=list)  # classical fills added as methods fill-<kind> (inference.fills)


@dataclass
class FigureSlice:
    """One row of the comparison grid: 2D slices at input size, rotated for display later."""

    case_id: str
    z: int
    window: tuple[float, float]
    image: np.ndarray
    lesion: np.ndarray
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _MethodRun:
    spec: MethodSpec
    identity: IdentityMetric = field(default_factory=IdentityMetric)
    truth: GroundTruthMetric = field(default_factory=GroundTruthMetric)
    synthetic: list[np.ndarray] = field(default_factory=list)  # (n, H, W) lesion slices of x_s
    pathological: list[np.ndarray] = field(default_factory=list)  # the same slices of x_p
    lesions: list[np.ndarray] = field(default_factory=list)


def check_settings(settings: EvaluationSettings) -> None:
    """Refuse settings that cannot work before any volume is read, one sentence each."""
    from pseudohealthy.config import PreprocessConfig
    from pseudohealthy.data.preprocessing import validate_config

    validate_config(PreprocessConfig(working_size=settings.working_size))
    for kind in settings.fills:
        check_kind(kind)
    if settings.identity_slices not in IDENTITY_SLICES:
        raise UserError(f"identity slices {settings.identity_slices!r} is unknown; choose one of {', '.join(IDENTITY_SLICES)}.")
    if settings.adice is not None:
        check_config(settings.adice)
        multiple = 2**settings.adice.seg_depth
        if settings.working_size % multiple:
            raise UserError(f"working size {settings.working_size} must be a multiple of {multiple} for the A-Dice U-Net; for example 64.")


def _figure_plan(case_ids: list[str], count: int, seed: int) -> dict[str, int]:
    """How many figure rows each case gives: ``count`` rows spread over seeded-chosen cases."""
    if count <= 0 or not case_ids:
        return {}
    rng = np.random.default_rng(seed)
    order = [case_ids[i] for i in rng.permutation(len(case_ids))]
    plan: dict[str, int] = {}
    for k in range(count):
        plan[order[k % len(order)]] = plan.get(order[k % len(order)], 0) + 1
    return plan


def _figure_slices_of(lesion: np.ndarray, rows: int, rng: np.random.Generator) -> list[int]:
    """Seeded choice of ``rows`` axial slices among those whose lesion area is at least half the largest."""
    area = lesion.sum(axis=(0, 1))
    if area.max() == 0:
        return []
    candidates = np.flatnonzero(area >= 0.5 * area.max())
    return sorted(rng.choice(candidates, size=min(rows, len(candidates)), replace=False).tolist())


def _case_pass(specs: list[MethodSpec], evaluated, source: str, healthy_dir: Path | None, settings: EvaluationSettings,
               runs: dict[str, _MethodRun], figures: list[FigureSlice], progress: bool) -> list[dict[str, Any]]:
    """Load each case once; per-case metrics and lesion slices for every method that has it."""
    from tqdm import tqdm

    from pseudohealthy.data.preprocessing import normalise_like, prepare_mask, prepare_volume

    cfg = preprocess_config(source, settings.modality, settings.working_size)
    plan = _figure_plan([c.case_id for c in evaluated], settings.figure_slices, settings.seed)
    case_rows = []
    for index, files in enumerate(tqdm(evaluated, desc="evaluate", unit="case", disable=not progress)):
        case = load_evaluation_case(files, source, healthy_dir)
        image, lesion = case.image.data, case.lesion
        prepared = prepare_volume(image, cfg, region=case.region)
        region = prepared.region_full if prepared.region_full is not None else image > prepared.clip[0]
        if settings.identity_slices == "lesion":
            normal = (region & ~lesion) & lesion.any(axis=(0, 1))[None, None, :]
        else:
            normal = region & ~lesion
        lesion_w = prepare_mask(lesion, prepared)
        keep = lesion_w.any(axis=(1, 2))
        rows = []
        if case.case_id in plan:
            rng = np.random.default_rng([settings.seed, index])
            for z in _figure_slices_of(lesion, plan[case.case_id], rng):
                rows.append(FigureSlice(case.case_id, z, prepared.clip, image[:, :, z].copy(), lesion[:, :, z].copy()))
        healthy = case.healthy.data if case.healthy is not None else None
        for spec in specs:
            if case.case_id not in spec.available:
                continue
            run = runs[spec.name]
            output = method_volume(spec, case)
            run.identity.update(case.case_id, image, output, normal, prepared.clip)
            if healthy is not None:
                run.truth.update(case.case_id, image, output, healthy, lesion, region)
            if keep.any():
                synthetic = normalise_like(output, prepared, cfg)
                run.synthetic.append(synthetic[keep])
                run.pathological.append(prepared.slices[keep])
                run.lesions.append(lesion_w[keep])
            for row in rows:
                row.outputs[spec.name] = output[:, :, row.z].copy()
        figures.extend(rows)
        case_rows.append({"case_id": case.case_id, "has_healthy": healthy is not None,
                          "lesion_voxels": int(lesion.sum()), "lesion_slices": int(keep.sum()), "clip": list(prepared.clip)})
    return case_rows


@dataclass
class MethodSlices:
    """A method's working-size lesion slices: outputs, the matching inputs, and the lesion masks."""

    spec: MethodSpec
    synthetic: np.ndarray  # (N, H, W) float32, x_s normalised with the input's own clip and scale
    pathological: np.ndarray  # (N, H, W) float32, x_p
    lesions: np.ndarray  # (N, H, W) bool
    source: str
    others: list  # CaseFiles of the data set that are not evaluated (Healthiness training)
    evaluated: list


def collect_method_slices(data: str | Path, method: str | MethodSpec, cases: list[str] | None = None, working_size: int = 64,
                          source: str = "auto", modality: str = "t2", healthy_dir: str | Path | None = None,
                          progress: bool = True) -> MethodSlices:
    """The lesion slices one method gives for A-Dice or Healthiness (the cases it lacks are left out)."""
    from tqdm import tqdm

    from pseudohealthy.data.preprocessing import normalise_like, prepare_mask, prepare_volume

    spec = method if isinstance(method, MethodSpec) else parse_methods([method])[0]
    healthy_dir = Path(healthy_dir) if healthy_dir is not None else None
    source, evaluated, others = resolve_cases(data, cases, source, modality)
    attach_cases([spec], evaluated, healthy_dir)
    cfg = preprocess_config(source, modality, working_size)
    synthetic, pathological, lesions = [], [], []
    for files in tqdm([f for f in evaluated if f.case_id in spec.available], desc=f"slices {spec.name}", unit="case", disable=not progress, leave=False):
        case = load_evaluation_case(files, source, healthy_dir)
        prepared = prepare_volume(case.image.data, cfg, region=case.region)
        mask = prepare_mask(case.lesion, prepared)
        keep = mask.any(axis=(1, 2))
        synthetic.append(normalise_like(method_volume(spec, case), prepared, cfg)[keep])
        pathological.append(prepared.slices[keep])
        lesions.append(mask[keep])
    return MethodSlices(spec, np.concatenate(synthetic), np.concatenate(pathological), np.concatenate(lesions), source, others, evaluated)


def healthiness_training_slices(others: list, evaluated: list, source: str, modality: str, working_size: int,
                                progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str], bool]:
    """Pathological lesion slices for the Healthiness reference segmentor: the cases not evaluated,
    else (none left) the evaluated ones. Returns ``(images, lesions, case ids, used_evaluated)``."""
    from tqdm import tqdm

    from pseudohealthy.data.preprocessing import prepare_mask, prepare_volume

    cfg = preprocess_config(source, modality, working_size)
    chosen = others if others else evaluated
    images, lesions = [], []
    for files in tqdm(chosen, desc="Healthiness training slices", unit="case", disable=not progress, leave=False):
        case = load_evaluation_case(files, source, None)
        prepared = prepare_volume(case.image.data, cfg, region=case.region)
        mask = prepare_mask(case.lesion, prepared)
        keep = mask.any(axis=(1, 2))
        images.append(prepared.slices[keep])
        lesions.append(mask[keep])
    return np.concatenate(images), np.concatenate(lesions), [c.case_id for c in chosen], not others


def evaluate(data: str | Path, methods: list[str] | list[MethodSpec], output: str | Path,
             settings: EvaluationSettings | None = None, cases: list[str] | None = None,
             healthy_dir: str | Path | None = None, segmentors: dict[str, str] | None = None,
             overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Evaluate ``methods`` on the cases of ``data`` and write metrics and report to ``output``.

    ``methods``: ``NAME=DIR`` / ``NAME=@original`` / ``NAME=@healthy`` strings (or parsed specs);
    ``cases``: the case ids to evaluate (None: every case of ``data``); ``healthy_dir``: true healthy
    volumes ``<case_id>.nii.gz`` for data sets that do not carry them; ``segmentors``: name -> GVS
    checkpoint for the segmentor-generalisation study. Returns what ``metrics.json`` holds.
    """
    import pseudohealthy
    from pseudohealthy.config import write_config
    from pseudohealthy.evaluation.report import write_report
    from pseudohealthy.evaluation.tables import write_csv

    settings = settings or EvaluationSettings()
    check_settings(settings)
    output = Path(output)
    refuse_existing_output(output, overwrite)
    specs = [m if isinstance(m, MethodSpec) else None for m in methods]
    if any(s is None for s in specs):
        specs = parse_methods([str(m) for m in methods])
    if not specs and not settings.fills:
        raise UserError("no method to evaluate; pass at least one --method NAME=DIR or --fills KIND.")
    healthy_dir = Path(healthy_dir) if healthy_dir is not None else None
    if healthy_dir is not None and not healthy_dir.is_dir():
        raise UserError(f"{healthy_dir}: folder of true healthy volumes not found.")
    source, evaluated, others = resolve_cases(data, cases, settings.source, settings.modality)
    specs = specs + _fill_methods(data, specs, evaluated, output, source, settings, progress)
    attach_cases(specs, evaluated, healthy_dir)
    for name, path in (segmentors or {}).items():
        if not Path(path).exists():
            raise UserError(f"{path}: GVS checkpoint for segmentor {name} not found.")

    notes: list[str] = []
    for spec in specs:
        if spec.missing:
            notes.append(f"method {spec.name}: {len(spec.missing)} of {len(evaluated)} cases missing in {spec.path} "
                         f"({', '.join(spec.missing)}); its metrics cover the other {len(spec.available)}.")
    runs = {s.name: _MethodRun(s) for s in specs}
    figures: list[FigureSlice] = []
    case_rows = _case_pass(specs, evaluated, source, healthy_dir, settings, runs, figures, progress)
    if not any(r["has_healthy"] for r in case_rows):
        notes.append("no true healthy volumes: the ground-truth lesion metrics are left out.")

    results: dict[str, Any] = {
        "version": pseudohealthy.__version__, "data": str(data), "source": source,
        "cases": [c.case_id for c in evaluated], "case_info": case_rows,
        "settings": _settings_dict(settings, cases, healthy_dir, segmentors), "methods": {}, "segmentors": {}, "notes": notes,
    }
    for spec in specs:
        run = runs[spec.name]
        per_case = {cid: {**run.identity.per_case.get(cid, {}), **run.truth.per_case.get(cid, {})} for cid in spec.available}
        summary = {**run.identity.aggregate(), **run.truth.aggregate()}
        results["methods"][spec.name] = {"source": spec.source, "special": spec.special, "cases": spec.available,
                                         "missing": spec.missing, "per_case": per_case, "summary": summary,
                                         "n_lesion_slices": int(sum(len(s) for s in run.synthetic)),
                                         "adice": None, "healthiness": None}

    if settings.adice is not None:
        for spec in specs:
            run = runs[spec.name]
            if not run.synthetic:
                notes.append(f"method {spec.name}: no lesion slices, A-Dice left out.")
                continue
            metric = ADiceMetric(settings.adice)
            for images, lesions in zip(run.synthetic, run.lesions):
                metric.update(images, lesions)
            results["methods"][spec.name]["adice"] = metric.aggregate(progress=progress, label=f"A-Dice {spec.name}").as_dict()

    if settings.healthiness is not None:
        _run_healthiness(results, specs, runs, others, evaluated, source, settings, healthy_dir, progress)

    for name, path in (segmentors or {}).items():
        from pseudohealthy.metrics.segmentor_generalisation import checkpoint_generalisation

        loaded = [load_evaluation_case(f, source, None) for f in evaluated]
        results["segmentors"][name] = checkpoint_generalisation(path, loaded, settings.device)

    output.mkdir(parents=True, exist_ok=True)
    (output / "metrics.json").write_text(json.dumps(json_safe(results), indent=2) + "\n")
    write_csv(results, output / "metrics.csv")
    write_config(results["settings"], output / "config.yaml")
    write_report(results, figures, output / "report.html")
    return results


def _fill_methods(data, specs: list[MethodSpec], evaluated, output: Path, source: str, settings: EvaluationSettings,
                  progress: bool) -> list[MethodSpec]:
    """Write (or reuse) the classical fills of ``settings.fills`` for the evaluated cases under
    ``<output>/fills/<kind>/`` and return them as methods named ``fill-<kind>``."""
    from pseudohealthy.inference.fills import write_fills

    kinds = list(dict.fromkeys(settings.fills))
    names = {s.name for s in specs}
    clash = [f"fill-{k}" for k in kinds if f"fill-{k}" in names]
    if clash:
        raise UserError(f"method name(s) {', '.join(clash)} are taken by --fills; rename that --method.")
    if not kinds:
        return []
    # the evaluation's own output folder was already checked (empty, or --overwrite), so its fills may be replaced
    folders = write_fills(data, kinds, output / "fills", cases=[f.case_id for f in evaluated], source=source,
                          modality=settings.modality, seed=settings.seed, overwrite=True, reuse=True, progress=progress)
    return [MethodSpec(f"fill-{kind}", folder) for kind, folder in folders.items()]


def _run_healthiness(results, specs, runs, others, evaluated, source, settings, healthy_dir, progress) -> None:
    from pseudohealthy.metrics.healthiness import HealthinessMetric, reference_segmentor

    hcfg = settings.healthiness
    images, lesions, trained_on, on_evaluated = healthiness_training_slices(others, evaluated, source, settings.modality, settings.working_size, progress)
    if len(images) == 0:
        results["notes"].append("no pathological lesion slices to train the Healthiness reference segmentor; Healthiness left out.")
        return
    segmentor, cache_file, reused = reference_segmentor(images, lesions, hcfg, settings.healthiness_cache, progress)
    results["healthiness_segmentor"] = {"cache_file": str(cache_file), "reused": reused, "trained_on": trained_on,
                                        "n_slices": int(len(images))}
    if on_evaluated:
        results["notes"].append("Healthiness: the data set has no cases besides the evaluated ones, so its reference "
                                "segmentor was trained on the evaluated cases' pathological slices themselves.")
    for spec in specs:
        run = runs[spec.name]
        if not run.synthetic:
            continue
        metric = HealthinessMetric(segmentor, hcfg.device)
        for synthetic, pathological, lesions in zip(run.synthetic, run.pathological, run.lesions):
            metric.update(synthetic, pathological, lesions)
        results["methods"][spec.name]["healthiness"] = metric.aggregate()


def _settings_dict(settings: EvaluationSettings, cases, healthy_dir, segmentors) -> dict[str, Any]:
    values = asdict(settings)
    values["cases"] = cases
    values["healthy_dir"] = str(healthy_dir) if healthy_dir is not None else None
    values["segmentors"] = dict(segmentors or {})
    return values


__all__ = ["EvaluationSettings", "FigureSlice", "evaluate", "HEALTHY", "ORIGINAL"]
