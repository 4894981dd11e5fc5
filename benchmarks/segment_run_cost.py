"""How long one (alpha, trial) run of `pseudohealthy segment-experiment` takes on this machine.

    python benchmarks/segment_run_cost.py --data runs/demo/cache --checkpoint runs/demo/run [--epochs 10]

Prints the one-off cost of running the generator over the cache, then, per alpha, the seconds to
train one U-Net and to predict the test slices (the unit of work the experiment resumes at).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="slice cache")
    parser.add_argument("--checkpoint", type=Path, required=True, help="GVS checkpoint or run folder")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.7])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from pseudohealthy.data.cache import open_array, read_slice_table
    from pseudohealthy.data.splits import read_splits
    from pseudohealthy.experiments.segmentation import (RunSpec, SegmentExperimentConfig, enhanced_images, predict,
                                                        synthesize_cache, train_segmentor)
    from pseudohealthy.checkpoints import load_generator

    device = torch.device("cpu")
    generator, _, _ = load_generator(args.checkpoint, device)
    images = np.asarray(open_array(args.data, "images"), np.float32)
    lesions = np.asarray(open_array(args.data, "lesions"))
    regions = np.asarray(open_array(args.data, "regions"))
    t = time.perf_counter()
    synthetic = synthesize_cache(generator, images, device, progress=False)
    print(f"generator over {len(images)} cached slices: {time.perf_counter() - t:.1f} s (once per experiment)")
    table = read_slice_table(args.data)
    splits = read_splits(args.data / "splits.json")
    case_of = np.array([r.case_id for r in table])
    lesion_rows = np.array([r.has_lesion for r in table])
    train_rows = np.isin(case_of, splits["train"]) & lesion_rows
    test_rows = np.isin(case_of, splits["test"]) & lesion_rows
    cfg = SegmentExperimentConfig(epochs=args.epochs, device="cpu")
    print(f"{'alpha':>6} {'train slices':>13} {'epochs':>7} {'train s':>8} {'predict s':>10}")
    for alpha in args.alphas:
        enhanced = enhanced_images(images, synthetic, regions, alpha)
        t = time.perf_counter()
        model = train_segmentor(enhanced[train_rows], lesions[train_rows], cfg, RunSpec("ce", False, alpha, 1.0, 0), device, seed=0)
        trained = time.perf_counter() - t
        t = time.perf_counter()
        predict(model, enhanced[test_rows], device)
        print(f"{alpha:>6.2f} {int(train_rows.sum()):>13} {args.epochs:>7} {trained:>8.1f} {time.perf_counter() - t:>10.2f}")


if __name__ == "__main__":
    main()
