"""Musical analysis of a symusic.Score in plain numpy: key, polyphony class, instruments, pitch range.

Everything here is a pure function of the notes, so MIDI files and converted music21 works get the same metadata.
Test: `pytest tests/data/test_analysis.py`.
"""

from __future__ import annotations

import numpy as np

from acemusic.tokenizer.vocab import DRUMS

# Krumhansl-Kessler probe-tone profiles (Krumhansl 1990), index 0 = tonic.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


# Aarden-Essen profiles (https://extras.humdrum.org/man/keycor/): music21's default `analyze('key')` weights.
AE_MAJOR = np.array([17.7661, 0.145624, 14.9265, 0.160186, 19.8049, 11.3587, 0.291248, 22.062, 0.145624, 8.15494,
                     0.232998, 4.95122])
AE_MINOR = np.array([18.2648, 0.737619, 14.0499, 16.8599, 0.702494, 14.4362, 0.702494, 18.6161, 4.56621, 1.93186,
                     7.37619, 1.75623])


def _profiles(major: np.ndarray = KK_MAJOR, minor: np.ndarray = KK_MINOR) -> np.ndarray:
    """(24, 12) rows: the major profile rotated to every tonic, then the minor one; z-scored for correlation."""
    rows = [np.roll(major, k) for k in range(12)] + [np.roll(minor, k) for k in range(12)]
    p = np.stack(rows)
    return (p - p.mean(1, keepdims=True)) / p.std(1, keepdims=True)


_PROFILES = _profiles()
PROFILES = {"krumhansl": _PROFILES, "aarden": _profiles(AE_MAJOR, AE_MINOR)}


def pitch_class_histogram(pitches: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Duration-weighted pitch-class histogram (12,)."""
    return np.bincount(np.asarray(pitches, dtype=np.int64) % 12, weights=np.asarray(durations, float), minlength=12)


def estimate_key(pitches: np.ndarray, durations: np.ndarray) -> tuple[int | None, str | None, float]:
    """Krumhansl-Schmuckler key finding: correlate the duration-weighted pitch-class histogram with the 24
    rotated Krumhansl-Kessler profiles. Returns (tonic 0..11, 'major'|'minor', correlation), or (None, None, 0)
    when there are no notes or the histogram is flat (a single repeated pitch class still gets a key)."""
    if len(pitches) == 0:
        return None, None, 0.0
    h = pitch_class_histogram(pitches, durations)
    if h.std() == 0:
        return None, None, 0.0
    hz = (h - h.mean()) / h.std()
    r = _PROFILES @ hz / 12.0  # Pearson correlation with each key
    best = int(r.argmax())
    return best % 12, ("major" if best < 12 else "minor"), float(r[best])


def key_name(tonic: int | None, mode: str | None) -> str | None:
    """'F# minor' style name, or None."""
    if tonic is None or mode is None:
        return None
    return f"{PITCH_NAMES[tonic]} {mode}"


def note_arrays(score) -> dict[str, np.ndarray]:
    """All notes of a symusic Score as flat arrays: time, duration, pitch, velocity, program (128 = drums), track."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("time", "duration", "pitch", "velocity", "program", "track")}
    for i, tr in enumerate(score.tracks):
        if len(tr.notes) == 0:
            continue
        a = tr.notes.numpy()
        n = len(a["time"])
        for k in ("time", "duration", "pitch", "velocity"):
            cols[k].append(a[k].astype(np.int64))
        cols["program"].append(np.full(n, DRUMS if tr.is_drum else int(tr.program), dtype=np.int64))
        cols["track"].append(np.full(n, i, dtype=np.int64))
    return {k: (np.concatenate(v) if v else np.zeros(0, np.int64)) for k, v in cols.items()}


def is_monophonic(times: np.ndarray, durations: np.ndarray, tolerance: int = 1) -> bool:
    """True if no two notes ever sound at once: onsets are distinct and a note may overlap the previous one by at
    most `tolerance` ticks (at TPQ=12 a dotted-32nd figure rounds to a 1-tick overlap that is not a second voice)."""
    if len(times) < 2:
        return True
    order = np.argsort(times, kind="stable")
    t, d = times[order], durations[order]
    ends_so_far = np.maximum.accumulate(t + d)
    return bool(np.all(t[1:] > t[:-1]) and np.all(t[1:] >= ends_so_far[:-1] - tolerance))


def polyphony_class(notes: dict[str, np.ndarray]) -> str:
    """'monophonic' (one track, never two notes at once), 'polyphonic' (one instrument family, possibly several
    voices) or 'multi-instrument' (several instrument families; drums count as their own family).

    Families (program // 8) rather than exact programs: a piano part split into programs 0 and 1 is still one
    instrument for the curriculum.
    """
    tracks = np.unique(notes["track"])
    if len(tracks) <= 1 and is_monophonic(notes["time"], notes["duration"]):
        return "monophonic"
    families = {DRUMS if p == DRUMS else int(p) // 8 for p in np.unique(notes["program"])}
    return "multi-instrument" if len(families) > 1 else "polyphonic"


def pitch_range(notes: dict[str, np.ndarray]) -> tuple[int | None, int | None]:
    """Lowest and highest non-drum pitch."""
    p = notes["pitch"][notes["program"] != DRUMS]
    if len(p) == 0:
        return None, None
    return int(p.min()), int(p.max())


def key_of_notes(notes: dict[str, np.ndarray]) -> tuple[int | None, str | None, float]:
    """Key estimate from the pitched (non-drum) notes."""
    m = notes["program"] != DRUMS
    return estimate_key(notes["pitch"][m], notes["duration"][m])


def key_correlations(pitches: np.ndarray, durations: np.ndarray, profile: str = "krumhansl") -> np.ndarray | None:
    """(24,) Pearson correlations of the duration-weighted pitch-class histogram with every key's profile (rows
    0-11 major on C..B, 12-23 minor), or None without notes / with a flat histogram."""
    if len(pitches) == 0:
        return None
    h = pitch_class_histogram(pitches, durations)
    if h.std() == 0:
        return None
    return PROFILES[profile] @ ((h - h.mean()) / h.std()) / 12.0


def key_fit(pitches: np.ndarray, durations: np.ndarray, tonic: int | None, mode: str | None) -> float:
    """How clearly the notes are in the asked key: the correlation margin of the best matching key over the best
    other key, averaged over the Krumhansl-Kessler and Aarden-Essen profiles. > 0 means both key finders pick a
    key that matches the ask. `tonic` None = any tonic of `mode`; `mode` None = either mode of `tonic`.
    Nothing asked gives 0.0; no notes gives -1.0."""
    if tonic is None and mode is None:
        return 0.0
    keys = np.arange(24)
    want = np.ones(24, bool)
    if tonic is not None:
        want &= keys % 12 == tonic % 12
    if mode is not None:
        want &= (keys >= 12) == (mode == "minor")
    margins = []
    for name in PROFILES:
        r = key_correlations(pitches, durations, name)
        if r is None:
            return -1.0
        margins.append(float(r[want].max() - r[~want].max()))
    return float(np.mean(margins))
