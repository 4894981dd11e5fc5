"""The segmentation experiment's HTML page: Table III, Dice against alpha, gain against data fraction."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plots(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for (variant, fraction) in sorted({(r["variant"], r["fraction"]) for r in rows}):
        sel = sorted((r for r in rows if r["variant"] == variant and r["fraction"] == fraction), key=lambda r: r["alpha"])
        ax.errorbar([r["alpha"] for r in sel], [r["dice_mean"] for r in sel], yerr=[r["dice_std"] for r in sel],
                    marker="o", capsize=3, label=f"{variant}, {fraction:g} of train")
    ax.set_xlabel("alpha")
    ax.set_ylabel("test Dice (mean over trials)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    figures.append(("Test Dice against alpha (Table III)", _png(fig)))
    plt.close(fig)

    fractions = sorted({r["fraction"] for r in rows})
    if len(fractions) > 1:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for variant in sorted({r["variant"] for r in rows}):
            gains = []
            for f in fractions:
                sel = [r for r in rows if r["variant"] == variant and r["fraction"] == f and r["alpha"] > 0]
                gains.append(max(r["change_vs_alpha0"] for r in sel) if sel else float("nan"))
            ax.plot(fractions, gains, marker="o", label=variant)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xlabel("fraction of training cases")
        ax.set_ylabel("best Dice change vs alpha 0")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        figures.append(("Gain of enhancement against training data size (Fig. 8b)", _png(fig)))
        plt.close(fig)
    return figures


def write_report(path: Path, rows: list[dict[str, Any]], results: list[dict[str, Any]], settings: dict[str, Any]) -> Path:
    head = ["variant", "fraction", "alpha", "trials", "Dice mean", "Dice std", "change vs alpha 0"]
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            r["variant"], f"{r['fraction']:g}", f"{r['alpha']:.2f}", r["trials"], f"{r['dice_mean']:.3f}",
            f"{r['dice_std']:.3f}", f"{r['change_vs_alpha0']:+.3f}")) + "</tr>"
        for r in rows
    )
    plots = "".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='data:image/png;base64,{b}'>" for t, b in _plots(rows))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Segmentation on enhanced images</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}</style>
</head><body><h1>Segmentation on lesion-enhanced images</h1>
<p>Enhancement: x_en = x_p + alpha (x_p - x_s) (the paper's text; its printed eq. 7 has the opposite sign).
A U-Net is trained on training slices enhanced with alpha and tested on test slices enhanced with the same alpha;
Dice per test case, averaged over cases, then mean and std over {len({r['trial'] for r in results})} trial(s).</p>
<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{body}</table>{plots}
<h2>Settings</h2><pre>{html.escape(json.dumps(settings, indent=2))}</pre></body></html>"""
    path.write_text(page)
    return path
