"""Lesion contrast enhancement (paper section III-C, eq. 7; SPEC section 5).

The paper's text says the pathological residual is *added* to the original image to highlight
lesions; its printed eq. 7, ``x_p + alpha * (x_s - x_p)``, would instead move the lesion towards the
pseudo-healthy image (alpha = 1 gives ``x_s`` itself, the opposite of enhancement). This project
follows the text:

    x_en = x_p + alpha * (x_p - x_s) = x_p + alpha * residual

so alpha = 0 is the original image and larger alpha raises the lesion's contrast against normal
tissue, which the generator leaves unchanged (residual ~ 0 there).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pseudohealthy.errors import UserError

ALPHA_RANGE = (0.0, 2.0)


def check_alpha(alpha: float) -> float:
    """Refuse an alpha outside [0, 2]: negative values remove the lesion, large ones saturate it."""
    if not (ALPHA_RANGE[0] <= alpha <= ALPHA_RANGE[1]):
        raise UserError(
            f"alpha {alpha} is outside [{ALPHA_RANGE[0]:g}, {ALPHA_RANGE[1]:g}]: below 0 it removes the lesion instead of "
            "enhancing it, above 2 the residual dominates the image."
        )
    return float(alpha)


def enhance(image: np.ndarray, synthetic: np.ndarray, alpha: float) -> np.ndarray:
    """``x_p + alpha * (x_p - x_s)`` on arrays of any shape (same units in, same units out)."""
    check_alpha(alpha)
    image = np.asarray(image, dtype=np.float32)
    return (image + np.float32(alpha) * (image - np.asarray(synthetic, dtype=np.float32))).astype(np.float32)


def alpha_folder(alpha: float) -> str:
    return f"alpha-{alpha:.2f}"


def run_enhancement(
    checkpoint: Path,
    input_path: Path,
    output: Path,
    alphas: list[float],
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
) -> dict[float, list[Path]]:
    """Write ``<output>/alpha-<a>/<case>.nii.gz`` for each alpha, in the input's geometry and units."""
    from tqdm.auto import tqdm

    from pseudohealthy.data.nifti_io import load_nifti, save_like
    from pseudohealthy.errors import refuse_existing_output
    from pseudohealthy.inference.synthesize import list_inputs, open_generator, synthesize_volume

    alphas = [check_alpha(a) for a in alphas]
    generator, cfg, torch_device = open_generator(checkpoint, device)
    inputs = list_inputs(Path(input_path), cfg)
    refuse_existing_output(output, overwrite)
    written: dict[float, list[Path]] = {a: [] for a in alphas}
    for case_id, image_path in tqdm(inputs, desc="enhance", unit="volume", disable=not progress):
        image = load_nifti(image_path, "image")
        result = synthesize_volume(generator, image, cfg, torch_device, case_id)
        for alpha in alphas:
            enhanced = enhance(image.data, result.synthetic, alpha)
            written[alpha].append(save_like(enhanced, image, output / alpha_folder(alpha) / f"{case_id}.nii.gz"))
    return written
