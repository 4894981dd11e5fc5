"""Figures of an evaluation report, drawn with matplotlib and returned as PNG bytes.

- :func:`comparison_grid` (paper Fig. 7): per row one slice: the input, each method's output, each
  method's difference map ``|x_p - x_s|``, and the lesion annotation.
- :func:`adice_curves` (paper Fig. 5c): the per-epoch training Dice of the A-Dice segmentor, mean over
  trials with the min-max band.
- :func:`dice_boxplot` (paper Fig. 8a): per-slice Dice of GVS segmentors on pathological slices.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot's global
state, so they work headless and leave no open windows.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np

DIFF_VMAX = 0.5  # difference maps are shown on the input's [0, 1] window scale, clipped at 0.5


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _display(slice2d: np.ndarray) -> np.ndarray:
    """Canonical RAS ``(X, Y)`` slice turned a quarter so that anterior is up (rows = Y, columns = X)."""
    return np.rot90(slice2d)


def _unit(slice2d: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    low, high = window
    return np.clip((np.asarray(slice2d, np.float64) - low) / (high - low), 0.0, 1.0)


def comparison_grid(rows: list[Any], methods: list[str], panel: float = 1.6) -> bytes | None:
    """The Fig-7-style grid for ``rows`` (:class:`~pseudohealthy.evaluation.runner.FigureSlice`); None if empty."""
    from matplotlib.figure import Figure

    if not rows:
        return None
    columns = ["input"] + methods + [f"|input - {m}|" for m in methods] + ["annotation"]
    fig = Figure(figsize=(panel * len(columns), panel * len(rows) + 0.4))
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for r, row in enumerate(rows):
        image = _unit(row.image, row.window)
        panels: list[tuple[np.ndarray | None, dict[str, Any]]] = [(image, {"cmap": "gray", "vmin": 0, "vmax": 1})]
        for m in methods:
            out = row.outputs.get(m)
            panels.append((_unit(out, row.window) if out is not None else None, {"cmap": "gray", "vmin": 0, "vmax": 1}))
        for m in methods:
            out = row.outputs.get(m)
            diff = np.abs(image - _unit(out, row.window)) if out is not None else None
            panels.append((diff, {"cmap": "inferno", "vmin": 0, "vmax": DIFF_VMAX}))
        panels.append((row.lesion.astype(float), {"cmap": "gray", "vmin": 0, "vmax": 1}))
        for c, (data, style) in enumerate(panels):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if data is None:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=8, transform=ax.transAxes)
            else:
                ax.imshow(_display(data), interpolation="nearest", **style)
            if r == 0:
                ax.set_title(columns[c], fontsize=7)
        axes[r][0].set_ylabel(f"{row.case_id}\nz={row.z}", fontsize=7)
    fig.tight_layout(pad=0.3)
    return _png(fig)


def adice_curves(curves: dict[str, list[list[float]]]) -> bytes | None:
    """Per-epoch training Dice of each method (mean over trials, min-max band); None if no curves."""
    from matplotlib.figure import Figure

    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    fig = Figure(figsize=(6.0, 3.8))
    ax = fig.subplots()
    for name, trial_curves in curves.items():
        arr = np.asarray(trial_curves, dtype=float)
        epochs = np.arange(1, arr.shape[1] + 1)
        line, = ax.plot(epochs, arr.mean(0), marker="o", markersize=3, label=f"{name} (A-Dice {arr.mean():.3f})")
        ax.fill_between(epochs, arr.min(0), arr.max(0), color=line.get_color(), alpha=0.15)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("Dice on the training slices")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def dice_boxplot(per_slice: dict[str, list[float]]) -> bytes | None:
    """Box plot of per-slice Dice for each segmentor; None if empty."""
    from matplotlib.figure import Figure

    per_slice = {k: v for k, v in per_slice.items() if v}
    if not per_slice:
        return None
    fig = Figure(figsize=(1.6 + 1.4 * len(per_slice), 3.5))
    ax = fig.subplots()
    ax.boxplot(list(per_slice.values()), showmeans=True)
    ax.set_xticks(range(1, len(per_slice) + 1), list(per_slice.keys()), fontsize=8)
    ax.set_ylabel("Dice per pathological slice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _png(fig)
