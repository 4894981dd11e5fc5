"""GVS training and inference throughput per preset and image size (a benchmark, not a test).

    .venv/bin/python benchmarks/train_throughput.py --presets tiny small paper --sizes 64 128 --steps 3

For each (preset, size) a fresh subprocess (so that peak memory is that configuration's own) builds
GVSModel on random data and reports:
- ms per training step (Step A + Step B, one batch) and training images/s;
- the same step without the shared generator forward (naive seg-first: two G forwards) and the saving,
  in time (fastest of interleaved runs) and in counted FLOPs;
- inference images/s (`synthesize`, generator only, no grad);
- peak memory: CUDA `max_memory_allocated`, CPU the growth of the process's max RSS over its baseline;
- FLOPs per training step counted by `torch.utils.flop_counter.FlopCounterMode` (convs and matmuls,
  forward and backward), and the achieved FLOP/s as a fraction of a large fp32 matmul timed in the
  same process (the machine's practical peak for dense fp32 work).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device, repeats: int) -> float:
    """Fastest of ``repeats`` runs of ``fn`` after one warm-up run, in seconds (the minimum is the
    least disturbed figure on a machine shared with other work)."""
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_flops_per_second(device, n: int) -> float:
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    seconds = _time(lambda: a @ b, device, 3)
    return 2 * n**3 / seconds


def measure(preset: str, size: int, steps: int, batch: int | None, device_name: str, threads: int | None) -> dict:
    """One configuration, in this process."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pseudohealthy.config import resolve_run_config
    from pseudohealthy.models import count_parameters
    from pseudohealthy.device import resolve_device
    from pseudohealthy.training.gvs import GVSModel

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = resolve_device(device_name)
    cfg = resolve_run_config(preset=preset)
    batch = batch or cfg.train.batch_size
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    x = torch.rand(batch, 1, size, size, device=device) * 2 - 1
    lesion = (torch.rand(batch, 1, size, size, device=device) > 0.9).float()
    result = {"preset": preset, "size": size, "batch": batch, "device": str(device), "threads": torch.get_num_threads()}
    shared = GVSModel(cfg, device)
    shared.set_input((x, lesion))
    shared.optimize_parameters()
    if device.type == "cuda":
        result["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        result["peak_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    naive = GVSModel(cfg, device, share_generator_forward=False)
    naive.set_input((x, lesion))
    for name, model in (("flops_step", shared), ("flops_step_naive", naive)):
        counter = FlopCounterMode(display=False)
        with counter:
            model.optimize_parameters()
        result[name] = counter.get_total_flops()
    # Interleaved, so that both variants see the same background load.
    best = {"ms_step": float("inf"), "ms_step_naive": float("inf")}
    for _ in range(steps):
        for name, model in (("ms_step", shared), ("ms_step_naive", naive)):
            best[name] = min(best[name], 1000 * _time(model.optimize_parameters, device, 1))
    result.update(best)
    result["params_g"] = count_parameters(shared.generator)
    result["params_s"] = count_parameters(shared.segmentor)
    result["train_img_s"] = batch / (result["ms_step"] / 1000)
    result["infer_img_s"] = batch / _time(lambda: shared.synthesize(x), device, steps)
    result["achieved_flop_s"] = result["flops_step"] / (result["ms_step"] / 1000)
    result["matmul_flop_s"] = matmul_flops_per_second(device, 8192 if device.type == "cuda" else 2048)
    return result


def print_table(rows: list[dict]) -> None:
    head = (f"{'preset':<7}{'size':>5}{'batch':>6}{'G params':>10}{'S params':>10}{'ms/step':>10}{'img/s':>8}"
            f"{'naive ms':>10}{'saved':>7}{'FLOPs saved':>12}{'infer img/s':>12}{'peak MiB':>10}{'GFLOP/step':>11}{'GFLOP/s':>9}{'of matmul':>10}")
    print(head)
    print("-" * len(head))
    for r in rows:
        saved = 1 - r["ms_step"] / r["ms_step_naive"]
        print(f"{r['preset']:<7}{r['size']:>5}{r['batch']:>6}{r['params_g'] / 1e6:>9.2f}M{r['params_s'] / 1e6:>9.2f}M"
              f"{r['ms_step']:>10.1f}{r['train_img_s']:>8.1f}{r['ms_step_naive']:>10.1f}{saved:>7.1%}"
              f"{1 - r['flops_step'] / r['flops_step_naive']:>12.1%}"
              f"{r['infer_img_s']:>12.1f}{r['peak_mib']:>10.0f}{r['flops_step'] / 1e9:>11.2f}"
              f"{r['achieved_flop_s'] / 1e9:>9.1f}{r['achieved_flop_s'] / r['matmul_flop_s']:>10.1%}")
    if rows:
        r = rows[0]
        print(f"\ndevice {r['device']}, {r['threads']} threads; fp32 matmul reference "
              f"{r['matmul_flop_s'] / 1e9:.1f} GFLOP/s; 'saved' = time saved by sharing the generator forward "
              "between Step A and Step B (seg-first).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "paper"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (fastest counts)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the preset's)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--one", nargs=2, metavar=("PRESET", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.steps, args.batch, args.device, args.threads)))
        return
    rows = []
    for preset in args.presets:
        for size in args.sizes:
            cmd = [sys.executable, os.path.abspath(__file__), "--one", preset, str(size), "--steps", str(args.steps),
                   "--device", args.device]
            cmd += ["--batch", str(args.batch)] if args.batch else []
            cmd += ["--threads", str(args.threads)] if args.threads else []
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{preset} {size}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"measured {preset} at {size}x{size}", file=sys.stderr)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
