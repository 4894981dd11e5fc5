"""Counterfeit "pseudo-healthy" images (paper Fig. 6), to test what a healthiness metric can see.

- ``mean``: every lesion voxel is set to the mean intensity of the volume's normal tissue (region
  minus lesion). Flat, unrealistic, but without any lesion contrast left.
- ``noise``: zero-mean Gaussian noise of variance 0.2 *on the networks' normalised [-1, 1] scale*
  is added inside the lesion; it is converted to input units with each slice's normalisation scale
  (``normalised = scale * input + offset``), so the counterfeit is written in input units like any
  other method's output.

Both are written in the layout of ``pseudohealthy synthesize`` (``<out>/<case_id>.nii.gz``, input
affine and header), so every metric and report can take them as a method.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pseudohealthy.errors import UserError

KINDS = ("mean", "noise")
NOISE_VARIANCE = 0.2  # on the normalised [-1, 1] scale (paper Fig. 6)


def fill_lesion_with_normal_mean(image: np.ndarray, lesion: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``image`` ``(X, Y, Z)`` with lesion voxels replaced by the mean of normal tissue (region minus lesion).

    Float32, input units. A volume without lesion comes back unchanged.
    """
    lesion = np.asarray(lesion, bool)
    normal = np.asarray(region, bool) & ~lesion
    out = np.array(image, dtype=np.float32, copy=True)
    if lesion.any():
        if not normal.any():
            raise UserError("the volume has no normal tissue outside the lesion to take a mean from.")
        out[lesion] = float(np.mean(np.asarray(image, np.float64)[normal]))
    return out


def add_lesion_noise(image: np.ndarray, lesion: np.ndarray, scale: np.ndarray | float, rng: np.random.Generator,
                     variance: float = NOISE_VARIANCE) -> np.ndarray:
    """``image`` ``(X, Y, Z)`` plus Gaussian noise inside ``lesion``, float32 in input units.

    ``scale``: normalised units per input unit, per slice ``(Z,)`` or one number; the noise has
    variance ``variance`` on the normalised scale, i.e. std ``sqrt(variance) / scale[z]`` in input units.
    """
    lesion = np.asarray(lesion, bool)
    out = np.array(image, dtype=np.float32, copy=True)
    per_slice = np.broadcast_to(np.asarray(scale, np.float64), (image.shape[2],))
    std_input = np.sqrt(variance) / per_slice  # (Z,)
    noise = rng.standard_normal(image.shape) * std_input[None, None, :]
    out[lesion] += noise[lesion].astype(np.float32)
    return out


def make_counterfeit(image: np.ndarray, lesion: np.ndarray, region: np.ndarray, kind: str, scale: np.ndarray | float = 1.0,
                     seed: int = 0) -> np.ndarray:
    """One counterfeit volume of ``kind`` (``mean`` | ``noise``) in input units; see the module doc."""
    if kind not in KINDS:
        raise UserError(f"counterfeit kind {kind!r} is unknown; choose one of {', '.join(KINDS)}.")
    if kind == "mean":
        return fill_lesion_with_normal_mean(image, lesion, region)
    return add_lesion_noise(image, lesion, scale, np.random.default_rng(seed))


def write_counterfeits(data: str | Path, kind: str, output: str | Path, seed: int = 0, overwrite: bool = False,
                       cases: list[str] | None = None, source: str = "auto", modality: str = "t2",
                       progress: bool = True) -> list[Path]:
    """Write the ``kind`` counterfeit of every case of ``data`` (or of ``cases``) to ``output``.

    Output layout as ``pseudohealthy synthesize``: ``<output>/<case_id>.nii.gz`` in the input's
    geometry and units, plus ``counterfeit.json`` with the settings. Each case's noise is seeded by
    ``seed`` and its position in the data set, so a subset gives the same volumes.
    """
    from tqdm import tqdm

    from pseudohealthy.config import PreprocessConfig
    from pseudohealthy.data.nifti_io import save_like
    from pseudohealthy.data.preprocessing import prepare_volume
    from pseudohealthy.data.sources import detect_source, find_cases, load_case
    from pseudohealthy.errors import refuse_existing_output

    if kind not in KINDS:
        raise UserError(f"counterfeit kind {kind!r} is unknown; choose one of {', '.join(KINDS)}.")
    output = Path(output)
    refuse_existing_output(output, overwrite)
    source = detect_source(data) if source == "auto" else source
    found = find_cases(data, source=source, modality=modality)
    indexed = list(enumerate(found))
    if cases is not None:
        by_id = {c.case_id: (i, c) for i, c in indexed}
        unknown = [c for c in cases if c not in by_id]
        if unknown:
            raise UserError(f"{data}: case(s) {', '.join(unknown)} not found in this data set.")
        indexed = [by_id[c] for c in cases]
    output.mkdir(parents=True, exist_ok=True)
    cfg = PreprocessConfig(source=source, modality=modality)
    written = []
    for index, files in tqdm(indexed, desc=f"counterfeit ({kind})", unit="case", disable=not progress):
        case = load_case(files, source)
        image = case.image.data
        region = case.region if case.region is not None else image > 0
        prepared = prepare_volume(image, cfg, region=case.region)
        fake = make_counterfeit(image, case.lesion, region, kind, prepared.scale, seed=seed * 100003 + index)
        written.append(save_like(fake, case.image, output / f"{files.case_id}.nii.gz"))
    settings = {"kind": kind, "seed": seed, "data": str(data), "source": source, "modality": modality,
                "cases": [c.case_id for _, c in indexed],
                "noise_variance_normalised": NOISE_VARIANCE if kind == "noise" else None,
                "definition": __doc__.strip().split("\n\n")[1]}
    (output / "counterfeit.json").write_text(json.dumps(settings, indent=2) + "\n")
    return written
