"""Ctrl-C (KeyboardInterrupt) inside the loop keeps the last completed epoch and says how to resume."""
from __future__ import annotations

import pytest
import torch

from pseudohealthy.training.loop import GVSTrainer, TrainingInterrupted, train


class _StopAt(GVSTrainer):
    """Raise KeyboardInterrupt at a chosen point (what Ctrl-C does)."""

    def __init__(self, *args, where: str, epoch: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.where, self.stop_epoch = where, epoch

    def train_step(self, batch):
        if self.where == "step" and self.epoch == self.stop_epoch and self.done == 1:
            raise KeyboardInterrupt
        return super().train_step(batch)

    def _write_preview(self, epoch: int) -> None:
        if self.where == "epoch-end" and epoch == self.stop_epoch:
            raise KeyboardInterrupt  # after the epoch's updates, before its checkpoint
        super()._write_preview(epoch)


@pytest.mark.parametrize("where,epoch,saved,words", [
    ("step", 1, 0, "during epoch 1; epoch 0 is saved"),
    ("step", 2, 1, "during epoch 2; epoch 1 is saved"),
    ("epoch-end", 2, 2, "after epoch 2; epoch 2 is saved"),
])
def test_interrupt_keeps_the_last_completed_epoch(tiny_run_config, tmp_path, where, epoch, saved, words) -> None:
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as info:
        _StopAt(tiny_run_config, out, progress=False, where=where, epoch=epoch).fit()
    message = str(info.value)
    assert words in message and f"--resume {out}" in message
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["epoch"] == saved
    # ... and resuming from there finishes the run.
    last = train(tiny_run_config, out, resume=True, progress=False)
    assert torch.load(last, weights_only=True)["epoch"] == tiny_run_config.train.epochs
