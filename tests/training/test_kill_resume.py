"""Nothing finished is lost: SIGKILL after the first checkpoint, resume, and get the same weights.

Tolerance: the resumed run must match the uninterrupted one to 1e-6 (absolute, every parameter,
buffer and optimiser moment); on this CPU with one thread they match exactly.
"""
from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

# Batch 2, 8 steps per epoch: long enough to kill the run inside epoch 2 or 3, short enough to be cheap.
ARGS = ["--preset", "tiny", "train.epochs=3", "train.batch_size=2", "train.max_steps_per_epoch=8", "train.device=cpu",
        "--no-progress"]
TOLERANCE = 1e-6


def _train(cache: Path, out: Path, env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pseudohealthy", "train", "--data", str(cache), "--output", str(out), *ARGS]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _signal_after_first_epoch(runs: dict[str, tuple[subprocess.Popen, Path, int]], timeout: float = 120.0) -> None:
    """Send each run its signal the moment its ``epoch-001.pt`` exists."""
    pending = dict(runs)
    deadline = time.monotonic() + timeout
    while pending:
        for name, (proc, folder, sig) in list(pending.items()):
            if (folder / "checkpoints" / "epoch-001.pt").exists():
                proc.send_signal(sig)
                del pending[name]
            elif proc.poll() is not None:
                raise AssertionError(f"{name}: training ended (rc {proc.returncode}) before epoch-001.pt: {proc.stderr.read()}")
            elif time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"{name}: no epoch-001.pt after {timeout} s")
        time.sleep(0.002)


def _tensors(payload: dict) -> dict[str, torch.Tensor]:
    out = {f"G.{k}": v for k, v in payload["generator"].items()}
    out.update({f"S.{k}": v for k, v in payload["segmentor"].items()})
    for net in ("opt_g", "opt_s"):
        for pid, state in payload[net]["state"].items():
            out.update({f"{net}.{pid}.{k}": v for k, v in state.items() if torch.is_tensor(v)})
    return out


def _losses(folder: Path) -> list[dict]:
    with open(folder / "losses.csv") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def runs(tiny_cache: Path, tmp_path_factory, subprocess_env: dict[str, str]) -> dict:
    """Three runs started together (they overlap on the cores): one left alone, one SIGKILLed and
    one SIGTERMed once their epoch-1 checkpoint exists."""
    root = tmp_path_factory.mktemp("kill-resume")
    folders = {name: root / name for name in ("straight", "killed", "termed")}
    procs = {name: _train(tiny_cache, folder, subprocess_env) for name, folder in folders.items()}
    # Each run is signalled as soon as its own epoch-1 checkpoint exists (both watched at once): waiting
    # for one run first let the other, on a loaded machine, finish training, after which SIGTERM is no
    # longer Ctrl-C and ends the process with -15.
    _signal_after_first_epoch({name: (procs[name], folders[name], sig) for name, sig in
                               (("killed", signal.SIGKILL), ("termed", signal.SIGTERM))})
    results = {name: (proc.wait(timeout=300), proc.communicate()[1]) for name, proc in procs.items()}
    assert results["straight"][0] == 0, results["straight"][1]
    return {"folders": folders, "results": results}


def _assert_same_final_state(a_folder: Path, b_folder: Path) -> None:
    a = torch.load(a_folder / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(b_folder / "checkpoints" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys() and len(ta) > 20
    worst = max((ta[k].double() - tb[k].double()).abs().max().item() for k in ta)
    assert worst <= TOLERANCE
    assert _losses(b_folder) == _losses(a_folder)  # rows of an interrupted epoch are not duplicated


def test_sigkill_then_resume_matches_uninterrupted_run(runs: dict, cli) -> None:
    out = runs["folders"]["killed"]
    assert runs["results"]["killed"][0] == -signal.SIGKILL
    killed_at = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["epoch"]
    assert killed_at < 3, "the run finished before it was killed; the test proves nothing"
    resumed = cli(["train", "--resume", out, "--no-progress"])  # in-process, one thread like the runs
    assert resumed.exit_code == 0, resumed.output
    assert f"continuing after epoch {killed_at} of 3" in (out / "train.log").read_text()
    _assert_same_final_state(runs["folders"]["straight"], out)


def test_sigterm_saves_and_says_how_to_resume(runs: dict, cli) -> None:
    out = runs["folders"]["termed"]
    code, err = runs["results"]["termed"]
    assert code == 130
    assert "--resume" in err and str(out) in err and "Traceback" not in err
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["epoch"]
    assert 1 <= saved < 3
    assert len(_losses(out)) == saved
    result = cli(["train", "--resume", out, "--no-progress"])
    assert result.exit_code == 0, result.output
    _assert_same_final_state(runs["folders"]["straight"], out)
