"""``report.html``: one self-contained page (figures embedded as base64 PNG, no external files or
scripts), so it opens offline and can be mailed or archived as a single file."""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any

from pseudohealthy.evaluation.figures import DIFF_VMAX, adice_curves, comparison_grid, dice_boxplot
from pseudohealthy.evaluation.tables import METHOD_COLUMNS, PER_CASE_COLUMNS, fmt, fmt_mean_std, table_rows

DEFINITIONS = [
    ("Region and slices", "Normal tissue = brain (image > 0; for CT the organ label) minus the lesion mask. "
     "Unless the settings say <code>identity_slices: all</code>, identity is measured on the slices that hold lesion."),
    ("SSIM / PSNR (identity)", "Input x_p and output x_s are clipped to the input's intensity window (BraTS: [0, V99.5] "
     "of brain voxels; CT: [-200, 250] HU) and mapped to [0, 1], data range 1. SSIM: per axial slice, the 2D SSIM map of "
     "Wang et al. (Gaussian window sigma 1.5, 11x11, K1 0.01, K2 0.03) from scikit-image, averaged over the normal-tissue "
     "pixels of all slices. PSNR = 10 log10(1 / MSE) with the MSE over normal-tissue voxels (inf when unchanged)."),
    ("Ground-truth lesion metrics", "Where a true healthy volume x_h exists (phantom): x_s and x_h are clipped to the 0.5 and "
     "99.5 percentiles of the input's brain voxels and rescaled to [0, 1] (BraTS 2023-24 inpainting challenge); SSIM "
     "(map as above, averaged over lesion voxels), PSNR, MSE and MAE inside the lesion mask. Lesion error reduction = "
     "1 - mean|x_s - x_h| / mean|x_p - x_h| inside the lesion, in input units (0: untouched, 1: perfect)."),
    ("A-Dice", "Paper eq. 8: a fresh U-Net is trained on the method's lesion slices (x_s with the original lesion masks, "
     "normalised with the input's own clip and scale, at the working size) with a high learning rate (defaults: plain SGD, "
     "lr 0.3, U-Net with one downsampling, widths 8-16, lesion logit started at the lesion fraction, BatchNorm statistics "
     "recomputed before each Dice; chosen by measurement, docs/metrics.md); after every epoch the "
     "pooled Dice of its prediction on those training slices; A-Dice = mean over epochs, then mean ± std over trials. "
     "Lower = healthier: real lesions are learnt fast, labels on healthy-looking tissue slowly."),
    ("Healthiness (Xia et al.)", "A reference U-Net trained once on pathological lesion slices (cached); "
     "h = 1 - (lesion pixels it predicts on all x_s) / (on all x_p), pooled over the method's lesion slices. Higher = healthier."),
    ("Segmentor generalisation", "Paper Fig. 8a: Dice of a GVS checkpoint's segmentor on the pathological lesion slices, "
     "per slice (mean ± std), with the checkpoint's own preprocessing."),
]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.note{background:#fff6dd;border-left:4px solid #e0b000;padding:.4em .8em;margin:.3em 0}
img{max-width:100%;border:1px solid #eee}pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.8em}
dt{font-weight:bold;margin-top:.6em}.small{color:#666;font-size:.85em}
"""


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f"<p class='small'>({html.escape(alt)}: nothing to show)</p>"
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(results: dict[str, Any], figures: list[Any]) -> str:
    """The report's HTML text for ``results`` (what ``metrics.json`` holds) and the grid's slices."""
    methods = list(results["methods"])
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>pseudohealthy evaluation</title>"
             f"<style>{CSS}</style></head><body>",
             "<h1>Pseudo-healthy synthesis: evaluation report</h1>",
             f"<p class='small'>pseudohealthy {html.escape(results['version'])}, written "
             f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}; data <code>{html.escape(results['data'])}</code> "
             f"({html.escape(results['source'])}), {len(results['cases'])} evaluated case(s).</p>"]
    if results["notes"]:
        parts.append("<h2>Notes</h2>" + "".join(f"<div class='note'>{html.escape(n)}</div>" for n in results["notes"]))

    header, rows = table_rows(results)
    parts.append("<h2>Summary (Table I style)</h2><p class='small'>mean ± std over cases; A-Dice mean ± std over trials. "
                 "Higher is better except A-Dice, MSE and MAE.</p>" + _table(header, rows))
    legend = "".join(f"<li><b>{html.escape(c.label)}</b>: {html.escape(c.what)} ({c.better} is better)</li>"
                     for c in PER_CASE_COLUMNS + METHOD_COLUMNS)
    parts.append(f"<ul class='small'>{legend}</ul>")

    parts.append("<h2>Examples (Fig. 7 style)</h2><p class='small'>Per row: input, each method's output, each difference "
                 f"map |input - output| (input window scale, colour range 0 to {DIFF_VMAX}), lesion annotation. Slices chosen "
                 f"with seed {results['settings']['seed']} among each case's largest-lesion slices.</p>")
    parts.append(_img(comparison_grid(figures, methods), "comparison grid"))

    curves = {n: (m["adice"] or {}).get("curves", []) for n, m in results["methods"].items()}
    if any(curves.values()):
        parts.append("<h2>A-Dice curves (Fig. 5c style)</h2><p class='small'>Dice on the training slices after each epoch; "
                     "line = mean over trials, band = min to max.</p>" + _img(adice_curves(curves), "A-Dice curves"))
        rows = []
        for name, m in results["methods"].items():
            a = m["adice"]
            if a:
                rows.append([name, fmt_mean_std(a["mean"], a["std"], 3), ", ".join(fmt(t, 3) for t in a["trials"]),
                             str(a["n_slices"]), fmt(a["seconds_per_trial"], 1)])
        parts.append(_table(["method", "A-Dice", "per trial", "lesion slices", "seconds per trial"], rows))

    health = [(n, m["healthiness"]) for n, m in results["methods"].items() if m.get("healthiness")]
    if health:
        info = results.get("healthiness_segmentor", {})
        parts.append("<h2>Healthiness (Xia et al.)</h2><p class='small'>Reference segmentor trained on "
                     f"{info.get('n_slices', '?')} pathological lesion slices of {len(info.get('trained_on', []))} case(s)"
                     f"{' (reused from the cache)' if info.get('reused') else ''}: <code>{html.escape(str(info.get('cache_file', '')))}</code>.</p>")
        parts.append(_table(["method", "Healthiness", "lesion pixels predicted on outputs", "on inputs", "reference Dice on inputs"],
                            [[n, fmt(h["healthiness"], 3), str(h["predicted_synthetic"]), str(h["predicted_pathological"]),
                              fmt(h.get("reference_dice_on_inputs"), 3)] for n, h in health]))

    if results.get("segmentors"):
        segs = results["segmentors"]
        parts.append("<h2>Segmentor generalisation (Fig. 8a style)</h2><p class='small'>Dice of each GVS checkpoint's "
                     "segmentor on the pathological lesion slices of the evaluated cases.</p>")
        parts.append(_table(["segmentor", "Dice per slice", "pooled Dice", "slices", "checkpoint"],
                            [[n, fmt_mean_std(s["mean"], s["std"], 3), fmt(s["pooled"], 3), str(s["n"]), s["checkpoint"]] for n, s in segs.items()]))
        parts.append(_img(dice_boxplot({n: s["per_sample"] for n, s in segs.items()}), "segmentor Dice box plot"))

    parts.append("<h2>Per case</h2>")
    for name, m in results["methods"].items():
        keys = [c for c in PER_CASE_COLUMNS if m["summary"].get(c.key, {}).get("n", 0)]
        rows = [[cid] + [fmt(m["per_case"].get(cid, {}).get(c.key), c.digits) for c in keys] for cid in m["cases"]]
        rows += [[cid] + ["missing"] * len(keys) for cid in m["missing"]]
        parts.append(f"<h3>{html.escape(name)} <span class='small'>({html.escape(m['source'])})</span></h3>"
                     + _table(["case"] + [c.label for c in keys], rows))

    parts.append("<h2>Metric definitions</h2><dl>" + "".join(f"<dt>{html.escape(t)}</dt><dd>{d}</dd>" for t, d in DEFINITIONS) + "</dl>")
    parts.append("<h2>Settings</h2><pre>" + html.escape(json.dumps(results["settings"], indent=2, default=str)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(results: dict[str, Any], figures: list[Any], path: str | Path) -> Path:
    """Write :func:`render_report` to ``path`` (UTF-8)."""
    path = Path(path)
    path.write_text(render_report(results, figures), encoding="utf-8")
    return path
