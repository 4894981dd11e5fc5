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
    from pseudohealthy.config import PreprocessConfig
    from pseudohealthy.data.case_writer import case_region, write_case_volumes
    from pseudohealthy.data.preprocessing import prepare_volume

    if kind not in KINDS:
        raise UserError(f"counterfeit kind {kind!r} is unknown; choose one of {', '.join(KINDS)}.")

    def make(case, index: int, resolved_source: str) -> np.ndarray:
        scale = 1.0
        if kind == "noise":  # only the noise needs the normalisation's per-slice scale
            scale = prepare_volume(case.image.data, PreprocessConfig(source=resolved_source, modality=modality), region=case.region).scale
        return make_counterfeit(case.image.data, case.lesion, case_region(case), kind, scale, seed=seed * 100003 + index)

    settings = {"kind": kind, "seed": seed, "noise_variance_normalised": NOISE_VARIANCE if kind == "noise" else None,
                "definition": __doc__.strip().split("\n\n")[1]}
    return write_case_volumes(data, output, make, settings, "counterfeit.json", f"counterfeit ({kind})", cases=cases,
                              source=source, modality=modality, overwrite=overwrite, progress=progress)
