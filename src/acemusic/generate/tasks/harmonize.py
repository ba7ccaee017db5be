"""Harmonize: a melody is kept exactly as the top voice; the model writes the voices under it.

- `chorale`: four-part chorale texture as the corpus encodes Bach (all voices Choir Aahs, program 52, in one token
  stream; the melody is relabelled to 52 in the tokens and keeps its own program in the output). At every melody
  onset exactly three new notes are written under the melody pitch, in ascending order bass, tenor, alto, each in
  its voice range (`SATB_RANGES`), none ringing past the next melody onset: the output has Alto, Tenor and Bass
  tracks, so voice leading is well defined.
- `chords`: free accompaniment (piano by default) under the sounding melody pitch, up to 4 notes per onset.

`rule_based_chorale` is the baseline the benchmark compares with: per melody note a diatonic triad containing the
melody pitch, voiced in S/A/T/B ranges with nearest-note voice leading and a penalty for parallels.
Tests: `.venv/bin/python -m pytest tests/generate/test_harmonize.py -q`.
"""

from __future__ import annotations

import itertools

import numpy as np
import symusic

from acemusic.errors import InputError
from acemusic.eval.voice_leading import SATB_RANGES, analyze, voice_arrays
from acemusic.generate.forced import NewNotes, PlayedNote
from acemusic.generate.tasks.given import GivenTask, grid, make_track, sub_score, track_program
from acemusic.tokenizer.vocab import DRUMS

CHOIR = 52
STYLES = ("chorale", "chords")
LOWER_VOICES = ("Alto", "Tenor", "Bass")
MELODY_PROGRAM = 40  # the melody's program in the token stream (chorale): below choir, so it is read first
CONSONANCE = 2.0  # logit penalty for new notes dissonant with the melody at their onset (benchmarks/harmonize.py)


def pick_melody(score: symusic.Score, track: int | None = None) -> tuple[int, str]:
    """(track index, why): `track` if given (validated), the only pitched track, or the highest-sounding one."""
    pitched = [i for i, t in enumerate(score.tracks) if t.note_num() > 0 and not t.is_drum]
    if not pitched:
        raise InputError("melody", "no pitched notes (only drums or empty tracks)")
    if track is not None:
        if track not in pitched:
            raise InputError("--track", f"track {track} has no pitched notes; pitched tracks: {pitched}")
        return track, f"track {track} (as asked)"
    if len(pitched) == 1:
        return pitched[0], f"track {pitched[0]}"
    best = max(pitched, key=lambda i: float(np.mean([n.pitch for n in score.tracks[i].notes])))
    return best, f"track {best} (the highest of {len(pitched)} pitched tracks; pass --track to choose)"


def melody_key(score: symusic.Score, tracks: list[int]) -> tuple[int | None, str | None]:
    """Key of the kept notes (Krumhansl-Schmuckler, as the dataset labels keys)."""
    from acemusic.data.analysis import estimate_key

    p = np.concatenate([[n.pitch for n in score.tracks[i].notes] for i in tracks]).astype(np.int64)
    d = np.concatenate([[n.duration for n in score.tracks[i].notes] for i in tracks]).astype(np.float64)
    k, m, _ = estimate_key(p, d)
    return k, m


def monophonic(track) -> symusic.Track:
    """The top line of a track (highest pitch per onset; a note is cut where the next one starts)."""
    a = voice_arrays(track)
    if not len(a):
        return track.copy()
    order = np.lexsort((-a[:, 2], a[:, 0]))
    a = a[order]
    keep = np.ones(len(a), bool)
    keep[1:] = a[1:, 0] != a[:-1, 0]
    a = a[keep]
    ends = np.minimum(a[:, 1], np.append(a[1:, 0], a[-1, 1]))
    out = track.copy()
    out.notes = symusic.core.NoteTickList.from_numpy(
        a[:, 0].astype(np.int32), np.maximum(ends - a[:, 0], 1).astype(np.int32), a[:, 2].astype(np.int8),
        np.full(len(a), 80, np.int8))
    # keep the original velocities where the note survived unchanged
    vel = {(n.time, n.pitch): n.velocity for n in track.notes}
    for n in out.notes:
        n.velocity = vel.get((n.time, n.pitch), 80)
    return out


class HarmonizeTask(GivenTask):
    """Keep `melody` (one track of `source`) as the top voice; write the voices under it."""

    def __init__(self, tok, source: symusic.Score, melody_track: int, style: str = "chorale",
                 program: int | None = None, key: int | None = None, mode: str | None = None,
                 text: str | None = None, lookahead: int = 1, key_strength: float = 1.0,
                 melody_program: int = MELODY_PROGRAM, consonance: float = CONSONANCE) -> None:
        from acemusic.data.captions import key_phrase
        from acemusic.tokenizer import Conditions

        if style not in STYLES:
            raise InputError("--style", f"must be one of {', '.join(STYLES)}, got {style!r}")
        source = grid(tok, source)
        mel = source.tracks[melody_track]
        if mel.is_drum or mel.note_num() == 0:
            raise InputError("melody", f"track {melody_track} has no pitched notes")
        src = sub_score(source, [melody_track])
        src.tracks[0] = monophonic(src.tracks[0])  # the kept melody is one line (chords in it keep the top)
        if key is None:
            key, mode = melody_key(src, [0])
        self.style = style
        phrase = key_phrase(key, mode)
        in_key = f" in {phrase}" if phrase else ""
        if style == "chorale":
            gen = CHOIR
            given = sub_score(src, [0], {0: melody_program})
            new = NewNotes((CHOIR,), pitch_ranges={CHOIR: (SATB_RANGES[3][0], SATB_RANGES[1][1])},
                           max_per_event=3, min_at_given=3, only_at_given=True, below_given=True,
                           slots=(SATB_RANGES[3], SATB_RANGES[2], SATB_RANGES[1]), hold_until_next_given=True,
                           consonance=consonance)
            style_tag = "bach"
            words = f"A chorale by Johann Sebastian Bach for choir{in_key}, four-part harmony."
        else:
            gen = 0 if program is None else program
            if gen == DRUMS:
                raise InputError("--program", "chords need a pitched instrument, not drums")
            given = sub_score(src, [0])
            new = NewNotes((gen,), pitch_ranges={gen: (36, 84)}, max_per_event=4, below_given=True,
                           consonance=consonance)
            style_tag = None
            words = f"A melody with {_name(gen)} chords{in_key}."
        insts = tuple(sorted({track_program(given.tracks[0]), gen}))
        cond = Conditions(style=style_tag, key=key, mode=mode, instruments=insts)
        super().__init__(source=src, kept_tracks=[0], given=given, new=new, cond=cond, text=text or words,
                         lookahead=lookahead, key_strength=key_strength, name="harmonize")

    def new_tracks(self, notes: list[PlayedNote]) -> list[symusic.Track]:
        if self.style != "chorale":
            return super().new_tracks(notes)
        voices: list[list[PlayedNote]] = [[], [], []]
        by_onset: dict[int, list[PlayedNote]] = {}
        for n in notes:
            by_onset.setdefault(n.onset, []).append(n)
        for group in by_onset.values():
            for v, n in zip((2, 1, 0), sorted(group, key=lambda n: n.pitch), strict=False):  # bass, tenor, alto
                voices[v].append(n)
        return [make_track(name, CHOIR, vs) for name, vs in zip(LOWER_VOICES, voices, strict=True)]

    def bar_score(self, st, bar: int) -> float:
        cost = super().bar_score(st, bar)
        if self.style == "chorale":  # parallels and crossings into and inside this bar
            sk = self.skeleton
            lo = int(sk.bar_starts[max(bar - 2, 0)])
            hi = int(sk.bar_starts[bar]) if bar < sk.n_bars else sk.end
            notes = [n for n in st.played if lo <= n.onset < hi]
            voices = chorale_voices(notes)
            if all(len(v) for v in voices):
                r = analyze(voices)
                cost += 0.5 * (r["parallel_fifths"] + r["parallel_octaves"]) + 0.25 * r["crossings"]
        return cost


def chorale_voices(notes: list[PlayedNote]) -> list[np.ndarray]:
    """S, A, T, B rows (onset, end, pitch) from a chorale decode: given notes are the soprano, the new notes of
    each onset are bass, tenor, alto from the bottom."""
    s = [(n.onset, n.duration, n.pitch) for n in notes if n.given]
    lower: list[list[tuple[int, int, int]]] = [[], [], []]
    by_onset: dict[int, list[PlayedNote]] = {}
    for n in notes:
        if not n.given:
            by_onset.setdefault(n.onset, []).append(n)
    for group in by_onset.values():
        for v, n in zip((2, 1, 0), sorted(group, key=lambda n: n.pitch), strict=False):
            lower[v].append((n.onset, n.duration, n.pitch))
    return [voice_arrays(s)] + [voice_arrays(v) for v in lower]


def _name(p: int) -> str:
    from acemusic.generate.tasks.given import program_name

    return program_name(p)


# ---- rule-based baseline -------------------------------------------------------------------------------------
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)
_PREFERENCE = (0.0, 1.0, 1.5, 0.5, 0.5, 1.0, 2.0)  # I ii iii IV V vi vii: plain functional preferences


def _triads(key: int, mode: str | None) -> list[tuple[int, tuple[int, int, int]]]:
    """(scale degree, (root, third, fifth) pitch classes) of the diatonic triads."""
    scale = _HARMONIC_MINOR if mode == "minor" else _MAJOR
    return [(d, tuple((key + scale[(d + k) % 7]) % 12 for k in (0, 2, 4))) for d in range(7)]


def rule_based_chorale(melody: np.ndarray, key: int, mode: str | None) -> list[np.ndarray]:
    """S, A, T, B rows (onset, end, pitch) for a melody (rows onset, end, pitch; monophonic).

    Per melody note, every diatonic triad containing its pitch class and every voicing of alto, tenor, bass in their
    ranges under the melody (bass on the root or, at a cost, the third); the cheapest by chord preference, missing
    third, movement from the previous chord, parallel fifths/octaves, spacing and a repeated-chord penalty.
    Greedy, left to right."""
    triads = _triads(key, mode)
    prev: tuple[int, int, int, int] | None = None
    prev_deg = -1
    lower: list[list[tuple[int, int, int]]] = [[], [], []]
    ranges = SATB_RANGES
    for on, end, s in melody.tolist():
        best, best_cost = None, np.inf
        for deg, chord in triads:
            if s % 12 not in chord:
                continue
            cands = [[p for p in range(lo, min(hi, s - 1) + 1) if p % 12 in chord] for lo, hi in ranges[1:]]
            for a, t, b in itertools.product(*cands):
                if not b < t < a < s:
                    continue
                pcs = {s % 12, a % 12, t % 12, b % 12}
                cost = _PREFERENCE[deg] + (0.0 if b % 12 == chord[0] else 3.0 if b % 12 == chord[1] else 9.0)
                cost += 0.0 if chord[1] in pcs else 6.0
                cost += 0.0 if s - a <= 12 and a - t <= 12 else 4.0
                cost += 1.5 if deg == prev_deg else 0.0
                if prev is not None:
                    cur = (s, a, t, b)
                    cost += 0.3 * sum(abs(x - y) for x, y in zip(cur[1:], prev[1:], strict=True))
                    for i, j in itertools.combinations(range(4), 2):
                        mi, mj = cur[i] - prev[i], cur[j] - prev[j]
                        same = (prev[i] - prev[j]) % 12 == (cur[i] - cur[j]) % 12 and (cur[i] - cur[j]) % 12 in (0, 7)
                        if mi and mj and np.sign(mi) == np.sign(mj) and same:
                            cost += 10.0
                if cost < best_cost:
                    best, best_cost = (deg, a, t, b), cost
        if best is None:  # no triad fits (chromatic note): hold the previous voicing, or a plain low triad
            deg, a, t, b = (prev_deg, *prev[1:]) if prev is not None else (0, s - 5, s - 12, s - 19)
        else:
            deg, a, t, b = best
        for v, p in zip(lower, (a, t, b), strict=True):
            v.append((on, end - on, p))
        prev, prev_deg = (s, a, t, b), deg
    return [melody.copy()] + [voice_arrays(v) for v in lower]
