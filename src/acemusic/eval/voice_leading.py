"""Voice leading of four-part (or any n-part) writing: parallel fifths/octaves, voice ranges, crossings, spacing.

Voices are note lists ordered top to bottom (soprano first). The piece is cut into *slices* at every onset of any
voice; a slice holds the pitch each voice sounds then (-1 for a rest). Between consecutive slices:

- parallel fifth / octave: two voices both move, in the same direction, and the interval between them is a perfect
  fifth (interval class 7) / an octave or unison (class 0) in both slices (compound intervals included);
- crossing: in a slice, a voice sounds below the voice under it;
- spacing: adjacent upper voices (S-A, A-T) more than an octave apart;
- range: a note outside its voice's range (`SATB_RANGES`, the usual textbook ranges).

Rates are per voice-pair transition (parallels), per slice and adjacent pair (crossings, spacing) and per note
(ranges), so pieces of any length compare. Also `dissonance`: the duration-weighted share of overlaps between two
note sets that form a second, tritone or seventh (the look-ahead score of the harmonize/accompany tasks).

Tests: `.venv/bin/python -m pytest tests/eval/test_voice_leading.py -q`.
"""

from __future__ import annotations

import numpy as np

SATB_RANGES = ((60, 79), (55, 74), (48, 67), (40, 60))  # soprano C4-G5, alto G3-D5, tenor C3-G4, bass E2-C4
VOICE_NAMES = ("soprano", "alto", "tenor", "bass")
DISSONANT = np.zeros(12, bool)
DISSONANT[[1, 2, 6, 10, 11]] = True  # seconds, tritone, sevenths (interval classes mod 12)


def voice_arrays(notes) -> np.ndarray:
    """(n, 3) int64 rows (onset, end, pitch) from symusic notes, a symusic Track, or (onset, duration, pitch)
    tuples; sorted by onset."""
    if hasattr(notes, "notes"):
        notes = notes.notes
    if hasattr(notes, "numpy"):
        a = notes.numpy()
        rows = np.stack([a["time"], a["time"] + a["duration"], a["pitch"]], axis=1).astype(np.int64)
    else:
        rows = np.asarray([(o, o + d, p) for o, d, p in notes], np.int64).reshape(-1, 3)
    return rows[np.argsort(rows[:, 0], kind="stable")]


def slices(voices: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(times, P): every onset of any voice and the (n_slices, n_voices) pitch each voice sounds then (-1: rest).
    Where a voice has two notes at once (a chord in one part) its highest sounds."""
    times = np.unique(np.concatenate([v[:, 0] for v in voices if len(v)] or [np.zeros(0, np.int64)]))
    P = np.full((len(times), len(voices)), -1, np.int64)
    for j, v in enumerate(voices):
        for on, end, p in v.tolist():
            a, b = np.searchsorted(times, on), np.searchsorted(times, end)
            P[a:b, j] = np.maximum(P[a:b, j], p)
    return times, P


def parallels(P: np.ndarray) -> dict[str, int]:
    """Counts over consecutive slices and every voice pair: parallel fifths, parallel octaves (incl. unisons),
    and the number of pair transitions where both voices sound in both slices (the denominator)."""
    if len(P) < 2:
        return {"parallel_fifths": 0, "parallel_octaves": 0, "pair_transitions": 0}
    a, b = P[:-1], P[1:]
    n = P.shape[1]
    fifths = octaves = transitions = 0
    for i in range(n):
        for j in range(i + 1, n):
            ok = (a[:, i] >= 0) & (a[:, j] >= 0) & (b[:, i] >= 0) & (b[:, j] >= 0)
            mi, mj = b[:, i] - a[:, i], b[:, j] - a[:, j]
            moving = ok & (mi != 0) & (mj != 0) & (np.sign(mi) == np.sign(mj))
            ic_a, ic_b = (a[:, i] - a[:, j]) % 12, (b[:, i] - b[:, j]) % 12
            fifths += int((moving & (ic_a == 7) & (ic_b == 7)).sum())
            octaves += int((moving & (ic_a == 0) & (ic_b == 0)).sum())
            transitions += int(ok.sum())
    return {"parallel_fifths": fifths, "parallel_octaves": octaves, "pair_transitions": transitions}


def crossings_and_spacing(P: np.ndarray) -> dict[str, int]:
    """Crossings (a voice below the next lower voice) over adjacent pairs, and spacing faults (more than an
    octave between adjacent upper voices: every adjacent pair but the lowest), with their denominators."""
    n = P.shape[1]
    cross = cross_n = space = space_n = 0
    for i in range(n - 1):
        ok = (P[:, i] >= 0) & (P[:, i + 1] >= 0)
        cross += int((ok & (P[:, i] < P[:, i + 1])).sum())
        cross_n += int(ok.sum())
        if i < n - 2:
            space += int((ok & (P[:, i] - P[:, i + 1] > 12)).sum())
            space_n += int(ok.sum())
    return {"crossings": cross, "adjacent_pairs": cross_n, "spacing_faults": space, "upper_pairs": space_n}


def range_violations(voices: list[np.ndarray], ranges=SATB_RANGES) -> dict[str, int]:
    """Notes outside their voice's range, and the number of notes."""
    bad = total = 0
    for v, (lo, hi) in zip(voices, ranges, strict=False):
        bad += int(((v[:, 2] < lo) | (v[:, 2] > hi)).sum())
        total += len(v)
    return {"range_violations": bad, "notes": total}


def analyze(voices: list, ranges=SATB_RANGES) -> dict[str, float]:
    """Counts and rates for voices ordered top to bottom (anything `voice_arrays` accepts)."""
    vs = [voice_arrays(v) for v in voices]
    _, P = slices(vs)
    out: dict[str, float] = {"voices": len(vs), "slices": len(P)}
    out.update(parallels(P))
    out.update(crossings_and_spacing(P))
    out.update(range_violations(vs, ranges))
    out["parallel_fifths_rate"] = out["parallel_fifths"] / max(out["pair_transitions"], 1)
    out["parallel_octaves_rate"] = out["parallel_octaves"] / max(out["pair_transitions"], 1)
    out["crossing_rate"] = out["crossings"] / max(out["adjacent_pairs"], 1)
    out["spacing_rate"] = out["spacing_faults"] / max(out["upper_pairs"], 1)
    out["range_violation_rate"] = out["range_violations"] / max(out["notes"], 1)
    return out


def satb_voices(score) -> list[np.ndarray]:
    """The four voices of a four-track score, ordered top to bottom by mean pitch (Bach chorales, harmonize's
    chorale output)."""
    tracks = [t for t in score.tracks if t.note_num() > 0 and not t.is_drum]
    vs = [voice_arrays(t) for t in tracks]
    return sorted(vs, key=lambda v: -float(v[:, 2].mean()))


def dissonance(new: np.ndarray, given: np.ndarray) -> float:
    """Duration-weighted share of (new, given) overlaps whose interval class is a second, tritone or seventh.
    `new`, `given`: (n, 3) rows (onset, end, pitch). 0 when nothing overlaps."""
    if not len(new) or not len(given):
        return 0.0
    lo = np.maximum(new[:, None, 0], given[None, :, 0])
    hi = np.minimum(new[:, None, 1], given[None, :, 1])
    ov = np.clip(hi - lo, 0, None).astype(np.float64)
    total = ov.sum()
    if total <= 0:
        return 0.0
    ic = np.abs(new[:, None, 2] - given[None, :, 2]) % 12
    return float((ov * DISSONANT[ic]).sum() / total)
