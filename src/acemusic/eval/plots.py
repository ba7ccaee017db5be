"""The report's figures (matplotlib, Agg backend, PNG): pitch-class histograms, metric bars with bootstrap intervals,
piano rolls of samples. Each function takes plain data and a path, so the report decides what goes in.

Tests: `.venv/bin/python -m pytest tests/eval/test_report.py -q`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEGREES = ("1", "b2", "2", "b3", "3", "4", "#4", "5", "b6", "6", "b7", "7")


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def pitch_class_plot(hists: dict[str, Sequence[float]], path: str | Path, title: str) -> Path:
    """Grouped bars: one tonic-relative pitch-class histogram per system (index 0 = the asked tonic)."""
    plt = _plt()
    names = list(hists)
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=110)
    width = 0.8 / max(len(names), 1)
    x = np.arange(12)
    for k, name in enumerate(names):
        ax.bar(x + (k - (len(names) - 1) / 2) * width, hists[name], width, label=name)
    ax.set_xticks(x, DEGREES)
    ax.set_xlabel("scale degree relative to the asked tonic")
    ax.set_ylabel("share of note duration")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def metric_bars(rows: dict[str, dict], metrics: Sequence[tuple[str, str]], path: str | Path) -> Path:
    """One panel per metric: a bar per system with its 95% bootstrap interval as the error bar.

    rows[system][metric] = {"value", "lo", "hi"}; `metrics` = [(key, label)]; systems without a metric are skipped.
    """
    plt = _plt()
    cols = min(3, len(metrics))
    nrows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), dpi=110, squeeze=False)
    for ax, (key, label) in zip(axes.ravel(), metrics, strict=False):
        names = [s for s in rows if isinstance(rows[s].get(key), dict)]
        vals = np.asarray([rows[s][key]["value"] for s in names], np.float64)
        lo = np.asarray([rows[s][key]["lo"] for s in names], np.float64)
        hi = np.asarray([rows[s][key]["hi"] for s in names], np.float64)
        err = np.vstack([np.maximum(vals - lo, 0), np.maximum(hi - vals, 0)])
        ax.bar(range(len(names)), vals, yerr=np.nan_to_num(err), capsize=3, color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def piano_rolls(scores: dict[str, Sequence], path: str | Path, titles: Sequence[str] | None = None) -> Path:
    """A grid of piano rolls: one row per system, one column per sample (symusic Scores, any resolution).

    Each note is a horizontal bar at its pitch from onset to end (in quarter notes); drums are grey, bar lines
    dotted (from the first time signature)."""
    plt = _plt()
    names = list(scores)
    ncols = max((len(v) for v in scores.values()), default=1)
    fig, axes = plt.subplots(len(names), ncols, figsize=(3.6 * ncols, 1.5 * len(names) + 0.6), dpi=110,
                             squeeze=False, sharey=True)
    for r, name in enumerate(names):
        for c in range(ncols):
            ax = axes[r, c]
            ax.tick_params(labelsize=6)
            if c >= len(scores[name]):
                ax.axis("off")
                continue
            s = scores[name][c]
            tpq = s.ticks_per_quarter
            for track in s.tracks:
                a = track.notes.numpy()
                color = "0.6" if track.is_drum else f"C{int(track.program) % 10}"
                ax.hlines(a["pitch"], a["time"] / tpq, (a["time"] + a["duration"]) / tpq, colors=color, lw=2)
            ts = s.time_signatures
            bar = ts[0].numerator * 4 / ts[0].denominator if len(ts) else 4.0
            end = max(s.end() / tpq, bar)
            for x in np.arange(0, end + 1e-9, bar):
                ax.axvline(x, color="0.85", lw=0.6, ls=":")
            ax.set_xlim(0, end)
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
            if r == 0 and titles is not None and c < len(titles):
                ax.set_title(titles[c], fontsize=7)
    fig.supxlabel("quarter notes", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
