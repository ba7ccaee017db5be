"""Vary: N variations of a piece that keep its motif recognisable and differ from each other.

A variation keeps the opening `keep_bars` bars (where the motif is stated) note for note and regenerates a share
`strength` of the other bars by fill-in-the-middle (`infill_spans`: each regenerated span sees the music on both
sides, including the kept statements of the motif). Variation i picks its bars with `np.random.default_rng([seed,
i])` and decodes with its own seeds, so the N variations rework different bars differently; bars that are not
picked stay as they are, which is what keeps the piece recognisable.

Measures (`variation_stats`): motif similarity = share of the input's n-note melody motifs (intervals + inter-onset
intervals of the top voice, transposition-invariant, `eval.structure.motif_recurrence`'s definition) that occur in
the variation; difference = 1 - Jaccard overlap of the (onset, pitch, program) note sets of two variations.

Tests: `.venv/bin/python -m pytest tests/generate/test_vary.py -q`.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import symusic

from acemusic.errors import InputError
from acemusic.generate.tasks.base import TaskContext
from acemusic.generate.tasks.infill import infill_spans
from acemusic.generate.tasks.io import Piece, note_table

MAX_VARIATIONS = 16
MOTIF_NOTES = 4


def check_vary(n: int, strength: float, keep_bars: int, n_bars: int) -> None:
    if not 1 <= n <= MAX_VARIATIONS:
        raise InputError("--n", f"must be 1..{MAX_VARIATIONS}, got {n}")
    if not 0.0 < strength <= 1.0:
        raise InputError("--strength", f"must be in (0, 1], got {strength}")
    if keep_bars < 0:
        raise InputError("--keep-bars", f"must be >= 0, got {keep_bars}")
    if n_bars - keep_bars < 1:
        raise InputError("--keep-bars", f"the piece has {n_bars} bars: keeping {keep_bars} leaves none to vary")


def pick_spans(n_bars: int, keep_bars: int, strength: float, rng: np.random.Generator) -> list[tuple[int, int]]:
    """round(strength * free bars) (at least 1) of the bars after `keep_bars`, merged into [a, b) spans."""
    free = np.arange(keep_bars, n_bars)
    k = max(1, int(strength * len(free) + 0.5))  # half rounds up
    bars = np.sort(rng.choice(free, size=min(k, len(free)), replace=False))
    spans: list[tuple[int, int]] = []
    for b in bars.tolist():
        if spans and spans[-1][1] == b:
            spans[-1] = (spans[-1][0], b + 1)
        else:
            spans.append((b, b + 1))
    return spans


def vary(ctx: TaskContext, piece: Piece, n: int = 4, strength: float = 0.5, keep_bars: int = 1, seed: int = 0,
         sampling=None, on_step=None, key_strength: float = 1.0) -> list[tuple[symusic.Score, list[tuple[int, int]]]]:
    """N (variation, regenerated spans) pairs; spans are 0-based half-open bar ranges."""
    check_vary(n, strength, keep_bars, piece.n_bars)
    out = []
    for i in range(n):
        spans = pick_spans(piece.n_bars, keep_bars, strength, np.random.default_rng([seed, i]))
        score = infill_spans(ctx, piece, spans, sampling=sampling, seed=seed * 1000 + 100 * i, on_step=on_step,
                             key_strength=key_strength)
        out.append((score, spans))
    return out


# ---- measures --------------------------------------------------------------------------------------------------
def motifs(score: symusic.Score, n: int = MOTIF_NOTES) -> set[tuple[int, ...]]:
    """The n-note motifs of the top voice: (n-1 intervals, n-1 inter-onset intervals), on the 12-TPQ grid."""
    from acemusic.eval.metrics import melody

    m = melody(score)
    if len(m) < n:
        return set()
    iv, ioi = np.diff(m.pitch), np.diff(m.onset)
    return {(*iv[i:i + n - 1].tolist(), *ioi[i:i + n - 1].tolist()) for i in range(len(m) - n + 1)}


def motif_similarity(original: symusic.Score, variation: symusic.Score, n: int = MOTIF_NOTES) -> float:
    """Share of the original's distinct motifs that occur in the variation (1 = every motif is still there)."""
    mo = motifs(original, n)
    return len(mo & motifs(variation, n)) / len(mo) if mo else 1.0


def _note_set(score: symusic.Score) -> set[tuple[int, int, int]]:
    grid = score.resample(12, min_dur=1) if score.ticks_per_quarter != 12 else score
    return {(int(r[0]), int(r[2]), int(r[4])) for r in note_table(grid)}


def difference(a: symusic.Score, b: symusic.Score) -> float:
    """1 - Jaccard overlap of the (onset, pitch, program) note sets: 0 = the same notes, 1 = none shared."""
    sa, sb = _note_set(a), _note_set(b)
    return 1.0 - len(sa & sb) / len(sa | sb) if sa | sb else 0.0


def variation_stats(original: symusic.Score, variations: list[symusic.Score]) -> dict:
    """Motif similarity of each variation to the original, difference from the original and between every pair."""
    pair = [difference(x, y) for x, y in combinations(variations, 2)]
    return {
        "motif_similarity": [motif_similarity(original, v) for v in variations],
        "difference_from_original": [difference(original, v) for v in variations],
        "pairwise_difference": pair,
        "mean_pairwise_difference": float(np.mean(pair)) if pair else 0.0,
    }
