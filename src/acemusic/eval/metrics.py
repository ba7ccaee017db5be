"""Symbolic music metrics on symusic Scores: pitch-class histograms, transition matrices, melodic BLEU.

Every function takes a `symusic.Score` (any resolution: it is put on the tokenizer's grid first, `TPQ` = 12 ticks per
quarter via `score.resample(12, min_dur=1)`), so the metrics run on any MIDI file, generated or not. Pure numpy.

    from acemusic.eval.metrics import pitch_class_histogram, histogram_overlap, melody_bleu
    h = pitch_class_histogram(score, weight="duration")
    histogram_overlap(h, pitch_class_histogram(reference))       # 1.0 = same pitch-class distribution
    melody_bleu([generated], references, kind="interval")         # corpus BLEU-4 of the top-voice melody

The helpers at the top (`load`, `notes_of`, `melody`, `bar_lines`, `bar_spans`) are shared with `structure.py`
and `stats.py`.
Tests: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/eval/test_metrics.py -q`
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import symusic

from acemusic.tokenizer.vocab import DRUMS, TPQ

# symusic.Score is a factory object, so `symusic.Score | str` fails at runtime: spell the union with typing.
ScoreLike = Union[symusic.Score, str, Path]  # noqa: UP007

# ---- notes on the grid -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notes:
    """All notes of a score on the TPQ grid, sorted by (onset, pitch, track). `program` is 128 for drums."""

    onset: np.ndarray  # (n,) int64 ticks
    duration: np.ndarray  # (n,) int64 ticks, >= 1
    pitch: np.ndarray  # (n,) int64 (drum key for drums)
    program: np.ndarray  # (n,) int64, DRUMS = 128
    track: np.ndarray  # (n,) int64 index of the source track

    def __len__(self) -> int:
        return len(self.onset)

    @property
    def end(self) -> np.ndarray:
        return self.onset + self.duration

    def select(self, mask: np.ndarray) -> Notes:
        return Notes(self.onset[mask], self.duration[mask], self.pitch[mask], self.program[mask], self.track[mask])

    def pitched(self) -> Notes:
        """The notes that have a pitch (drum tracks dropped)."""
        return self.select(self.program != DRUMS)


def load(score: ScoreLike) -> symusic.Score:
    """A Score on the TPQ grid; paths are read with `Tokenizer.load_score` (clear InputError on bad files)."""
    if not isinstance(score, symusic.Score):
        from acemusic.tokenizer import Tokenizer

        score = Tokenizer().load_score(score)
    if score.ticks_per_quarter != TPQ:
        score = score.resample(TPQ, min_dur=1)
    return score


def notes_of(score: ScoreLike) -> Notes:
    """Every note of every track, on the grid. Notes at negative ticks or outside MIDI pitch range are dropped."""
    score = load(score)
    cols: list[list[np.ndarray]] = [[], [], [], [], []]
    for i, track in enumerate(score.tracks):
        if track.note_num() == 0:
            continue
        a = track.notes.numpy()
        n = len(a["time"])
        cols[0].append(a["time"])
        cols[1].append(np.maximum(a["duration"], 1))
        cols[2].append(a["pitch"])
        cols[3].append(np.full(n, DRUMS if track.is_drum else int(track.program)))
        cols[4].append(np.full(n, i))
    if not cols[0]:
        return Notes(*(np.zeros(0, np.int64) for _ in range(5)))
    onset, dur, pitch, prog, trk = (np.concatenate(c).astype(np.int64) for c in cols)
    keep = (onset >= 0) & (pitch >= 0) & (pitch < 128)
    order = np.lexsort((trk[keep], pitch[keep], onset[keep]))
    return Notes(*(x[keep][order] for x in (onset, dur, pitch, prog, trk)))


def melody(score: ScoreLike) -> Notes:
    """The top voice ("skyline"): at each distinct onset, the highest pitched note (drums excluded).

    This is the usual melody extraction for polyphonic MIDI (Uitdenbogerd & Zobel 1998, "skyline"); on a monophonic
    line it is the line itself.
    """
    notes = notes_of(score).pitched()
    if len(notes) == 0:
        return notes
    # Sorted by (onset, pitch): the last note of each onset group is the highest.
    last = np.r_[notes.onset[1:] != notes.onset[:-1], True]
    return notes.select(last)


def bar_lines(score: ScoreLike, end: int | None = None) -> np.ndarray:
    """Start ticks of the bars covering [0, end] (default: the last onset), from the score's time signatures.

    A meter change takes effect at the next bar line (as in the tokenizer); no time signature means 4/4.
    Bar length in ticks = numerator * 4 * TPQ / denominator (rounded, at least 1).
    """
    return bar_spans(score, end)[0]


def bar_spans(score: ScoreLike, end: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(start ticks, lengths in ticks) of the bars of `bar_lines`."""
    score = load(score)
    if end is None:
        notes = notes_of(score)
        end = int(notes.onset.max()) if len(notes) else 0
    ts = score.time_signatures.numpy()
    changes = sorted(zip(ts["time"].tolist(), ts["numerator"].tolist(), ts["denominator"].tolist(), strict=True))
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0, 4, 4) if not changes else (0, changes[0][1], changes[0][2]))
    starts: list[int] = []
    lengths: list[int] = []
    t = 0
    for i, (_, num, den) in enumerate(changes):
        length = max(1, round(num * 4 * TPQ / den)) if num > 0 and den > 0 else 4 * TPQ
        seg_end = changes[i + 1][0] if i + 1 < len(changes) else end + 1
        while t < seg_end and t <= end:
            starts.append(t)
            lengths.append(length)
            t += length
    if not starts:
        return np.zeros(1, np.int64), np.full(1, 4 * TPQ, np.int64)
    return np.asarray(starts, np.int64), np.asarray(lengths, np.int64)


# ---- pitch-class histograms ------------------------------------------------------------------------------------


def pitch_class_histogram(score: ScoreLike, weight: str = "duration", normalize: bool = True) -> np.ndarray:
    """(12,) pitch-class histogram of the pitched notes (drums excluded), index 0 = C.

    weight="count": each note counts 1; weight="duration": each note counts its length in ticks (the duration-
    weighted histogram of Yang & Lerch 2020, "On the evaluation of generative models in music", Neural Computing and
    Applications 32: the PCH feature of mgeval, computed there from a piano roll). Normalized to sum 1 unless
    `normalize=False`; a score without pitched notes gives all zeros.
    """
    notes = notes_of(score).pitched()
    if weight not in ("count", "duration"):
        raise ValueError(f"weight must be 'count' or 'duration', got {weight!r}")
    w = np.ones(len(notes)) if weight == "count" else notes.duration.astype(np.float64)
    h = np.bincount(notes.pitch % 12, weights=w, minlength=12).astype(np.float64)
    return _normalized(h) if normalize else h


def _normalized(h: np.ndarray) -> np.ndarray:
    h = np.asarray(h, np.float64)
    s = h.sum()
    return h / s if s > 0 else np.zeros_like(h)


def histogram_overlap(p: np.ndarray, q: np.ndarray) -> float:
    """Histogram intersection sum_i min(p_i, q_i) of the two normalized histograms: 1 = identical, 0 = disjoint.

    (Swain & Ballard 1991, "Color indexing"; for normalized histograms it equals 1 - total variation distance.)
    An all-zero histogram overlaps nothing (0.0).
    """
    return float(np.minimum(_normalized(p), _normalized(q)).sum())


def kl_divergence(p: np.ndarray, q: np.ndarray, alpha: float = 1e-3) -> float:
    """KL(p || q) in nats of two histograms after additive smoothing.

    Both are normalized, then smoothed as h' = (h + alpha) / (1 + K * alpha) (K bins), so every bin is positive and
    the divergence is finite when q misses a class that p uses (Kullback & Leibler 1951; additive smoothing as in
    Manning & Schuetze 1999, ch. 6). alpha = 1e-3 is small against any real bin mass (a note is >= 1/n of it) but
    caps the penalty of a missing class at about log(1/alpha) ~ 6.9 nats.
    """
    p_s, q_s = (
        (_normalized(h) + alpha) / (1 + len(h) * alpha) for h in (np.asarray(p, np.float64), np.asarray(q, np.float64))
    )
    nz = p_s > 0  # 0 log 0 = 0; with alpha = 0 a class p uses and q lacks gives inf
    with np.errstate(divide="ignore"):
        return float(np.sum(p_s[nz] * np.log(p_s[nz] / q_s[nz])))


# ---- pitch-class transitions -----------------------------------------------------------------------------------


def pitch_class_transitions(score: ScoreLike, normalize: bool = True) -> np.ndarray:
    """(12, 12) pitch-class transition matrix: M[a, b] = transitions from pitch class a to b.

    Counted per track (drums excluded) between consecutive onset groups: every note starting at onset t_k is linked
    to every note of the same track starting at the next onset t_{k+1}, so a melody gives note-to-note transitions and
    chords give all pairs. (Yang & Lerch 2020 use pretty_midi's matrix, which links a note to those starting within
    50 ms of its end; ours is onset based so staccato notes and rests still count.) With `normalize`, each row sums
    to 1 (rows without outgoing transitions stay zero), as mgeval's `normalize=1`.
    """
    notes = notes_of(score).pitched()
    m = np.zeros((12, 12), np.float64)
    for trk in np.unique(notes.track):
        n = notes.select(notes.track == trk)
        onsets, group = np.unique(n.onset, return_inverse=True)
        for k in range(len(onsets) - 1):
            a = n.pitch[group == k] % 12
            b = n.pitch[group == k + 1] % 12
            np.add.at(m, (np.repeat(a, len(b)), np.tile(b, len(a))), 1.0)
    return _row_normalized(m) if normalize else m


def _row_normalized(m: np.ndarray) -> np.ndarray:
    s = m.sum(axis=1, keepdims=True)
    return np.divide(m, s, out=np.zeros_like(m, dtype=np.float64), where=s > 0)


def transition_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance in [0, 1] between two transition matrices (counts or row-normalized).

    Rows are normalized; for each pitch class that has outgoing transitions in either matrix, the row distance is the
    total variation 0.5 * sum_j |A_ij - B_ij| (1 when only one matrix has the row); the result is their mean.
    Two matrices without any transition are at distance 0.
    """
    ra, rb = _row_normalized(np.asarray(a, np.float64)), _row_normalized(np.asarray(b, np.float64))
    has_a, has_b = ra.sum(axis=1) > 0, rb.sum(axis=1) > 0
    rows = has_a | has_b
    if not rows.any():
        return 0.0
    d = 0.5 * np.abs(ra - rb).sum(axis=1)
    d[has_a ^ has_b] = 1.0
    return float(d[rows].mean())


# ---- BLEU on symbolic n-grams ----------------------------------------------------------------------------------


def ngram_counts(seq: Sequence[Hashable], n: int) -> Counter:
    """Counts of the contiguous n-grams (as tuples) of a sequence."""
    seq = list(seq)
    return Counter(tuple(seq[i : i + n]) for i in range(len(seq) - n + 1))


def _max_counts(refs: Sequence[Sequence[Hashable]], n: int) -> Counter:
    out: Counter = Counter()
    for r in refs:
        out |= ngram_counts(r, n)  # elementwise max: a candidate n-gram is clipped by its most generous reference
    return out


def _closest_length(ref_lengths: Sequence[int], c: int) -> int:
    return min(ref_lengths, key=lambda r: (abs(r - c), r))  # ties: the shorter reference (as nltk, sacrebleu)


def corpus_bleu(
    references: Sequence[Sequence[Sequence[Hashable]]],
    candidates: Sequence[Sequence[Hashable]],
    max_n: int = 4,
    weights: Sequence[float] | None = None,
) -> float:
    """Corpus-level BLEU (Papineni et al. 2002, "BLEU: a method for automatic evaluation of machine translation").

    references[i] is the list of reference sequences of candidates[i]. Modified n-gram precision
    p_n = sum_i sum_g min(count_i(g), max_r count_r(g)) / sum_i sum_g count_i(g), summed over the corpus before the
    division; brevity penalty BP = 1 if c > r else exp(1 - r / c), with c the total candidate length and r the sum of
    the reference lengths closest to each candidate's (ties: shorter). BLEU = BP * exp(sum_n w_n log p_n), uniform
    weights 1/max_n by default, and 0 when any p_n is 0 (no smoothing). Argument order as nltk's corpus_bleu.
    """
    if len(references) != len(candidates):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
    weights = [1.0 / max_n] * max_n if weights is None else list(weights)
    return _bleu(
        [[_max_counts(refs, n) for n in range(1, len(weights) + 1)] for refs in references],
        [[len(r) for r in refs] for refs in references],
        candidates,
        weights,
    )


def _bleu(
    max_ref: list[list[Counter]], ref_lengths: list[list[int]], candidates: Sequence[Sequence], weights: list[float]
) -> float:
    num = np.zeros(len(weights))
    den = np.zeros(len(weights))
    c_len = r_len = 0
    for cand, maxes, lengths in zip(candidates, max_ref, ref_lengths, strict=True):
        for k, ref_counts in enumerate(maxes):
            counts = ngram_counts(cand, k + 1)
            num[k] += sum(min(c, ref_counts[g]) for g, c in counts.items())
            den[k] += sum(counts.values())
        c_len += len(cand)
        r_len += _closest_length(lengths, len(cand)) if lengths else 0
    if c_len == 0 or np.any(num == 0):
        return 0.0
    bp = 1.0 if c_len > r_len else math.exp(1 - r_len / c_len)
    return float(bp * math.exp(sum(w * math.log(n / d) for w, n, d in zip(weights, num, den, strict=True))))


def melody_sequence(score: ScoreLike, kind: str = "pitch") -> list[int]:
    """The top-voice melody as MIDI pitches (kind="pitch") or successive intervals in semitones (kind="interval")."""
    p = melody(score).pitch
    if kind == "pitch":
        return p.tolist()
    if kind == "interval":
        return np.diff(p).tolist()
    raise ValueError(f"kind must be 'pitch' or 'interval', got {kind!r}")


def melody_bleu(
    candidates: Sequence[ScoreLike],
    references: Sequence[ScoreLike],
    kind: str = "pitch",
    max_n: int = 4,
) -> float:
    """Corpus BLEU-`max_n` of the candidates' top-voice melodies, each against every reference melody.

    kind="pitch" compares absolute pitch n-grams; kind="interval" compares interval n-grams, which match a
    transposed quotation too. Every candidate shares the same reference set (the corpus), so the clipped counts are
    computed once. BLEU on pitch sequences is used in melody generation (e.g. Yu, Srivastava & Canales 2021,
    "Conditional LSTM-GAN for melody generation from lyrics", ACM TOMM); here it is plain corpus BLEU on integers.
    """
    refs = [melody_sequence(r, kind) for r in references]
    if not refs:
        raise ValueError("melody_bleu needs at least one reference piece")
    weights = [1.0 / max_n] * max_n
    maxes = [_max_counts(refs, n) for n in range(1, max_n + 1)]
    lengths = [len(r) for r in refs]
    cands = [melody_sequence(c, kind) for c in candidates]
    return _bleu([maxes] * len(cands), [lengths] * len(cands), cands, weights)
