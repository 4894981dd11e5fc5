"""Checkpoints: self-describing, weights_only round trip, atomic writes, clear errors for bad files."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import pseudohealthy
from pseudohealthy.config import to_dict
from pseudohealthy.data.dataset import SliceDataset
from pseudohealthy.errors import UserError
from pseudohealthy.training.checkpoint import (
    FORMAT,
    atomic_save,
    load_generator,
    load_segmentor,
    read_checkpoint,
    rng_state,
    set_rng_state,
)
from pseudohealthy.training.gvs import GVSModel
from pseudohealthy.training.loop import train


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_cache):
    from pseudohealthy.config import resolve_run_config

    torch.set_num_threads(1)
    cfg = resolve_run_config(preset="tiny", data=str(tiny_cache),
                             overrides=["train.epochs=2", "train.max_steps_per_epoch=2", "train.device=cpu"])
    folder = tmp_path_factory.mktemp("ckpt") / "run"
    last = train(cfg, folder, progress=False)
    return cfg, folder, last


def test_checkpoint_is_self_describing_and_weights_only(trained_run) -> None:
    cfg, folder, last = trained_run
    payload = torch.load(last, weights_only=True)
    assert payload["format"] == FORMAT and payload["version"] == pseudohealthy.__version__
    assert payload["epoch"] == 2
    assert payload["config"] == to_dict(cfg)
    fingerprint = json.loads((Path(cfg.data) / "fingerprint.json").read_text())
    assert payload["preprocess"] == fingerprint["config"]
    for key in ("generator", "segmentor", "opt_g", "opt_s", "sched_g", "sched_s", "rng", "history"):
        assert key in payload
    assert not any(k.startswith("module.") or "_orig_mod" in k for k in payload["generator"])
    assert [row["epoch"] for row in payload["history"]] == [1, 2]
    stats = payload["intensity_stats"]  # foreground of the training cases' slices, as synthesis reads it

    train_rows = [r.index for r in SliceDataset(cfg.data, split="train").rows]
    values = np.load(Path(cfg.data) / "images.npy")[train_rows].ravel()
    values = values[values > -1 + 1e-6]
    assert stats["pixels"] == values.size
    assert stats["region_mean"] == pytest.approx(values.mean(), abs=1e-5)
    assert stats["region_std"] == pytest.approx(values.std(), abs=1e-5)
    assert (folder / "checkpoints" / "epoch-002.pt").read_bytes() == last.read_bytes()


@pytest.mark.parametrize("use_folder", [False, True])
def test_load_generator_and_segmentor(trained_run, use_folder: bool) -> None:
    cfg, folder, last = trained_run
    payload = torch.load(last, weights_only=True)
    g, run_config, preprocess = load_generator(folder if use_folder else last, device="cpu")
    assert not g.training
    assert to_dict(run_config) == to_dict(cfg)
    assert preprocess == payload["preprocess"]
    for name, tensor in g.state_dict().items():
        assert torch.equal(tensor, payload["generator"][name])
    s, _ = load_segmentor(last, "cpu")
    assert not s.training
    assert all(torch.equal(t, payload["segmentor"][n]) for n, t in s.state_dict().items())


def test_model_state_round_trip_continues_identically(tmp_path, tiny_run_config) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    lesion = (torch.rand(2, 1, 32, 32) > 0.8).float()
    a = GVSModel(tiny_run_config)
    a.set_input((x, lesion))
    a.optimize_parameters()
    a.step_schedulers()
    atomic_save(a.state_dict(), tmp_path / "state.pt")
    torch.manual_seed(123)  # a different init, overwritten by the load
    b = GVSModel(tiny_run_config)
    b.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    b.set_input((x, lesion))
    assert a.optimize_parameters() == b.optimize_parameters()
    for p, q in zip(a.generator.parameters(), b.generator.parameters()):
        assert torch.equal(p, q)
    assert a.learning_rates() == b.learning_rates()


def test_rng_state_round_trip(tmp_path) -> None:
    atomic_save({"rng": rng_state()}, tmp_path / "rng.pt")
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path) -> None:
    path = tmp_path / "c.pt"
    atomic_save({"a": torch.ones(2)}, path)
    with pytest.raises(Exception):
        atomic_save({"a": lambda: None}, path)  # not picklable: fails mid-write
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


class _Opaque:
    pass


def _write_bad(kind: str, path, good: dict) -> None:
    if kind == "missing":
        return
    if kind == "garbage":
        path.write_bytes(b"this is not a checkpoint at all" * 10)
    elif kind == "truncated":
        data = __import__("io").BytesIO()
        torch.save(good, data)
        path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    elif kind == "foreign":
        torch.save({"state_dict": {"w": torch.ones(1)}}, path)
    elif kind == "pickled-object":
        torch.save({"format": FORMAT, "thing": _Opaque()}, path)
    elif kind == "newer-major":
        torch.save({**good, "version": "7.0.0"}, path)
    elif kind == "missing-keys":
        torch.save({k: v for k, v in good.items() if k != "generator"}, path)
    elif kind == "wrong-shapes":
        bad = dict(good)
        bad["config"] = {**good["config"], "model": {**good["config"]["model"], "gen_channels": 16}}
        torch.save(bad, path)


@pytest.mark.parametrize("kind,words", [
    ("missing", "not found"),
    ("garbage", "corrupt"),
    ("truncated", "corrupt"),
    ("foreign", "not a pseudohealthy checkpoint"),
    ("pickled-object", "not a pseudohealthy checkpoint"),
    ("newer-major", "cannot be read by version"),
    ("missing-keys", "lacks generator"),
    ("wrong-shapes", "do not fit"),
])
def test_bad_checkpoints_give_one_clear_sentence(tmp_path, trained_run, kind: str, words: str) -> None:
    good = torch.load(trained_run[2], weights_only=True)
    path = tmp_path / "bad.pt"
    _write_bad(kind, path, good)
    with pytest.raises(UserError) as info:
        load_generator(path)
    message = str(info.value)
    assert words in message and str(path) in message and "\n" not in message


def test_resume_needs_the_training_state(tmp_path, trained_run) -> None:
    good = torch.load(trained_run[2], weights_only=True)
    torch.save({k: v for k, v in good.items() if k not in ("opt_g", "rng")}, tmp_path / "g.pt")
    read_checkpoint(tmp_path / "g.pt")  # fine for inference
    with pytest.raises(UserError, match="lacks opt_g, rng"):
        read_checkpoint(tmp_path / "g.pt", for_resume=True)


def test_folder_without_checkpoint_is_refused(tmp_path) -> None:
    with pytest.raises(UserError, match="no checkpoints/last.pt"):
        load_generator(tmp_path)
