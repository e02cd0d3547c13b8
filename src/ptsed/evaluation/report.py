"""Writing an evaluation: ``summary.json``, ``per_class.csv``, ``psd_roc.png``, and a printed table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np


def _jsonable(x):  # noqa: ANN001, ANN202
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def save_result(result, out_dir: str | Path, *, plot: bool = True) -> dict[str, Path]:  # noqa: ANN001
    """Write the three files of an :class:`~ptsed.evaluation.protocol.EvaluationResult`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out / "summary.json", "per_class": out / "per_class.csv"}
    paths["summary"].write_text(json.dumps(_jsonable(result.summary), indent=2) + "\n", encoding="utf-8")
    rows = result.per_class
    fields = list(rows[0]) if rows else ["class", "n_events"]
    with open(paths["per_class"], "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    if plot and result.psds:
        paths["psd_roc"] = plot_psd_roc(result, out / "psd_roc.png")
    return paths


def plot_psd_roc(result, path: str | Path) -> Path:  # noqa: ANN001
    """The effective PSD-ROC of each PSDS (TPR over eFPR per hour), as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    for name, res in result.psds.items():
        etpr, efpr = res.roc
        ax.step(efpr, etpr, where="post", label=f"{name} = {res.value:.4f} (macro {res.macro:.4f})")
        ax.set_xlim(0, res.settings.max_efpr)
    ax.set_ylim(0, 1)
    ax.set_xlabel("eFPR (per hour)")
    ax.set_ylabel("eTPR")
    ax.set_title(f"PSD-ROC ({result.summary.get('protocol', '')}, {result.summary.get('n_classes')} classes)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def format_summary(result) -> str:  # noqa: ANN001
    """A two-column table of the headline numbers and the bookkeeping."""
    s = result.summary
    rows: list[tuple[str, str]] = []

    def num(x) -> str:  # noqa: ANN001
        return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4f}"

    for key in ("psds1", "psds1_macro", "psds2", "psds2_macro", "pauroc", "frame_map"):
        if key in s:
            rows.append((key, num(s[key])))
    for family in ("collar_f1", "segment_f1"):
        for thr, v in s.get(family, {}).items():
            rows.append((f"{family}@{thr} micro / macro", f"{num(v['micro'])} / {num(v['macro'])}"))
    rows += [
        ("protocol", str(s.get("protocol"))),
        ("median filter (s)", str(s["settings"].get("median_filter_s"))),
        ("clips / classes / events", f"{s['n_clips']} / {s['n_classes']} / {s['n_events']}"),
    ]
    if s.get("classes_dropped"):
        rows.append(("classes unknown to the system", str(len(s["classes_dropped"]))))
    if s.get("clips_missing_predictions"):
        rows.append(("clips without predictions", str(len(s["clips_missing_predictions"]))))
    if s.get("clips_dropped_without_events"):
        rows.append(("clips dropped (no events)", str(s["clips_dropped_without_events"])))
    if s.get("clips_failed"):
        rows.append(("clips failed", str(len(s["clips_failed"]))))
    width = max(len(k) for k, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  {'-' * 15}"]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


def format_per_class(result, limit: int | None = None) -> str:  # noqa: ANN001
    """The per-class numbers as an aligned table (sorted by the first PSDS, best first)."""
    rows = result.per_class
    if not rows:
        return "(no classes)"
    keys = [k for k in rows[0] if k != "class"]
    sort_key = next((k for k in ("psds1", "psds2", "pauroc") if k in keys), None)
    if sort_key:
        rows = sorted(rows, key=lambda r: -(r[sort_key] if isinstance(r[sort_key], float) else 0.0))
    if limit:
        rows = rows[:limit]
    width = max(5, *(len(r["class"]) for r in rows))
    cols = [max(len(k), 8) for k in keys]
    lines = ["class".ljust(width) + "  " + "  ".join(k.rjust(w) for k, w in zip(keys, cols, strict=True))]
    for r in rows:
        cells = [
            (f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k])).rjust(w) for k, w in zip(keys, cols, strict=True)
        ]
        lines.append(r["class"].ljust(width) + "  " + "  ".join(cells))
    return "\n".join(lines)
