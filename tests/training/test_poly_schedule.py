"""The poly learning-rate policy, stepped after each epoch."""
from __future__ import annotations

import pytest
import torch

from pseudohealthy.config import resolve_run_config
from pseudohealthy.training.gvs import GVSModel
from pseudohealthy.training.schedule import PolyDecay


# The schedulers are stepped here without optimiser steps, which torch warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")


@pytest.mark.parametrize("epochs,power,lr", [(4, 0.8, 1e-3), (20, 0.8, 1e-3), (5, 2.0, 0.01)])
def test_lr_after_each_epoch(epochs: int, power: float, lr: float) -> None:
    cfg = resolve_run_config(preset="tiny", overrides=[f"train.epochs={epochs}", f"train.poly_power={power}", f"train.lr={lr}"])
    m = GVSModel(cfg)
    assert m.learning_rates() == {"lr_g": lr, "lr_s": lr}
    for epoch in range(1, epochs + 1):
        m.step_schedulers()
        expected = lr * (1 - epoch / epochs) ** power
        got = m.learning_rates()
        assert got["lr_g"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert got["lr_s"] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_scheduler_state_round_trips_with_weights_only(tmp_path) -> None:
    cfg = resolve_run_config(preset="tiny", overrides=["train.epochs=10"])
    a = GVSModel(cfg)
    for _ in range(3):
        a.step_schedulers()
    torch.save(a.sched_g.state_dict(), tmp_path / "s.pt")
    b = GVSModel(cfg)
    b.sched_g.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    b.sched_g.step()
    a.sched_g.step()
    assert b.sched_g.get_last_lr() == a.sched_g.get_last_lr()
    assert b.sched_g.get_last_lr()[0] == pytest.approx(1e-3 * 0.6**0.8, rel=1e-12)


def test_poly_decay_is_zero_past_the_end() -> None:
    assert PolyDecay(4, 0.8)(4) == 0.0 and PolyDecay(4, 0.8)(6) == 0.0
    assert PolyDecay(4, 0.8)(0) == 1.0
