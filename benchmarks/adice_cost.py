"""Cost of one A-Dice trial at the demo's size (a benchmark, not a test).

    .venv/bin/python benchmarks/adice_cost.py                 # demo size: 80 lesion slices at 64 x 64
    .venv/bin/python benchmarks/adice_cost.py --slices 400 --size 128 --threads 2

The time of a trial depends on the number of lesion slices, their size, the epochs and the U-Net,
not on what the slices show, so random slices with random blob lesions stand in for real outputs.
The demo evaluates 4 phantom test cases of 96 x 96 x 64 voxels at working size 64, about 80 lesion
slices. Prints seconds per trial, per epoch and per optimisation step with the settings used.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace

import numpy as np


def blob_slices(count: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random slices in [-1, 1] with one bright disc each (the lesion), and the masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    lesions = np.zeros((count, size, size), bool)
    for i in range(count):
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        radius = rng.uniform(0.04, 0.12) * size
        lesions[i] = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    images = np.clip(rng.normal(-0.3, 0.2, lesions.shape) + 0.8 * lesions, -1, 1).astype(np.float32)
    return images, lesions


def main() -> None:
    from pseudohealthy.metrics.adice import ADiceConfig, adice

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=80, help="lesion slices (demo: about 80)")
    parser.add_argument("--size", type=int, default=64, help="working size (demo: 64)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    cfg = replace(ADiceConfig(), epochs=args.epochs, trials=args.trials, device=args.device)
    images, lesions = blob_slices(args.slices, args.size)
    # Warm-up: the first optimiser construction imports torch's compiler stack (seconds, once per process).
    adice(images[:8], lesions[:8], replace(cfg, epochs=1, trials=1))
    started = time.perf_counter()
    result = adice(images, lesions, cfg)
    seconds = (time.perf_counter() - started) / args.trials
    steps = args.epochs * -(-args.slices // cfg.batch_size)
    print(json.dumps({
        "seconds_per_trial": round(seconds, 2),
        "seconds_per_epoch": round(seconds / args.epochs, 3),
        "ms_per_step_incl_dice": round(1000 * seconds / steps, 1),
        "slices": args.slices, "size": args.size, "threads": args.threads,
        "adice_on_blobs": round(result.mean, 3), "config": asdict(cfg),
    }, indent=2))


if __name__ == "__main__":
    main()
