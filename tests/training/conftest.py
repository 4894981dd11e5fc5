"""A tiny slice cache (32x32 slices of `write_tiny_brats_case` volumes), built once per session."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


def _root_helpers():
    """tests/conftest.py as a module of its own name (both files are called conftest)."""
    spec = importlib.util.spec_from_file_location("_pseudohealthy_root_conftest", Path(__file__).parents[1] / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


write_tiny_brats_case = _root_helpers().write_tiny_brats_case


@pytest.fixture(scope="session")
def subprocess_env() -> dict[str, str]:
    """Environment for training subprocesses: one thread each (deterministic, fair to a shared machine)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 32x32x16 BraTS-layout cases (one without lesion) preprocessed; 5 train / 1 test cases."""
    from pseudohealthy.config import PreprocessConfig
    from pseudohealthy.data.cache import preprocess_dataset

    root = tmp_path_factory.mktemp("gvs-raw")
    for i in range(6):
        write_tiny_brats_case(root, f"Case{i:03d}", seed=i, lesion=(i != 5))
    cache = tmp_path_factory.mktemp("gvs-cache") / "cache"
    preprocess_dataset(root, cache, PreprocessConfig(source="brats", test_fraction=0.2), progress=False, warn=lambda m: None)
    return cache


@pytest.fixture
def tiny_run_config(tiny_cache: Path):
    """The tiny preset on the tiny cache: 2 epochs of 3 steps, CPU."""
    from pseudohealthy.config import resolve_run_config

    return resolve_run_config(preset="tiny", data=str(tiny_cache),
                              overrides=["train.epochs=2", "train.max_steps_per_epoch=3", "train.device=cpu"])


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: tiny networks gain nothing from more, and the machine is shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def truth_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-case brain phantom (true healthy volumes) cached at its native 48x48."""
    from pseudohealthy.config import PreprocessConfig
    from pseudohealthy.data.cache import preprocess_dataset
    from pseudohealthy.data.phantom import generate_phantom

    root = tmp_path_factory.mktemp("hybrid")
    generate_phantom(root / "phantom", cases=4, seed=3, shape=(48, 48, 24), progress=False)
    preprocess_dataset(root / "phantom", root / "cache", PreprocessConfig(source="brats", test_fraction=0.25), progress=False)
    return root / "cache"
