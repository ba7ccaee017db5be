"""Input pieces for the editing tasks (continue, infill, interpolate, vary): load, inspect, splice notes back.

The tasks never re-render the user's notes from tokens: an output is a copy of the input `symusic.Score` (its own
resolution, tracks, tempo map and time signatures) with generated notes added (and, for infill, the notes of the
filled bars removed). That is what makes "the input is kept note for note" hold by construction; tokens are only
the model's view of the piece (12 ticks per quarter, `Tokenizer.encode_body`).

    piece = load_piece(tok, "in.mid")            # or a symusic.Score
    piece.n_bars, piece.bar_ticks, piece.header(a) # bars on the token grid, (TimeSig, Tempo) in effect at bar a
    spans = parse_spans("5-8,10", piece.n_bars)    # [(4, 8), (9, 10)]: 0-based, half-open
    out = add_notes(piece.score, notes12)          # notes12: (n, 5) onset, duration, pitch, velocity, program

Tests: `.venv/bin/python -m pytest tests/generate/test_infill.py tests/generate/test_continuation.py -q`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import symusic

from acemusic.errors import InputError
from acemusic.tokenizer import Conditions, Tokenizer
from acemusic.tokenizer.vocab import DRUMS, TPQ, T


@dataclass
class Piece:
    """An input piece as the tasks see it: the original score plus its token view."""

    name: str
    score: symusic.Score  # as read, original ticks per quarter: outputs copy it
    body: np.ndarray  # body tokens on the 12-TPQ grid (`Bar ...`), no prefix, no EOS
    bar_ticks: np.ndarray  # (n_bars,) start of every bar, 12-TPQ ticks
    bar_ts: np.ndarray  # (n_bars,) TimeSig value index of every bar
    cond: Conditions  # instruments and density from the notes, key and mode by Krumhansl-Schmuckler
    max_chord: int = 8  # most notes starting at one onset (all instruments): new notes keep the texture

    @property
    def n_bars(self) -> int:
        return len(self.bar_ticks)

    @property
    def programs(self) -> tuple[int, ...]:
        return tuple(self.cond.instruments)

    def bar_len(self, tok: Tokenizer, i: int) -> int:
        """Length of bar i (0-based) in 12-TPQ ticks."""
        return int(tok.vocab.ts_ticks[self.bar_ts[min(i, self.n_bars - 1)]])

    def end_tick(self, tok: Tokenizer) -> int:
        """12-TPQ tick where the last bar ends (a continuation starts here)."""
        return int(self.bar_ticks[-1]) + self.bar_len(tok, self.n_bars - 1)

    def header(self, tok: Tokenizer, a: int) -> tuple[int, int]:
        """(TimeSig value index, Tempo bin) in effect at the start of bar a (0-based)."""
        seg = tok.slice_bars(self.body, a, a + 1)  # a self-contained bar states both in its header
        v = tok.vocab
        ts = next(int(v.value_of[t]) for t in seg if v.type_of[t] == T["TimeSig"])
        tempo = next(int(v.value_of[t]) for t in seg[:3] if v.type_of[t] == T["Tempo"])
        return ts, tempo

    def to_input_ticks(self, t12: np.ndarray) -> np.ndarray:
        """12-TPQ ticks -> ticks of the input score's resolution."""
        tpq = self.score.ticks_per_quarter
        return np.round(np.asarray(t12, np.float64) * tpq / TPQ).astype(np.int64)


def load_piece(tok: Tokenizer, src: str | Path | symusic.Score, name: str | None = None) -> Piece:
    """Read a MIDI file (clear errors for missing, empty, corrupt, non-MIDI, note-less files) or take a Score."""
    from acemusic.data.analysis import key_of_notes, note_arrays

    if isinstance(src, symusic.Score):
        score, name = src.copy(), name or "score"
        if score.note_num() == 0:
            raise InputError(name, "score has no notes")
    else:
        score, name = tok.load_score(src), name or str(src)
    grid = score.resample(TPQ, min_dur=1) if score.ticks_per_quarter != TPQ else score
    try:
        body = tok.encode_body(grid)
    except InputError as e:
        raise InputError(name, e.reason) from None
    bar_ticks = tok.bar_start_ticks(body)
    v = tok.vocab
    ty, val = v.type_of[body], v.value_of[body]
    ts_at = np.flatnonzero(ty == T["TimeSig"])
    bar_of_tok = np.cumsum(body == v.bar) - 1
    bar_ts = np.zeros(len(bar_ticks), np.int64)
    for i in ts_at.tolist():  # few meter changes: forward-fill them over the bars
        bar_ts[bar_of_tok[i]:] = val[i]
    cond = tok.conditions_of(grid)
    key, mode, _ = key_of_notes(note_arrays(grid))
    cond = Conditions(style=None, key=key, mode=mode, density=cond.density, instruments=cond.instruments)
    onsets = note_arrays(grid)["time"]
    max_chord = int(np.unique(onsets, return_counts=True)[1].max()) if len(onsets) else 1
    return Piece(name, score, body, bar_ticks, bar_ts, cond, max_chord)


_SPAN = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def parse_spans(text: str, n_bars: int) -> list[tuple[int, int]]:
    """'5-8' or '2-3,7' (1-based, inclusive bar numbers) -> sorted [(a, b)] 0-based half-open bar ranges.

    Errors (InputError naming --bars): malformed, bar 0, reversed (8-5), past the piece's end, overlapping or
    repeated spans. Adjacent spans (1-2,3-4) are fine: they are filled one after the other."""
    if not text or not text.strip():
        raise InputError("--bars", "give bar spans like 5-8 or 2-3,7")
    spans = []
    for part in text.split(","):
        m = _SPAN.match(part)
        if not m:
            raise InputError("--bars", f"{part.strip()!r} is not a bar span (use 5-8, or 7 for one bar)")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if lo < 1:
            raise InputError("--bars", f"bars are numbered from 1, got {part.strip()}")
        if hi < lo:
            raise InputError("--bars", f"span {lo}-{hi} is reversed (write {hi}-{lo})")
        if hi > n_bars:
            raise InputError("--bars", f"span {lo}-{hi} is outside the piece ({n_bars} bars)")
        spans.append((lo - 1, hi))
    spans.sort()
    for (a0, b0), (a1, b1) in pairwise(spans):
        if a1 < b0:
            raise InputError("--bars", f"spans {a0 + 1}-{b0} and {a1 + 1}-{b1} overlap")
    return spans


def note_table(score: symusic.Score) -> np.ndarray:
    """(n, 6) rows (onset, duration, pitch, velocity, program, is_drum) of every note, sorted: for comparisons."""
    rows = []
    for tr in score.tracks:
        if tr.note_num() == 0:
            continue
        a = tr.notes.numpy()
        n = len(a["time"])
        prog = DRUMS if tr.is_drum else int(tr.program)
        rows.append(np.stack([a["time"], a["duration"], a["pitch"], a["velocity"], np.full(n, prog),
                              np.full(n, int(tr.is_drum))], 1).astype(np.int64))
    if not rows:
        return np.zeros((0, 6), np.int64)
    t = np.concatenate(rows)
    return t[np.lexsort(t.T[::-1])]


def notes_of_tokens(tok: Tokenizer, ids: np.ndarray) -> np.ndarray:
    """(n, 5) rows (onset, duration, pitch, velocity, program) of a token sequence, 12-TPQ ticks."""
    sc = tok.decode(ids)
    t = note_table(sc)
    return t[:, :5]


def remove_notes(score: symusic.Score, start: int, end: int) -> symusic.Score:
    """A copy of `score` without the notes whose onset lies in [start, end) (input ticks)."""
    out = score.copy()
    for tr in out.tracks:
        if tr.note_num() == 0:
            continue
        a = tr.notes.numpy()
        keep = (a["time"] < start) | (a["time"] >= end)
        if not keep.all():
            tr.notes = symusic.core.NoteTickList.from_numpy(
                *(a[k][keep] for k in ("time", "duration", "pitch", "velocity")))
    return out


def add_notes(piece: Piece, score: symusic.Score, notes12: np.ndarray) -> symusic.Score:
    """A copy of `score` (the input's resolution) with generated notes (12-TPQ rows onset, duration, pitch,
    velocity, program) added to the track of their program (a new track when the input has none)."""
    out = score.copy()
    notes12 = np.asarray(notes12, np.int64).reshape(-1, 5)
    if len(notes12) == 0:
        return out
    onset = piece.to_input_ticks(notes12[:, 0])
    dur = np.maximum(piece.to_input_ticks(notes12[:, 1]), 1)
    for prog in np.unique(notes12[:, 4]).tolist():
        sel = notes12[:, 4] == prog
        drum = prog == DRUMS
        track = next((t for t in out.tracks if t.is_drum == drum and (drum or t.program == prog)), None)
        if track is None:
            track = symusic.Track("Drums" if drum else f"Program {prog}", 0 if drum else prog, drum)
            out.tracks.append(track)
            track = out.tracks[-1]
        old = track.notes.numpy()
        cols = [np.concatenate([old[k].astype(np.int64), new]) for k, new in
                (("time", onset[sel]), ("duration", dur[sel]), ("pitch", notes12[sel, 2]),
                 ("velocity", notes12[sel, 3]))]
        order = np.argsort(cols[0], kind="stable")
        track.notes = symusic.core.NoteTickList.from_numpy(
            cols[0][order].astype(np.int32), cols[1][order].astype(np.int32), cols[2][order].astype(np.int8),
            cols[3][order].astype(np.int8))
    return out


def context_window(tok: Tokenizer, body: np.ndarray, a: int, b: int, budget: int, side: str) -> int:
    """How many bars of context to take on one side of bar range [a, b) within `budget` tokens.

    side='left': the largest k such that bars [a-k, a) fit; side='right': bars [b, b+k). The model was trained
    on 512-token windows, so a long piece is seen through the bars nearest the edit."""
    starts = tok.bar_starts(body)
    n = len(starts)
    ends = np.append(starts[1:], len(body))
    k = 0
    if side == "left":
        while k < a and ends[a - 1] - starts[a - k - 1] + 4 <= budget:
            k += 1
    else:
        while b + k < n and ends[b + k] - starts[b] + 4 <= budget:
            k += 1
    return k


def pitch_ranges(piece: Piece, allowed: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """Per-program pitch ranges for generated notes: the instrument's playable range widened to what the piece
    itself plays (a choir bass may sing below the GM 'voice' range); programs of the piece that are not in
    `allowed` get an empty range, so they play no new note."""
    from acemusic.generate.prompt import pitch_range

    grid = piece.score
    out: dict[int, tuple[int, int]] = {}
    seen: dict[int, tuple[int, int]] = {}
    for tr in grid.tracks:
        if tr.note_num():
            p = tr.notes.numpy()["pitch"]
            prog = DRUMS if tr.is_drum else int(tr.program)
            lo, hi = seen.get(prog, (127, 0))
            seen[prog] = (min(lo, int(p.min())), max(hi, int(p.max())))
    for prog in sorted(set(piece.programs) | set(allowed)):
        if prog not in allowed:
            out[prog] = (1, 0)  # empty: this program rests
            continue
        lo, hi = pitch_range(prog)
        if prog in seen:
            lo, hi = min(lo, seen[prog][0]), max(hi, seen[prog][1])
        out[prog] = (lo, hi)
    return out


def task_spec(prompt: str | None = None, key: str | None = None, mode: str | None = None,
              tempo: float | str | None = None, meter: str | None = None,
              instruments: str | list[str] | None = None):
    """The PromptSpec of an editing task: an optional text prompt, overridden by explicit attributes."""
    from acemusic.generate.prompt import PromptSpec, check_prompt, parse_prompt

    spec = parse_prompt(check_prompt(prompt)) if prompt is not None else PromptSpec()
    return spec.override(key=key, mode=mode, tempo=tempo, meter=meter, instruments=instruments)
