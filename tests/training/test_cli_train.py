"""`pseudohealthy train` on the tiny cache: the run folder, refusals, resume, help."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from pseudohealthy.cli.train import PRESET_PARAMETERS
from pseudohealthy.config import PRESETS, RunConfig, from_dict, resolve_run_config
from pseudohealthy.models import build_generator, build_segmentor, count_parameters

TINY = ["--preset", "tiny", "train.epochs=2", "train.max_steps_per_epoch=2", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def cli_run(tiny_cache: Path, tmp_path_factory):
    from typer.testing import CliRunner

    from pseudohealthy.cli.main import app

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(app, ["train", "--data", str(tiny_cache), "--output", str(out), *TINY, "--seed", "3"])
    return out, result


def test_train_writes_the_run_folder(cli_run, tiny_cache: Path) -> None:
    out, result = cli_run
    assert result.exit_code == 0, result.output
    assert f"trained: {out / 'checkpoints' / 'last.pt'}" in result.output
    cfg = from_dict(RunConfig, yaml.safe_load((out / "config.yaml").read_text()))
    assert cfg.preset == "tiny" and cfg.train.epochs == 2 and cfg.train.seed == 3 and cfg.train.device == "cpu"
    assert cfg.model.gen_channels == PRESETS["tiny"]["model"]["gen_channels"]
    assert Path(cfg.data) == tiny_cache.resolve()
    fingerprint = json.loads((tiny_cache / "fingerprint.json").read_text())
    assert json.loads((out / "preprocess.json").read_text()) == fingerprint["config"]
    with open(out / "losses.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["steps"] == "2" for r in rows)
    assert float(rows[1]["lr_g"]) == pytest.approx(1e-3 * 0.5**0.8, rel=1e-9)
    for epoch in (1, 2):
        with Image.open(out / "previews" / f"epoch-{epoch:03d}.png") as png:
            assert png.width > 128 and png.height > 4 * 128
        assert torch.load(out / "checkpoints" / f"epoch-{epoch:03d}.pt", weights_only=True)["epoch"] == epoch
    assert "generator 49,169 parameters" in (out / "train.log").read_text()


def test_keep_checkpoints_keeps_the_newest(tiny_cache: Path, tmp_path: Path, cli) -> None:
    result = cli(["train", "--data", tiny_cache, "--output", tmp_path / "run", *TINY, "train.epochs=3",
                  "train.keep_checkpoints=1"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["epoch-003.pt", "last.pt"]
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 3


def test_existing_run_folder_is_refused_without_overwrite(cli_run, cli, tiny_cache: Path) -> None:
    out, _ = cli_run
    before = (out / "checkpoints" / "last.pt").stat().st_mtime_ns
    result = cli(["train", "--data", tiny_cache, "--output", out, *TINY])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (out / "checkpoints" / "last.pt").stat().st_mtime_ns == before


def test_resume_of_a_finished_run_changes_nothing(cli_run, cli) -> None:
    out, _ = cli_run
    before = (out / "checkpoints" / "last.pt").read_bytes()
    result = cli(["train", "--resume", out, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (out / "checkpoints" / "last.pt").read_bytes() == before


@pytest.mark.parametrize("args,words", [
    (["--resume", "{run}", "train.epochs=5"], "drop --config"),
    (["--resume", "{tmp}"], "not a training run folder"),
    (["--data", "{tmp}/nope", "--output", "{tmp}/out", "--preset", "tiny"], "slice cache folder not found"),
    (["--data", "{cache}", "--output", "{tmp}/out", "--preset", "tiny", "train.seg_loss=dice"], "train.seg_loss"),
    (["--data", "{cache}", "--output", "{tmp}/out", "--preset", "huge"], "preset 'huge' is unknown"),
    (["--data", "{cache}", "--output", "{tmp}/out", "--preset", "tiny", "--device", "gpu"], "device 'gpu' is unknown"),
    (["--output", "{tmp}/out"], "needs --data"),
    (["--data", "{cache}", "--output", "{tmp}/out", "--preset", "tiny", "train.online_lesions=2"], "train.online_lesions"),
    (["--data", "{cache}", "--output", "{tmp}/out", "--preset", "tiny", "train.online_max_lesions=0"], "at least 1"),
    (["--data", "{cache}", "--output", "{tmp}/out", "--preset", "tiny", "train.augment_elastic=-4"], "train.augment_elastic"),
    (["--data", "{cache}", "--output", "{tmp}/out", "--preset", "tiny", "train.gate_small_lesion_area=-1"], "train.gate_small_lesion_area"),
    (["--data", "{cache}", "--output", "{tmp}/out", "--preset", "hybrid", "model.gen_gate_second_look=1.5"], "must be in [0, 1)"),
    (["--data", "{cache}", "--output", "{tmp}/out", "--preset", "hybrid", "train.gate_fine_every=-1"], "train.gate_fine_every"),
    (["--data", "{cache}", "--output", "{tmp}/out", "--preset", "hybrid", "model.gen_gate_mirror=true",
      "model.gen_gate_second_look=0", "model.gen_gate_shuffle=true"], "model.gen_gate_mirror"),
])
def test_bad_invocations_are_one_sentence(cli_run, cli, tiny_cache: Path, tmp_path: Path, args, words) -> None:
    filled = [a.format(run=cli_run[0], tmp=tmp_path, cache=tiny_cache) for a in args]
    result = cli(["train", *filled])
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "config.yaml").exists()


def test_slice_size_must_suit_the_networks(tmp_path: Path, tiny_cache: Path, cli) -> None:
    result = cli(["train", "--data", tiny_cache, "--output", tmp_path / "out", *TINY, "model.seg_depth=6"])
    assert result.exit_code == 2 and "32x32" in result.output and "multiples of 64" in result.output
    assert not (tmp_path / "out" / "config.yaml").exists()


def test_help_states_parameter_counts_that_match_the_presets(cli) -> None:
    result = cli(["train", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())  # undo rich's box and wrapping
    for preset, (g, s) in PRESET_PARAMETERS.items():
        cfg = resolve_run_config(preset=preset)
        assert count_parameters(build_generator(cfg.model)) == g
        assert count_parameters(build_segmentor(cfg.model)) == s
        assert preset in text
    assert "G 11.36M" in text and "S 19.59M" in text
    assert set(PRESET_PARAMETERS) == set(PRESETS)
