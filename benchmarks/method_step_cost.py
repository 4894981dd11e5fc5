"""Training cost per step of every registered method (GVS and the baselines) on random data
(a benchmark, not a test).

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/method_step_cost.py --preset small --size 64 --batch 8

For each method: ms per loop step (one batch through ``optimize_parameters``), on the wall clock and
in this process's CPU time (with one thread the CPU figure is the step's own cost, robust to other work
on a shared machine; the wall figure is what a user waits), as the median of ``--rounds`` rounds of
``--steps`` steps each (a round spans whole critic cycles, so VA-GAN and
PHS-GAN rounds hold their generator updates in proportion), ms per generator update, and parameter
counts per network. The lesion-free slices of the baselines come from a stand-in pool of random slices.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time


class RandomHealthy:
    """Stand-in for data.healthy.HealthyPool: random slices in [-1, 1] with a full region."""

    def __init__(self, size: int) -> None:
        self.size = size

    def set_epoch(self, epoch: int) -> None:
        pass

    def draw(self, case_ids):
        import torch

        n = len(case_ids)
        return torch.rand(n, 1, self.size, self.size) * 2 - 1, torch.ones(n, 1, self.size, self.size)


def measure(method: str, preset: str, size: int, batch: int, steps: int, rounds: int, seed: int) -> dict:
    import torch

    from pseudohealthy.config import resolve_run_config
    from pseudohealthy.methods import create_method
    from pseudohealthy.models import count_parameters

    torch.manual_seed(seed)
    cfg = resolve_run_config(preset=preset, overrides=[f"method={method}", f"train.batch_size={batch}", "train.device=cpu"])
    model = create_method(cfg, "cpu", healthy=RandomHealthy(size))
    image = torch.rand(batch, 1, size, size) * 2 - 1
    lesion = (torch.rand(batch, 1, size, size) > 0.9).float()
    batch_data = (image, lesion, torch.ones_like(lesion), [f"case{i}" for i in range(batch)], list(range(batch)))
    critic_steps = getattr(getattr(cfg, method, None), "critic_steps", 1)
    steps = max(steps, critic_steps) // critic_steps * critic_steps  # whole critic cycles per round
    for _ in range(critic_steps):  # warm-up
        model.set_input(batch_data)
        model.optimize_parameters()
    wall, cpu = [], []
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            model.set_input(batch_data)
            model.optimize_parameters()
        wall.append((time.perf_counter() - start) / steps * 1000)
        cpu.append((time.process_time() - start_cpu) / steps * 1000)
    ms, ms_cpu = statistics.median(wall), statistics.median(cpu)
    return {"method": method, "ms_per_step": round(ms, 1), "cpu_ms_per_step": round(ms_cpu, 1),
            "cpu_ms_per_generator_update": round(ms_cpu * critic_steps, 1), "critic_steps": critic_steps,
            "rounds_wall_ms": [round(v, 1) for v in wall],
            "parameters": {name: count_parameters(net) for name, net in model.networks().items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["gvs", "vagan", "phsgan", "antgan"])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    print(json.dumps({"torch_threads": torch.get_num_threads(), "preset": args.preset, "size": args.size, "batch": args.batch}))
    for method in args.methods:
        print(json.dumps(measure(method, args.preset, args.size, args.batch, args.steps, args.rounds, args.seed)), flush=True)


if __name__ == "__main__":
    main()
