"""The baselines train in the same loop as GVS: a few steps, an interrupted run resumed to the same
weights as an uninterrupted one, a time budget that stops cleanly, synthesis with the input's geometry.

Resume tolerance: 1e-6 absolute on every tensor of the final checkpoint (one CPU thread: exact).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from pseudohealthy.checkpoints import load_generator
from pseudohealthy.methods import METHODS, method_class
from pseudohealthy.training.loop import GVSTrainer, TrainingInterrupted, train

BASELINES = ["vagan", "phsgan", "antgan"]
TOLERANCE = 1e-6


def _config(tiny_run_config, method: str, **train_fields):
    return dataclasses.replace(tiny_run_config, method=method, train=dataclasses.replace(tiny_run_config.train, **train_fields))


class _StopInEpoch2(GVSTrainer):
    """Ctrl-C after the first step of epoch 2."""

    def train_step(self, batch):
        if self.epoch == 2 and self.done == 1:
            raise KeyboardInterrupt
        return super().train_step(batch)


def _tensors(payload: dict) -> dict[str, torch.Tensor]:
    out = {}
    for key in payload["state_keys"]:
        state = payload[key]
        if not isinstance(state, dict):
            continue
        if "state" in state:  # an optimiser
            for pid, moments in state["state"].items():
                out.update({f"{key}.{pid}.{k}": v for k, v in moments.items() if torch.is_tensor(v)})
        else:
            out.update({f"{key}.{k}": v for k, v in state.items()})
    return out


@pytest.fixture(scope="module", params=BASELINES)
def straight(request, tiny_cache, tmp_path_factory):
    """An uninterrupted 2-epoch run of one baseline (3 steps per epoch)."""
    from pseudohealthy.config import resolve_run_config

    torch.set_num_threads(1)
    cfg = resolve_run_config(preset="tiny", data=str(tiny_cache), overrides=[
        f"method={request.param}", "train.epochs=2", "train.max_steps_per_epoch=3", "train.device=cpu"])
    folder = tmp_path_factory.mktemp(f"straight-{request.param}") / "run"
    last = train(cfg, folder, progress=False)
    return cfg, folder, last


def test_baseline_trains_and_records_its_method(straight):
    cfg, folder, last = straight
    payload = torch.load(last, weights_only=True)
    first = torch.load(folder / "checkpoints" / "epoch-001.pt", weights_only=True)
    assert payload["method"] == payload["config"]["method"] == cfg.method and payload["epoch"] == 2
    assert "generator" in payload["state_keys"] and set(payload["state_keys"]) <= set(payload)
    header = (folder / "losses.csv").read_text().splitlines()[0].split(",")
    rows = (folder / "losses.csv").read_text().splitlines()[1:]
    losses = list(method_class(cfg.method).loss_names)
    assert header[:2 + len(losses)] == ["epoch", "steps", *losses] and header[-1] == "seconds"
    assert all(h.startswith("lr_") for h in header[2 + len(losses):-1])
    assert len(rows) == 2
    assert all(math.isfinite(float(v)) for row in rows for v in row.split(",")[2:])
    # The synthesis network learned something between epoch 1 and epoch 2 (its weights moved).
    moved = max((payload["generator"][k].double() - first["generator"][k].double()).abs().max().item()
                for k in payload["generator"] if payload["generator"][k].is_floating_point())
    assert moved > 0
    assert f"new {cfg.method} run" in (folder / "train.log").read_text()


def test_interrupted_baseline_resumes_to_the_uninterrupted_weights(straight, tmp_path):
    cfg, folder, last = straight
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match="during epoch 2; epoch 1 is saved"):
        _StopInEpoch2(cfg, out, progress=False).fit()
    resumed = train(cfg, out, resume=True, progress=False)
    a, b = torch.load(last, weights_only=True), torch.load(resumed, weights_only=True)
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys() and len(ta) > 20
    assert max((ta[k].double() - tb[k].double()).abs().max().item() for k in ta) <= TOLERANCE
    assert a.get("calls") == b.get("calls")  # the critic/generator step counter travels too


def test_baseline_synthesises_a_nifti_with_the_inputs_geometry(straight, tiny_cache, cli, tmp_path):
    cfg, folder, last = straight
    generator, run_cfg, _ = load_generator(folder)
    assert run_cfg.method == cfg.method and generator.output == METHODS[cfg.method].generator_output
    raw = Path(json.loads((tiny_cache / "fingerprint.json").read_text())["input"])  # the cache's raw data set
    source = raw / "Case001" / "Case001_t2.nii.gz"
    result = cli(["synthesize", "--checkpoint", folder, "--input", source, "--output", tmp_path / "out", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    src, out = nib.load(source), nib.load(tmp_path / "out" / "Case001_t2.nii.gz")
    assert out.shape == src.shape
    np.testing.assert_allclose(out.affine, src.affine)
    x_p, x_s = np.asarray(src.dataobj, np.float32), np.asarray(out.dataobj, np.float32)
    assert np.array_equal(x_s[x_p <= 0], x_p[x_p <= 0])  # background untouched, whatever the method


def test_time_budget_stops_cleanly_with_a_checkpoint_and_stays_stopped(tiny_run_config, tmp_path):
    cfg = _config(tiny_run_config, "vagan", epochs=50, max_minutes=1e-6, budget_clock="cpu")
    out = tmp_path / "run"
    last = train(cfg, out, progress=False)
    payload = torch.load(last, weights_only=True)
    assert payload["epoch"] == 0  # spent before the first step: the initial state is what is saved
    assert "time budget of 1e-06 min (cpu clock) spent; stopped after epoch 0" in (out / "train.log").read_text()
    # A bigger budget continues the run; resuming with the same one trains nothing more.
    more = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_minutes=0.02))
    last = train(more, out, resume=True, progress=False)
    after = torch.load(last, weights_only=True)
    assert 1 <= after["epoch"] < 50 and f"spent; stopped after epoch {after['epoch']}" in (out / "train.log").read_text()
    assert 0.02 * 60 <= after["elapsed_s"] < 0.02 * 60 + 5.0  # CPU seconds: stops within a step and a save of the budget
    again = torch.load(train(more, out, resume=True, progress=False), weights_only=True)
    assert again["epoch"] == after["epoch"]


def test_cli_refuses_an_unknown_method_before_writing(cli, tiny_cache, tmp_path):
    result = cli(["train", "--data", tiny_cache, "--output", tmp_path / "run", "--preset", "tiny", "--method", "cyclegan"])
    assert result.exit_code != 0
    assert "method 'cyclegan' is unknown; choose one of gvs, vagan, phsgan, antgan." in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run" / "config.yaml").exists()
