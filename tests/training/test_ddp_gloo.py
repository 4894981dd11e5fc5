"""DDP through torchrun: 2 CPU processes with gloo end with identical weights; rank 0 alone writes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from pseudohealthy.models import build_generator, build_segmentor
from pseudohealthy.config import resolve_run_config
from pseudohealthy.training.distributed import TEST_HASH_ENV, state_hash


def _train_on_two_ranks(cache: Path, out: Path, hashes: Path, env: dict, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "pseudohealthy", "train", "--data", str(cache), "--output", str(out), "--preset", "tiny",
           *overrides, "train.device=cpu", "--no-progress"]
    # faulthandler: should a rank die of a signal, its Python stack is in stderr.
    done = subprocess.run(cmd, env={**env, TEST_HASH_ENV: str(hashes), "PYTHONFAULTHANDLER": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[:3000] + "\n...\n" + done.stderr[-3000:]
    return done


def test_two_gloo_processes_hold_identical_weights(tiny_cache: Path, tmp_path: Path, subprocess_env: dict) -> None:
    out, hashes = tmp_path / "run", tmp_path / "hashes"
    done = _train_on_two_ranks(tiny_cache, out, hashes, subprocess_env, "train.epochs=2", "train.max_steps_per_epoch=3")
    assert done.stdout.count("trained:") == 1  # one rank reports

    rank_hashes = [(hashes / f"rank-{r}.txt").read_text().strip() for r in (0, 1)]
    assert rank_hashes[0] == rank_hashes[1]
    # ... and they are the weights rank 0 saved.
    payload = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    cfg = resolve_run_config(preset="tiny")
    g, s = build_generator(cfg.model), build_segmentor(cfg.model)
    g.load_state_dict(payload["generator"])
    s.load_state_dict(payload["segmentor"])
    assert state_hash(g, s) == rank_hashes[0]

    files = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert files == ["checkpoints", "checkpoints/epoch-001.pt", "checkpoints/epoch-002.pt", "checkpoints/last.pt",
                     "config.yaml", "losses.csv", "preprocess.json", "previews", "previews/epoch-001.png",
                     "previews/epoch-002.png", "train.log"]
    assert len((out / "losses.csv").read_text().strip().splitlines()) == 3  # header + one row per epoch
    log = (out / "train.log").read_text()
    assert "2 processes" in log and log.count("epoch 2/2") == 1


def test_two_gloo_processes_share_one_time_budget(tiny_cache: Path, tmp_path: Path, subprocess_env: dict) -> None:
    """Under train.max_minutes every rank follows rank 0's clock: same learning rate at every step and the
    same last step, so the run ends (no rank waits for a partner that already stopped) with equal weights."""
    out, hashes = tmp_path / "run", tmp_path / "hashes"
    _train_on_two_ranks(tiny_cache, out, hashes, subprocess_env, "train.epochs=500", "train.max_minutes=0.04")
    assert "time budget" in (out / "train.log").read_text()
    rank_hashes = [(hashes / f"rank-{r}.txt").read_text().strip() for r in (0, 1)]
    assert rank_hashes[0] == rank_hashes[1]


def test_stop_drops_the_ddp_wrappers_before_it_destroys_the_group(tmp_path: Path) -> None:
    """`distributed.stop` lets the caller release what holds the process group (a DDP wrapper keeps it
    alive past destroy_process_group) after the barrier and before the group goes, in this process."""
    import gc
    import weakref

    import torch.distributed as dist
    from torch import nn

    from pseudohealthy.training import distributed

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    holder = {"net": nn.parallel.DistributedDataParallel(nn.Linear(2, 2))}
    alive = weakref.ref(holder["net"])
    seen_initialized = []

    def release() -> None:
        seen_initialized.append(dist.is_initialized())
        holder.clear()

    try:
        distributed.stop(wait=True, release=release)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    gc.collect()
    assert seen_initialized == [True]  # released while the group still existed
    assert alive() is None and not dist.is_initialized()
