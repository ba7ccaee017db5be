"""Descriptive statistics of pieces (MusPy, mgeval) and the overlapping-area comparison of two sets of pieces.

Per-piece features follow MusPy 0.5 (Dong et al. 2020, "MusPy: a toolkit for symbolic music generation", ISMIR)
exactly where MusPy has them, on the tokenizer's grid (TPQ = 12 ticks per quarter; a beat is a quarter note, drums
excluded from pitch features), so `tests/eval/test_stats.py` checks equality with MusPy on real files. The note-
length and IOI histograms and the set comparison follow mgeval (Yang & Lerch 2020, "On the evaluation of generative
models in music", Neural Computing and Applications 32).

    feats = describe(score)                                  # {"pitch_entropy": 3.1, ..., "ioi_histogram": (12,)}
    table = compare_sets(generated_scores, reference_scores)  # per feature: means, stds, overlapping areas

Tests: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/eval/test_stats.py -q`
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import symusic

from acemusic.eval.metrics import Notes, ScoreLike, bar_lines, bar_spans, load, notes_of
from acemusic.tokenizer.vocab import TPQ

# mgeval's 12 length classes (whole, half, quarter, 8th, 16th, dotted half, dotted quarter, dotted 8th, dotted
# 16th, half-, quarter-, 8th-note triplet), in ticks at TPQ = 12. mgeval scales them with the bar (bar / 96 units);
# we keep note values absolute so pieces in different meters share bins (identical in 4/4).
LENGTH_CLASSES = np.array([48, 24, 12, 6, 3, 36, 18, 9, 4.5, 16, 8, 4], np.float64)
LENGTH_NAMES = ("1", "1/2", "1/4", "1/8", "1/16", "1/2.", "1/4.", "1/8.", "1/16.", "1/2t", "1/4t", "1/8t")


# ---- pitch content (drums excluded, as MusPy) --------------------------------------------------------------------


def pitch_range(score: ScoreLike) -> int:
    """Highest minus lowest pitch in semitones (MusPy `pitch_range`); 0 without pitched notes."""
    p = notes_of(score).pitched().pitch
    return int(p.max() - p.min()) if len(p) else 0


def n_pitches_used(score: ScoreLike) -> int:
    """Number of distinct MIDI pitches (MusPy `n_pitches_used`; mgeval "pitch count" PC)."""
    return len(np.unique(notes_of(score).pitched().pitch))


def n_pitch_classes_used(score: ScoreLike) -> int:
    """Number of distinct pitch classes (MusPy `n_pitch_classes_used`)."""
    return len(np.unique(notes_of(score).pitched().pitch % 12))


def _entropy_bits(counts: np.ndarray) -> float:
    total = counts.sum()
    if total < 1:
        return math.nan
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def pitch_entropy(score: ScoreLike) -> float:
    """Shannon entropy (bits) of the note-count pitch histogram, 128 bins (MusPy `pitch_entropy`); NaN if no notes."""
    return _entropy_bits(np.bincount(notes_of(score).pitched().pitch, minlength=128))


def pitch_class_entropy(score: ScoreLike) -> float:
    """Entropy (bits) of the note-count pitch-class histogram (MusPy; Wu & Yang 2020 "Jazz Transformer" H)."""
    return _entropy_bits(np.bincount(notes_of(score).pitched().pitch % 12, minlength=12))


_MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)
_MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], bool)  # natural minor


def scale_consistency(score: ScoreLike) -> float:
    """Largest share of notes inside one major or natural-minor scale, over the 24 scales (MusPy; Mogren 2016).

    NaN without pitched notes.
    """
    counts = np.bincount(notes_of(score).pitched().pitch % 12, minlength=12)
    if counts.sum() < 1:
        return math.nan
    scales = np.stack([np.roll(s, r) for s in (_MAJOR, _MINOR) for r in range(12)])  # (24, 12)
    return float((scales @ counts).max() / counts.sum())


# ---- time content ------------------------------------------------------------------------------------------------


def _length(notes: Notes) -> int:
    """Song length in ticks as MusPy: the latest note end over all tracks, drums included."""
    return int(notes.end.max()) if len(notes) else 0


def _pianoroll(notes: Notes) -> np.ndarray:
    """(length, 128) bool: pitch p sounds at tick t. Drums excluded, length counts drums (as MusPy)."""
    length = _length(notes)
    p = notes.pitched()
    diff = np.zeros((length + 1, 128), np.int32)
    np.add.at(diff, (p.onset, p.pitch), 1)
    np.add.at(diff, (p.end, p.pitch), -1)
    return np.cumsum(diff, axis=0)[:length] > 0


def polyphony(score: ScoreLike) -> float:
    """Mean number of pitches sounding over the ticks where at least one sounds (MusPy `polyphony`); NaN if none."""
    roll = _pianoroll(notes_of(score))
    active = roll.sum(axis=1)
    n = np.count_nonzero(active)
    return float(active.sum() / n) if n else math.nan


def polyphony_rate(score: ScoreLike, threshold: int = 2) -> float:
    """Share of ticks with more than `threshold` pitches sounding (MusPy `polyphony_rate`).

    MuseGAN's "polyphonicity" (Dong et al. 2018): with the default threshold 2 a tick counts when three or more
    pitches sound (MusPy tests `> threshold`). The denominator is every tick of the song. NaN for an empty song.
    """
    roll = _pianoroll(notes_of(score))
    if len(roll) < 1:
        return math.nan
    return float(np.count_nonzero(roll.sum(axis=1) > threshold) / len(roll))


def empty_beat_rate(score: ScoreLike) -> float:
    """Share of beats (quarter notes) where no note sounds, drums included (MusPy `empty_beat_rate`; Pypianoroll).

    Convention of MusPy 0.5: there are length // TPQ + 1 beats, and a note marks every beat from onset // TPQ to
    end // TPQ inclusive, so a note ending exactly on a beat line also marks that beat. NaN for an empty song.
    """
    notes = notes_of(score)
    length = _length(notes)
    if length < 1:
        return math.nan
    n_beats = length // TPQ + 1
    diff = np.zeros(n_beats + 1, np.int64)
    np.add.at(diff, notes.onset // TPQ, 1)
    np.add.at(diff, notes.end // TPQ + 1, -1)
    return float(1 - np.count_nonzero(np.cumsum(diff)[:n_beats]) / n_beats)


def first_bar_ticks(score: ScoreLike) -> int:
    """Length in ticks of the first bar (the measure resolution groove consistency uses by default)."""
    return int(bar_spans(score, end=0)[1][0])


def groove_consistency(score: ScoreLike, measure_resolution: int | None = None) -> float:
    """1 - mean Hamming distance of the onset patterns of neighbouring measures (MusPy; Wu & Yang 2020 GS).

    Each measure is a binary vector of `measure_resolution` ticks (default: the first bar's length, so a fixed
    meter is assumed, as in MusPy) with a 1 where some note (drums included) starts. There are length //
    measure_resolution + 1 measures; NaN with fewer than two.
    """
    score = load(score)
    mr = measure_resolution or first_bar_ticks(score)
    if mr < 1:
        raise ValueError(f"measure_resolution must be positive, got {mr}")
    notes = notes_of(score)
    n_measures = _length(notes) // mr + 1
    if n_measures < 2:
        return math.nan
    grid = np.zeros((n_measures, mr), bool)
    grid[notes.onset // mr, notes.onset % mr] = True
    return float(1 - np.count_nonzero(grid[:-1] != grid[1:]) / (mr * (n_measures - 1)))


def note_density(score: ScoreLike) -> float:
    """Notes per bar, drums included, over the bars up to the last onset (as `Tokenizer.notes_per_bar`).

    mgeval's note count (NC) per bar; 0.0 for an empty score.
    """
    score = load(score)
    notes = notes_of(score)
    return len(notes) / len(bar_lines(score)) if len(notes) else 0.0


def _length_class_histogram(values: np.ndarray, normalize: bool) -> np.ndarray:
    idx = np.abs(values[:, None].astype(np.float64) - LENGTH_CLASSES[None, :]).argmin(axis=1)  # ties: first class
    h = np.bincount(idx, minlength=len(LENGTH_CLASSES)).astype(np.float64)
    return h / h.sum() if normalize and h.sum() > 0 else h


def note_length_histogram(score: ScoreLike, normalize: bool = True) -> np.ndarray:
    """(12,) histogram of pitched note lengths, each snapped to the nearest of mgeval's classes (`LENGTH_NAMES`)."""
    return _length_class_histogram(notes_of(score).pitched().duration, normalize)


def ioi_histogram(score: ScoreLike, normalize: bool = True) -> np.ndarray:
    """(12,) histogram of inter-onset intervals between consecutive distinct onsets (all notes, drums included),
    snapped to the same classes as note lengths (mgeval's IOI feature as a histogram rather than its mean)."""
    onsets = np.unique(notes_of(score).onset)
    return _length_class_histogram(np.diff(onsets), normalize)


FEATURES: dict[str, Callable[[symusic.Score], float | np.ndarray]] = {
    "pitch_range": pitch_range,
    "n_pitches_used": n_pitches_used,
    "n_pitch_classes_used": n_pitch_classes_used,
    "pitch_entropy": pitch_entropy,
    "pitch_class_entropy": pitch_class_entropy,
    "scale_consistency": scale_consistency,
    "polyphony": polyphony,
    "polyphony_rate": polyphony_rate,
    "empty_beat_rate": empty_beat_rate,
    "groove_consistency": groove_consistency,
    "note_density": note_density,
    "note_length_histogram": note_length_histogram,
    "ioi_histogram": ioi_histogram,
}


def describe(score: ScoreLike, features: Sequence[str] | None = None) -> dict[str, float | np.ndarray]:
    """Every feature of `FEATURES` (or the named ones) for one piece; scalars as float, histograms as arrays."""
    score = load(score)
    names = list(FEATURES) if features is None else list(features)
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ValueError(f"unknown features {unknown}; known: {list(FEATURES)}")
    out: dict[str, float | np.ndarray] = {}
    for name in names:
        v = FEATURES[name](score)
        out[name] = v if isinstance(v, np.ndarray) else float(v)
    return out


# ---- overlapping area of distributions (Yang & Lerch 2020) -------------------------------------------------------


def scott_bandwidth(samples: np.ndarray) -> float:
    """Scott's rule, as scipy.stats.gaussian_kde in 1-D: std (ddof=1) * n^(-1/5); 0 if undefined."""
    x = np.asarray(samples, np.float64)
    if len(x) < 2:
        return 0.0
    return float(np.std(x, ddof=1) * len(x) ** (-0.2))


def kde(samples: np.ndarray, bandwidth: float) -> Callable[[np.ndarray], np.ndarray]:
    """Gaussian kernel density estimate: x -> mean_i N(x; samples_i, bandwidth^2)."""
    x = np.asarray(samples, np.float64)
    h = float(bandwidth)
    if h <= 0:
        raise ValueError(f"bandwidth must be positive, got {h}")

    def pdf(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, np.float64)
        out = np.empty(t.shape)
        for i in range(0, t.size, 4096):  # chunks keep memory at 4096 * n floats
            z = (t.ravel()[i : i + 4096, None] - x[None, :]) / h
            out.ravel()[i : i + 4096] = np.exp(-0.5 * z * z).mean(axis=1) / (h * math.sqrt(2 * math.pi))
        return out

    return pdf


def overlapping_area(a: Sequence[float], b: Sequence[float], bandwidth: float | None = None) -> float:
    """Overlapping area OA = integral of min(f_a, f_b) of the Gaussian KDEs of two samples, in [0, 1].

    Yang & Lerch 2020 (mgeval `overlap_area`): KDE with Scott's bandwidth per sample. Differences, all documented:
    mgeval integrates with `scipy.integrate.quad` between the smallest and largest sample, cutting the tails; we
    integrate the whole densities on a grid (trapezoid, step <= bandwidth / 50, +-6 bandwidths beyond the data).
    A sample with zero spread (or a single value) has no Scott bandwidth: it borrows the other sample's (the scale
    at which the comparison is made), or the pooled sample's when neither has one; if the pooled sample has zero
    spread too, OA is 1 for the same constant and 0 otherwise. NaN if either sample is empty. `bandwidth` overrides
    both bandwidths.
    """
    xa = np.asarray(a, np.float64)
    xb = np.asarray(b, np.float64)
    if len(xa) == 0 or len(xb) == 0:
        return math.nan
    if bandwidth is None:
        pooled = scott_bandwidth(np.concatenate([xa, xb]))
        if pooled == 0:
            return 1.0 if xa[0] == xb[0] else 0.0
        ha, hb = scott_bandwidth(xa), scott_bandwidth(xb)
        ha, hb = ha or hb or pooled, hb or ha or pooled
    else:
        ha = hb = float(bandwidth)
    lo = min(xa.min(), xb.min()) - 6 * max(ha, hb)
    hi = max(xa.max(), xb.max()) + 6 * max(ha, hb)
    n = int(min(max(8193, (hi - lo) / (min(ha, hb) / 50)), 400_001))
    grid = np.linspace(lo, hi, n)
    fa, fb = density_on_grid(xa, ha, grid), density_on_grid(xb, hb, grid)
    return float(np.clip(np.trapezoid(np.minimum(fa, fb), grid), 0.0, 1.0))


def density_on_grid(x: np.ndarray, h: float, grid: np.ndarray, exact_limit: int = 20_000_000) -> np.ndarray:
    """The Gaussian KDE of `x` on a uniform grid: exact while len(x) * len(grid) <= exact_limit, else binned.

    Binned KDE (Silverman 1982, "Algorithm AS 176"; Wand 1994): samples are linearly binned onto the grid and the
    counts convolved (FFT) with the Gaussian sampled at the grid step; error O(step^2), negligible at step <= h / 50.
    It keeps mgeval's inter-set distances of large sets (n_generated * n_reference samples) tractable.
    """
    x = np.asarray(x, np.float64)
    if len(x) * len(grid) <= exact_limit:
        return kde(x, h)(grid)
    step = (grid[-1] - grid[0]) / (len(grid) - 1)
    pos = np.clip((x - grid[0]) / step, 0, len(grid) - 1 - 1e-9)
    i = np.floor(pos).astype(np.int64)
    w = pos - i
    counts = np.bincount(i, 1 - w, len(grid)) + np.bincount(i + 1, w, len(grid) + 1)[: len(grid)]
    m = int(np.ceil(8 * h / step))
    kernel = np.exp(-0.5 * (np.arange(-m, m + 1) * step / h) ** 2) / (h * np.sqrt(2 * np.pi))
    size = 1 << int(np.ceil(np.log2(len(grid) + 2 * m + 1)))
    full = np.fft.irfft(np.fft.rfft(counts, size) * np.fft.rfft(kernel, size), size)
    return np.maximum(full[m : m + len(grid)], 0.0) / len(x)


def _as_matrix(values: list[float | np.ndarray]) -> np.ndarray:
    """(n, d) feature matrix of one set, rows with a NaN dropped."""
    if not values:
        return np.zeros((0, 1))
    m = np.stack([np.atleast_1d(np.asarray(v, np.float64)).ravel() for v in values])
    return m[~np.isnan(m).any(axis=1)]


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)


def compare_features(generated: list[dict], reference: list[dict], features: Sequence[str] | None = None) -> dict:
    """Per-feature comparison of two sets of `describe` outputs. For each feature:

    - `generated_mean/std`, `reference_mean/std` (lists for histogram features), `n_generated/n_reference` (pieces
      with a defined value; NaN values, e.g. polyphony of a drum-only piece, are left out);
    - `oa`: overlapping area of the two KDEs of the per-piece values (scalar features; NaN for histograms);
    - `oa_mgeval`: mgeval's protocol (Yang & Lerch 2020 sec. 4): Euclidean distances between pieces, the intra-set
      distances of the reference (all pairs) against the inter-set distances (each generated to each reference
      piece), OA of their KDEs. Defined for histograms too; 1 = generated pieces sit among the reference pieces
      as the reference pieces sit among themselves.
    """
    first = (generated or reference or [{}])[0]
    names = list(features) if features is not None else [n for n in first if n in FEATURES]
    out: dict[str, dict] = {}
    for name in names:
        g = _as_matrix([d[name] for d in generated])
        r = _as_matrix([d[name] for d in reference])
        scalar = max(g.shape[1], r.shape[1]) == 1
        row: dict = {"n_generated": len(g), "n_reference": len(r)}
        for key, m in (("generated", g), ("reference", r)):
            mean = m.mean(axis=0) if len(m) else np.full(m.shape[1], math.nan)
            std = m.std(axis=0) if len(m) else np.full(m.shape[1], math.nan)
            row[f"{key}_mean"] = float(mean[0]) if scalar else mean.tolist()
            row[f"{key}_std"] = float(std[0]) if scalar else std.tolist()
        row["oa"] = overlapping_area(g[:, 0], r[:, 0]) if scalar else math.nan
        iu = np.triu_indices(len(r), k=1)
        intra = _pairwise(r, r)[iu] if len(r) > 1 else np.zeros(0)
        inter = _pairwise(g, r).ravel() if len(g) and len(r) else np.zeros(0)
        row["oa_mgeval"] = overlapping_area(intra, inter)
        out[name] = row
    return out


def compare_sets(
    generated: Sequence[ScoreLike], reference: Sequence[ScoreLike], features: Sequence[str] | None = None
) -> dict:
    """`describe` every piece of both sets and `compare_features` them (see there for the fields)."""
    return compare_features(
        [describe(s, features) for s in generated], [describe(s, features) for s in reference], features
    )
