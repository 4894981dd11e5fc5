"""Shared fixtures: tiny NIfTI cases written on the fly, the real BraTS case, a CLI runner."""
from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def write_tiny_brats_case(root: Path, case_id: str, shape=(32, 32, 16), seed: int = 0, lesion: bool = True,
                          affine: np.ndarray | None = None, modality: str = "t2") -> Path:
    """Write one small BraTS-layout case: an ellipsoid 'brain' with texture and a bright blob lesion.

    Intensities are int16 like real BraTS exports (with a few small negative values at the border);
    the lesion (labels 1, 2) is hyperintense as in T2. Returns the case folder.
    """
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    brain = (x / 0.8) ** 2 + (y / 0.9) ** 2 + (z / 0.85) ** 2 < 1
    img = np.where(brain, 300 + 80 * np.sin(6 * x) * np.cos(5 * y) + rng.normal(0, 10, shape), 0)
    seg = np.zeros(shape, np.int16)
    if lesion:
        cx, cy = rng.uniform(-0.3, 0.3, 2)
        blob = ((x - cx) / 0.3) ** 2 + ((y - cy) / 0.25) ** 2 + (z / 0.4) ** 2 < 1
        core = ((x - cx) / 0.15) ** 2 + ((y - cy) / 0.12) ** 2 + (z / 0.2) ** 2 < 1
        blob &= brain
        core &= brain
        img[blob] += 250
        img[core] += 150
        seg[blob] = 2
        seg[core] = 1
    edge = brain & ~np.roll(brain, 1, axis=0)
    img[edge] = -2  # interpolation leftovers, as in real exports
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) if affine is None else affine
    folder = root / case_id
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(img.astype(np.int16), affine), str(folder / f"{case_id}_{modality}.nii.gz"))
    nib.save(nib.Nifti1Image(seg, affine), str(folder / f"{case_id}_seg.nii.gz"))
    return folder


@pytest.fixture
def tiny_brats(tmp_path: Path) -> Path:
    """A BraTS-layout folder with 6 tiny cases (one of them without lesion)."""
    root = tmp_path / "brats"
    for i in range(6):
        write_tiny_brats_case(root, f"Case{i:03d}", seed=i, lesion=(i != 5))
    return root


def _real_case_dir() -> Path | None:
    env = os.environ.get("PSEUDOHEALTHY_REAL_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(PROJECT_ROOT.parent / "shared" / "data" / "brats-real")
    for c in candidates:
        if (c / "TCGA-DU-7294" / "TCGA-DU-7294_t2.nii.gz").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def real_brats() -> Path:
    """The real BraTS case folder (TCGA-DU-7294, TCIA TCGA-LGG, CC BY 3.0, via BrainLesion tutorials).

    Skips where absent, except when PSEUDOHEALTHY_REQUIRE_REAL_DATA=1 (CI), where it fails.
    """
    found = _real_case_dir()
    if found is None:
        msg = "real BraTS case not found: set PSEUDOHEALTHY_REAL_DATA to the brats-real folder"
        if os.environ.get("PSEUDOHEALTHY_REQUIRE_REAL_DATA") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return found


@pytest.fixture
def cli():
    """Invoke the CLI in-process: ``cli(["preprocess", ...])`` returns a click Result."""
    from typer.testing import CliRunner

    from pseudohealthy.cli.main import app

    runner = CliRunner()

    def invoke(args: list[str]):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture
def synthesize_cli(cli):
    """``synthesize_cli.ok(checkpoint, case, output, *extra)``: ``pseudohealthy synthesize`` succeeds;
    ``synthesize_cli.refused(checkpoint, case, output, cases)``: each ``(extra arguments, words)`` of
    ``cases`` makes it refuse in one sentence with ``words`` in it, and write nothing."""
    from types import SimpleNamespace

    def ok(checkpoint, case, output, *extra):
        result = cli(["synthesize", "-c", checkpoint, "-i", case, "-o", output, *extra])
        assert result.exit_code == 0, result.output
        return result

    def refused(checkpoint, case, output, cases) -> None:
        for extra, words in cases:
            bad = cli(["synthesize", "-c", checkpoint, "-i", case, "-o", output] + list(extra))
            assert bad.exit_code != 0 and words in bad.output and "Traceback" not in bad.output, bad.output
            assert not output.exists()

    return SimpleNamespace(ok=ok, refused=refused)


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory) -> dict[str, Path]:
    """A tiny BraTS-layout data set, its 32x32 slice cache and a 1-epoch tiny-preset GVS run.

    Returns ``{"raw", "cache", "run", "checkpoint"}``; shared by inference and experiment tests.
    """
    import torch

    from pseudohealthy.config import PreprocessConfig, resolve_run_config
    from pseudohealthy.data.cache import preprocess_dataset
    from pseudohealthy.training.loop import train

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("tiny_trained")
    raw = base / "raw"
    for i in range(6):
        write_tiny_brats_case(raw, f"Case{i:03d}", seed=i)
    cache = base / "cache"
    preprocess_dataset(raw, cache, PreprocessConfig(source="brats", working_size=32, test_fraction=0.34), progress=False)
    run_cfg = resolve_run_config(preset="tiny", overrides=["train.epochs=1", "train.max_steps_per_epoch=3"], data=str(cache))
    checkpoint = train(run_cfg, base / "run", progress=False)
    return {"raw": raw, "cache": cache, "run": base / "run", "checkpoint": Path(checkpoint)}
