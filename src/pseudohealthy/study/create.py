"""Create a reader study: pick lesion slices, render every image, store the study and its key.

Which slices are shown is drawn from ``seed`` (reproducible). The orders of the methods and the
image names are drawn from the operating system's secure source (``secrets``) instead: a seeded order
could be rebuilt by anyone who knows the seed and the code, which would undo the blinding. The
orders are stored in the database, so the study itself is fully recorded.
"""
from __future__ import annotations

import os
import random
import re
import secrets
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pseudohealthy import __version__
from pseudohealthy.config import write_config
from pseudohealthy.data.nifti_io import NIFTI_SUFFIXES, load_nifti
from pseudohealthy.data.sources import detect_source, find_cases, load_case
from pseudohealthy.errors import UserError, refuse_existing_output
from pseudohealthy.study import db
from pseudohealthy.study.render import annotation_rgb, slice_window, to_gray, write_png

IMAGES_DIR = "images"
CONFIG_NAME = "study.yaml"
METHOD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+()-]{0,63}$")


@dataclass
class StudySummary:
    """What ``create_study`` made, for the CLI to print."""

    study_dir: Path
    slices: int
    cases: int
    methods: list[str]
    raters: int
    available_slices: int
    warnings: list[str] = field(default_factory=list)


def parse_methods(items: list[str]) -> dict[str, Path]:
    """``["NAME=DIR", ...]`` to an ordered ``{name: folder}``, refusing bad syntax, names and folders."""
    methods: dict[str, Path] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--method {item!r}: expected NAME=DIR, for example --method GVS=runs/gvs/synth.")
        name, folder = (part.strip() for part in item.split("=", 1))
        if not METHOD_NAME.match(name):
            raise UserError(f"--method {item!r}: method name must start with a letter or digit and use only letters, digits, spaces and _.+()- (64 characters at most).")
        if name in methods:
            raise UserError(f"--method {item!r}: method name {name!r} is given twice.")
        path = Path(folder)
        if not path.is_dir():
            raise UserError(f"{path}: output folder of method {name!r} not found.")
        methods[name] = path
    if not methods:
        raise UserError("no method given; pass --method NAME=DIR once per compared method.")
    return methods


def _method_file(folder: Path, case_id: str) -> Path | None:
    for suffix in NIFTI_SUFFIXES:
        candidate = folder / f"{case_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def assign_orders(rng: random.Random, slice_ids: list[int], outputs: dict[int, list[int]],
                  rater_ids: list[int]) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int, int]]]:
    """Each rater's own slice order and, per slice, own order of the outputs.

    Returns ``(sequence rows (rater, seq, slice), position rows (rater, slice, position, output))``
    with 1-based ``seq`` and ``position``.
    """
    sequence, positions = [], []
    for rater in rater_ids:
        order = list(slice_ids)
        rng.shuffle(order)
        sequence += [(rater, seq, s) for seq, s in enumerate(order, start=1)]
        for s in order:
            shown = rng.sample(outputs[s], k=len(outputs[s]))
            positions += [(rater, s, pos, o) for pos, o in enumerate(shown, start=1)]
    return sequence, positions


def neutral_name() -> str:
    """A random image file name that says nothing about what it shows."""
    return f"{secrets.token_hex(12)}.png"


def _remove_study(study_dir: Path) -> None:
    """Remove what a study folder holds (for ``--overwrite`` and after a failed create)."""
    for name in (db.DB_NAME, db.DB_NAME + "-wal", db.DB_NAME + "-shm", db.DB_NAME + "-journal", CONFIG_NAME):
        (study_dir / name).unlink(missing_ok=True)
    for sub in (IMAGES_DIR, "export"):
        if (study_dir / sub).is_dir():
            shutil.rmtree(study_dir / sub)


def _lesion_slices(lesion: np.ndarray) -> list[int]:
    return [int(z) for z in np.flatnonzero(lesion.any(axis=(0, 1)))]


def create_study(
    data: str | Path,
    methods: dict[str, Path],
    output: str | Path,
    n_slices: int = 100,
    n_raters: int = 3,
    seed: int = 0,
    window: tuple[float, float] | None = None,
    source: str = "auto",
    modality: str = "t2",
    overwrite: bool = False,
) -> StudySummary:
    """Pick ``n_slices`` lesion slices (seeded) among the cases every method has, render and store them.

    ``window`` fixes the display window for every slice (e.g. ``(-200, 250)`` HU for CT); ``None``
    takes each input slice's 0.5-99.5 percentiles of its region.
    """
    if n_slices < 1:
        raise UserError(f"--slices {n_slices}: a study needs at least one slice.")
    if n_raters < 1:
        raise UserError(f"--raters {n_raters}: a study needs at least one rater.")
    if window is not None and not window[1] > window[0]:
        raise UserError(f"--window {window[0]},{window[1]}: the upper bound must be above the lower one.")
    if not methods:
        raise UserError("no method given; pass --method NAME=DIR once per compared method.")
    output = Path(output)
    refuse_existing_output(output, overwrite)
    data = Path(data)
    if not data.is_dir():
        raise UserError(f"{data}: input folder not found.")
    source = detect_source(data) if source == "auto" else source
    cases = find_cases(data, source, modality=modality, require_mask=True)
    warnings: list[str] = []

    files = {name: {c.case_id: _method_file(folder, c.case_id) for c in cases} for name, folder in methods.items()}
    for name, found in files.items():
        if not any(found.values()):
            raise UserError(f"{methods[name]}: method {name!r} holds no <case_id>.nii.gz for any case of {data}.")
    common = [c for c in cases if all(files[name][c.case_id] is not None for name in methods)]
    if not common:
        raise UserError(f"{data}: no case has an output in every method folder; compare outputs of the same cases.")
    if len(common) < len(cases):
        warnings.append(f"{len(cases) - len(common)} of {len(cases)} case(s) lack an output in some method folder and are left out.")

    # First pass: the candidate slices (lesion present), from the masks only.
    candidates: list[tuple[str, int]] = []
    for case in common:
        loaded = load_case(case, source)
        candidates += [(case.case_id, z) for z in _lesion_slices(loaded.lesion)]
    if not candidates:
        raise UserError(f"{data}: no axial slice with a lesion in the {len(common)} case(s) every method has.")
    if len(candidates) < n_slices:
        warnings.append(f"only {len(candidates)} slice(s) with a lesion are available; the study uses all of them instead of {n_slices}.")
    picked = np.random.default_rng(seed).choice(len(candidates), size=min(n_slices, len(candidates)), replace=False)
    chosen = sorted(candidates[i] for i in picked)

    if overwrite and output.exists():
        _remove_study(output)
    output.mkdir(parents=True, exist_ok=True)
    images = output / IMAGES_DIR
    images.mkdir()
    conn = db.connect(output, create=True)
    try:
        _fill(conn, data, source, methods, files, common, chosen, images, n_raters, window, seed)
    except BaseException:
        conn.close()
        _remove_study(output)
        raise
    conn.close()
    write_config({
        "command": "study create", "version": __version__, "data": str(data), "source": source, "modality": modality,
        "methods": {name: str(folder) for name, folder in methods.items()}, "slices": n_slices, "raters": n_raters,
        "seed": seed, "window": list(window) if window is not None else "input slice 0.5-99.5 percentiles",
        "slices_used": len(chosen), "orders": "secrets (not seeded), stored in study.sqlite",
    }, output / CONFIG_NAME)
    return StudySummary(output, len(chosen), len({c for c, _ in chosen}), list(methods), n_raters, len(candidates), warnings)


def _fill(conn: sqlite3.Connection, data: Path, source: str, methods: dict[str, Path], files: dict[str, dict[str, Path | None]],
          common: list, chosen: list[tuple[str, int]], images: Path, n_raters: int,
          window: tuple[float, float] | None, seed: int) -> None:
    """Render the chosen slices and write the whole study in one transaction."""
    rng = secrets.SystemRandom()
    db.init_schema(conn)
    conn.execute("BEGIN IMMEDIATE")
    method_ids = {}
    for name, folder in methods.items():
        method_ids[name] = conn.execute("INSERT INTO methods (name, source) VALUES (?, ?)", (name, str(folder))).lastrowid
    rater_ids = [
        conn.execute("INSERT INTO raters (name, token) VALUES (?, ?)", (f"rater-{i}", secrets.token_urlsafe(24))).lastrowid
        for i in range(1, n_raters + 1)
    ]
    for key, value in (("admin_token", secrets.token_urlsafe(24)), ("seed", str(seed)), ("created", db.now()),
                       ("version", __version__), ("data", str(data))):
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))

    by_case: dict[str, list[int]] = {}
    for case_id, z in chosen:
        by_case.setdefault(case_id, []).append(z)
    slice_ids: list[int] = []
    outputs: dict[int, list[int]] = {}
    written: list[Path] = []
    for case in common:
        if case.case_id not in by_case:
            continue
        loaded = load_case(case, source)
        volumes = {}
        for name in methods:
            vol = load_nifti(files[name][case.case_id], f"{name} output")
            if vol.data.shape != loaded.image.data.shape or not np.allclose(vol.affine, loaded.image.affine, atol=1e-3):
                raise UserError(f"{vol.path}: output of method {name!r} does not match the input {case.image.name} in shape or affine.")
            volumes[name] = vol.data
        for z in by_case[case.case_id]:
            image = loaded.image.data[:, :, z]
            region = loaded.region[:, :, z] if loaded.region is not None else None
            win = window if window is not None else slice_window(image, region)
            items = [("input", to_gray(image, win)), ("annotation", annotation_rgb(image, loaded.lesion[:, :, z], win))]
            items += [(name, to_gray(volumes[name][:, :, z], win)) for name in methods]
            rng.shuffle(items)  # write order carries no hint of the method either
            names = {}
            for what, pixels in items:
                names[what] = neutral_name()
                written.append(write_png(pixels, images / names[what]))
            sid = conn.execute(
                "INSERT INTO slices (public_id, case_id, z, input_image, annotation_image, window_low, window_high) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (secrets.token_hex(8), case.case_id, z, names["input"], names["annotation"], float(win[0]), float(win[1])),
            ).lastrowid
            slice_ids.append(sid)
            outputs[sid] = [
                conn.execute("INSERT INTO outputs (slice_id, method_id, image) VALUES (?, ?, ?)",
                             (sid, method_ids[name], names[name])).lastrowid
                for name in methods
            ]
    sequence, positions = assign_orders(rng, slice_ids, outputs, rater_ids)
    conn.executemany("INSERT INTO sequence (rater_id, seq, slice_id) VALUES (?, ?, ?)", sequence)
    conn.executemany("INSERT INTO positions (rater_id, slice_id, position, output_id) VALUES (?, ?, ?, ?)", positions)
    conn.execute("COMMIT")
    # One timestamp for every image: file times say nothing about the order they were written in.
    stamp = time.time()
    for path in written:
        os.utime(path, (stamp, stamp))
