"""Every metric of one system's pieces against the reference pieces, with bootstrap confidence intervals.

Pieces are paired: generated piece i answers the prompt read from reference piece i. Metrics:

| metric | definition | level |
| --- | --- | --- |
| `pch_overlap` | intersection of piece i's duration-weighted pitch-class histogram with reference i's | piece |
| `transition_distance` | `metrics.transition_distance` of their pitch-class transitions (lower = closer) | piece |
| `structure` | `structure.structure_report(...).score` of the piece itself | piece |
| `pch_kl` | KL(reference || system) of the summed pitch-class histograms, in nats (lower = closer) | corpus |
| `bleu4_pitch`, `bleu4_interval` | corpus BLEU-4 of top-voice pitches / intervals vs every reference | corpus |
| `stats_oa` | mean over the scalar MusPy/mgeval features of the overlapping area with the reference set | set |

Per-piece metrics get the mean and a percentile interval of 1,000 resamples of pieces; corpus metrics resample the
pieces and recompute from per-piece parts (as cheap as a sum); `stats_oa` recomputes the KDEs, so it uses
`oa_resamples` (default 100) resamples. Everything is seeded.

    a = [analyze(p) for p in paths]        # once per MIDI file
    row = compare_system(a, reference_analyses, tonics)

Tests: `.venv/bin/python -m pytest tests/eval/test_compare.py -q`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from acemusic.eval.bootstrap import N_RESAMPLES, ci_of, resample_indices
from acemusic.eval.metrics import (
    ScoreLike,
    _closest_length,
    _max_counts,
    histogram_overlap,
    kl_divergence,
    load,
    melody_sequence,
    ngram_counts,
    pitch_class_histogram,
    pitch_class_transitions,
    transition_distance,
)
from acemusic.eval.stats import FEATURES, compare_features, describe
from acemusic.eval.structure import structure_report

HISTOGRAM_FEATURES = ("note_length_histogram", "ioi_histogram")
SCALAR_FEATURES = tuple(f for f in FEATURES if f not in HISTOGRAM_FEATURES)
# Metrics where lower is better (for the report's arrows).
LOWER_IS_BETTER = ("transition_distance", "pch_kl")


@dataclass
class Analysis:
    """What the metrics need from one piece, computed once."""

    pch: np.ndarray  # (12,) duration-weighted, not normalized
    transitions: np.ndarray  # (12, 12) counts
    melody: list[int]
    intervals: list[int]
    structure: float
    features: dict
    n_notes: int


def analyze(score: ScoreLike) -> Analysis:
    s = load(score)
    return Analysis(
        pitch_class_histogram(s, normalize=False), pitch_class_transitions(s, normalize=False),
        melody_sequence(s, "pitch"), melody_sequence(s, "interval"), structure_report(s).score, describe(s),
        int(s.note_num()),
    )


# ---- BLEU from per-candidate parts ----------------------------------------------------------------------------


def bleu_parts(candidates: Sequence[Sequence[Hashable]], references: Sequence[Sequence[Hashable]],
               max_n: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate: clipped n-gram matches (n, max_n), n-gram counts (n, max_n), its length, and the closest
    reference length, against the shared reference set: sums of these give `metrics.corpus_bleu`."""
    maxes = [_max_counts(references, k) for k in range(1, max_n + 1)]
    ref_lengths = [len(r) for r in references]
    num = np.zeros((len(candidates), max_n))
    den = np.zeros((len(candidates), max_n))
    c_len = np.zeros(len(candidates))
    r_len = np.zeros(len(candidates))
    for i, cand in enumerate(candidates):
        for k in range(max_n):
            counts = ngram_counts(cand, k + 1)
            num[i, k] = sum(min(c, maxes[k][g]) for g, c in counts.items())
            den[i, k] = sum(counts.values())
        c_len[i] = len(cand)
        r_len[i] = _closest_length(ref_lengths, len(cand)) if ref_lengths else 0
    return num, den, c_len, r_len


def bleu_from_parts(num: np.ndarray, den: np.ndarray, c_len: np.ndarray, r_len: np.ndarray) -> float:
    """Corpus BLEU (uniform weights) from summed parts; 0 when a precision is 0 (no smoothing, as corpus_bleu)."""
    n, d, c, r = num.sum(0), den.sum(0), float(c_len.sum()), float(r_len.sum())
    if c == 0 or np.any(n == 0):
        return 0.0
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return float(bp * math.exp(np.mean(np.log(n / d))))


# ---- one system against the reference -------------------------------------------------------------------------


def tonic_relative(pch: np.ndarray, tonic: int | None) -> np.ndarray:
    """A pitch-class histogram rotated so index 0 is the tonic (no rotation without a tonic), normalized."""
    h = np.roll(np.asarray(pch, np.float64), -(tonic or 0))
    s = h.sum()
    return h / s if s > 0 else h


def compare_system(gen: Sequence[Analysis], ref: Sequence[Analysis], tonics: Sequence[int | None] | None = None,
                   n_resamples: int = N_RESAMPLES, oa_resamples: int = 100, seed: int = 0) -> dict:
    """All metrics of `gen` (paired with `ref`, same order) with 95% bootstrap intervals; see the module table."""
    if len(gen) != len(ref):
        raise ValueError(f"{len(gen)} generated pieces but {len(ref)} reference pieces")
    n = len(gen)
    idx = resample_indices(n, n_resamples, seed)
    out: dict = {"n": n}
    per_piece = {
        "pch_overlap": np.asarray([histogram_overlap(g.pch, r.pch) for g, r in zip(gen, ref, strict=True)]),
        "transition_distance": np.asarray([transition_distance(g.transitions, r.transitions)
                                           for g, r in zip(gen, ref, strict=True)]),
        "structure": np.asarray([g.structure for g in gen]),
        "notes": np.asarray([g.n_notes for g in gen], np.float64),
    }
    for name, v in per_piece.items():
        out[name] = ci_of(float(v.mean()), v[idx].mean(axis=1))
    out["per_piece"] = {k: v.tolist() for k, v in per_piece.items()}

    g_pch = np.stack([g.pch for g in gen])
    r_pch = np.stack([r.pch for r in ref])
    kl = kl_divergence(r_pch.sum(0), g_pch.sum(0))
    out["pch_kl"] = ci_of(kl, [kl_divergence(r_pch[i].sum(0), g_pch[i].sum(0)) for i in idx])

    for kind, attr in (("pitch", "melody"), ("interval", "intervals")):
        refs = [getattr(r, attr) for r in ref]
        parts = bleu_parts([getattr(g, attr) for g in gen], refs)
        point = bleu_from_parts(*parts)
        out[f"bleu4_{kind}"] = ci_of(point, [bleu_from_parts(*(p[i] for p in parts)) for i in idx])

    g_feats, r_feats = [g.features for g in gen], [r.features for r in ref]
    table = compare_features(g_feats, r_feats)
    oa = [table[f]["oa"] for f in SCALAR_FEATURES if not math.isnan(table[f]["oa"])]
    point = float(np.mean(oa)) if oa else math.nan
    stats = []
    for i in resample_indices(n, oa_resamples, seed + 1):
        t = compare_features([g_feats[k] for k in i], r_feats, SCALAR_FEATURES)
        vals = [t[f]["oa"] for f in SCALAR_FEATURES if not math.isnan(t[f]["oa"])]
        stats.append(float(np.mean(vals)) if vals else math.nan)
    out["stats_oa"] = ci_of(point, stats)
    out["features"] = table
    tonics = list(tonics) if tonics is not None else [None] * n
    out["pch_tonic_relative"] = tonic_relative(
        sum(tonic_relative(g.pch, t) for g, t in zip(gen, tonics, strict=True)), None).tolist()
    return out
