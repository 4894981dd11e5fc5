"""Fixtures of the reader study tests: tiny cases, five methods' outputs, studies, a live server.

A pytest plugin, loaded by ``pytest_plugins = ["studykit"]`` in the test modules (a conftest.py here
would shadow the module name ``conftest`` that other tests may import).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from studydata import METHODS, write_method_outputs, write_tiny_brats_case


@pytest.fixture(scope="session")
def study_inputs(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """A BraTS-layout folder of 5 lesion cases and 1 healthy case, and the 5 methods' output folders."""
    root = tmp_path_factory.mktemp("study-inputs")
    data = root / "brats"
    for i in range(6):
        write_tiny_brats_case(data, f"Case{i:03d}", seed=i, lesion=(i != 5))
    return data, write_method_outputs(data, root / "methods")


@pytest.fixture
def make_study(study_inputs, tmp_path):
    """``make_study(slices=.., raters=.., methods=..)`` creates a study through the API, returns its folder."""
    from pseudohealthy.study.create import create_study

    data, methods = study_inputs
    counter = iter(range(1000))

    def make(slices: int = 100, raters: int = 3, names: tuple[str, ...] = METHODS, seed: int = 0) -> Path:
        out = tmp_path / f"study{next(counter)}"
        create_study(data, {n: methods[n] for n in names}, out, n_slices=slices, n_raters=raters, seed=seed)
        return out

    return make


@dataclass
class LiveServer:
    """A ``pseudohealthy study serve`` process on a free loopback port."""

    proc: subprocess.Popen
    base: str
    raters: dict[str, str]  # name -> token
    admin: str

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_server(study_dir: Path, timeout: float = 20.0) -> LiveServer:
    """Start the CLI server (port 0: a free port), wait for its links, return them."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pseudohealthy", "study", "serve", str(study_dir), "--port", "0", "--threads", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.strip().startswith("admin:"):
                break
        text = "\n".join(lines)
        base = re.search(r"at (http://127\.0\.0\.1:\d+)", text)
        admin = re.search(r"admin: \S+/admin/(\S+)", text)
        if base is None or admin is None:
            raise RuntimeError(f"server did not start:\n{text}")
        raters = dict(re.findall(r"^\s+(rater-\d+): \S+/r/(\S+)$", text, flags=re.M))
        return LiveServer(proc, base.group(1), raters, admin.group(1))
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        raise


@pytest.fixture
def live_server():
    """``live_server(study_dir)`` starts a server; every server started is killed at teardown."""
    started: list[LiveServer] = []

    def start(study_dir: Path) -> LiveServer:
        server = start_server(study_dir)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture(scope="session")
def _study_cache(study_inputs, tmp_path_factory):
    return {}


@pytest.fixture
def study_copy(_study_cache, study_inputs, tmp_path_factory, tmp_path):
    """``study_copy(slices=.., raters=..)``: a fresh copy of a study made once per session (faster)."""
    import shutil

    from pseudohealthy.study.create import create_study

    data, methods = study_inputs
    counter = iter(range(1000))

    def copy(slices: int = 4, raters: int = 2) -> Path:
        key = (slices, raters)
        if key not in _study_cache:
            _study_cache[key] = tmp_path_factory.mktemp("study-template") / "study"
            create_study(data, methods, _study_cache[key], n_slices=slices, n_raters=raters, seed=0)
        out = tmp_path / f"copy{next(counter)}"
        shutil.copytree(_study_cache[key], out)
        return out

    return copy
