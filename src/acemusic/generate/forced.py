"""Given notes: a decoding control that reproduces kept notes exactly while the model adds notes around them.

Harmonize, accompany, restyle and track infill all decode the same way: some notes are *given* (a melody, the kept
tracks) and must appear in the output exactly (onset, pitch, program, duration bin, velocity bin), and the model
may add *new* notes only for the programs being generated. `ForcedState` is a `GrammarState` (so the token grammar
of docs/TOKENS.md still holds) whose mask is narrowed, token by token:

- bar headers (`TimeSig`, `Tempo`) are those of the given piece, forced; no mid-bar tempo changes;
- inside a bar, `Position` may only open up to the next given onset, and the bar cannot close (Bar/EOS) while
  given notes of the bar are due;
- at a given onset the given notes are emitted in grammar order (program, pitch), with their `Program`/`Velocity`
  state tokens forced where the state changes, interleaved with new notes that sort before or after them;
- new notes only for `NewNotes.programs`, within their pitch ranges, optionally below the sounding given pitch
  (harmonize), in per-slot voice ranges (chorale bass, tenor, alto), only at given onsets, at least/at most so many
  per onset, and never ringing past the piece (or past the next given onset).

`Skeleton.from_score` turns the given notes into per-bar headers and events (via the tokenizer, so the given notes
are exactly what the tokenizer would write). `decode_bars` adds look-ahead without retraining: per bar it samples K
candidate bars in one batch and keeps the one a scoring function likes best (the tasks score the fit of the new
notes to the whole bar's given notes, including those after each new onset, and to the next bar's first given
notes). Tests: `.venv/bin/python -m pytest tests/generate/test_forced.py -q`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from acemusic.generate.constraints import (
    BAR,
    DURATION,
    ETEMPO,
    HTEMPO,
    PITCH,
    POSITION,
    PROGRAM,
    TIMESIG,
    VELOCITY,
    Controls,
    Grammar,
    GrammarState,
)
from acemusic.tokenizer.vocab import DRUMS, T

_DISSONANT_IC = np.zeros(12, bool)
_DISSONANT_IC[[1, 2, 6, 10, 11]] = True  # seconds, tritone, sevenths


class Given(NamedTuple):
    """A given note inside an event, in token terms (sorted by (program, pitch) like the tokenizer)."""

    program: int
    velocity: int  # velocity bin
    pitch: int
    duration: int  # duration bin index


class PlayedNote(NamedTuple):
    """A note of the decoded sequence, flagged given or new (ticks at TPQ 12)."""

    onset: int
    pitch: int
    duration: int  # ticks
    program: int
    velocity: int  # velocity bin
    given: bool


@dataclass
class Skeleton:
    """The given notes laid out the way the decoder meets them: per bar, the forced header and the events."""

    headers: list[list[int]]  # per bar (0-based): header token ids after `Bar` (TimeSig / Tempo), forced
    events: list[dict[int, list[Given]]]  # per bar: position -> given notes at that onset, token order
    bar_starts: np.ndarray  # (n_bars,) absolute tick of each bar
    end: int  # tick where the last bar ends
    onsets: np.ndarray  # sorted unique absolute onsets of given notes
    ceiling: np.ndarray  # (end,) highest pitched given note sounding at each tick (forward/back filled; -1: none)
    _dur: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))  # duration bin -> ticks
    _rows: np.ndarray | None = field(repr=False, default=None)

    @property
    def n_bars(self) -> int:
        return len(self.headers)

    def sounding_pcs(self, tick: int) -> np.ndarray:
        """(12,) bool: pitch classes of pitched given notes sounding at `tick` (onset <= tick < end)."""
        if self._rows is None:
            rows = []
            for b, ev in enumerate(self.events):
                for p, notes in ev.items():
                    rows += [(int(self.bar_starts[b]) + p, int(self._dur[g.duration]), g.pitch) for g in notes
                             if g.program != DRUMS]
            self._rows = np.asarray(rows, np.int64).reshape(-1, 3)
        r = self._rows
        on = (r[:, 0] <= tick) & (tick < r[:, 0] + r[:, 1])
        out = np.zeros(12, bool)
        out[r[on, 2] % 12] = True
        return out

    @classmethod
    def from_score(cls, tok, score) -> Skeleton:
        """Skeleton of an on-grid score (the given notes, with the programs the token stream should show)."""
        v = tok.vocab
        body = tok.encode_body(score)
        ty, val = v.type_of[body], v.value_of[body]
        headers: list[list[int]] = []
        events: list[dict[int, list[Given]]] = []
        prog, vel, pos, in_header = 0, 0, 0, False
        for i, (t, x) in enumerate(zip(ty.tolist(), val.tolist(), strict=True)):
            if t == T["Bar"]:
                headers.append([])
                events.append({})
                in_header = True
            elif t in (T["TimeSig"], T["Tempo"]) and in_header:
                headers[-1].append(int(body[i]))
            elif t == T["Position"]:
                in_header = False
                pos = x
                events[-1][pos] = []
            elif t == T["Program"]:
                prog = x
            elif t == T["Velocity"]:
                vel = x
            elif t == T["Pitch"]:
                events[-1][pos].append(Given(prog, vel, x, int(val[i + 1])))
            # mid-bar Tempo tokens are dropped: the decoder keeps bar-level tempo only
        starts = tok.bar_start_ticks(body)
        last_len = int(v.ts_ticks[_last_ts(headers, v)])
        end = int(starts[-1]) + last_len
        on, hi_end = [], []
        for b, ev in enumerate(events):
            for p, notes in ev.items():
                for g in notes:
                    on.append(int(starts[b]) + p)
                    if g.program != DRUMS:
                        hi_end.append((int(starts[b]) + p, int(v.duration_bins[g.duration]), g.pitch))
        ceiling = np.full(end, -1, np.int64)
        for o, d, p in hi_end:
            seg = ceiling[o:min(o + d, end)]
            np.maximum(seg, p, out=seg)
        if (ceiling >= 0).any():  # rests: the last sounded pitch, before the first note the first one
            idx = np.where(ceiling >= 0, np.arange(end), -1)
            np.maximum.accumulate(idx, out=idx)
            first = int(np.flatnonzero(ceiling >= 0)[0])
            ceiling = np.where(idx >= 0, ceiling[np.maximum(idx, 0)], ceiling[first])
        return cls(headers, events, starts.astype(np.int64), end, np.unique(np.asarray(on, np.int64)), ceiling,
                   np.asarray(v.duration_bins, np.int64))


def _last_ts(headers: list[list[int]], v) -> int:
    for h in reversed(headers):
        for t in h:
            if v.type_of[t] == T["TimeSig"]:
                return int(v.value_of[t])
    return int(v.time_signature_index(4, 4))


@dataclass
class NewNotes:
    """What the model may add around the given notes."""

    programs: tuple[int, ...]  # programs that get new notes (may include given programs)
    pitch_ranges: dict[int, tuple[int, int]] = field(default_factory=dict)  # program -> (lo, hi) inclusive
    max_per_event: int = 4  # new notes per onset
    max_per_bar: int = 48  # new notes per bar (bounds the tokens a bar can take, see `token_budget`)
    min_at_given: int = 0  # new notes required at every given onset (chorale: 3 voices under the melody)
    only_at_given: bool = False  # new notes only at given onsets (homophonic)
    below_given: bool = False  # pitched new notes below the highest given pitch sounding then (harmonize)
    slots: tuple[tuple[int, int], ...] = ()  # k-th new note of an onset in this range (chorale: B, T, A)
    hold_until_next_given: bool = False  # a new note ends at or before the next given onset
    consonance: float = 0.0  # logit penalty for a new pitch forming a 2nd/tritone/7th with a given note sounding
    # at its onset: the given notes are known in advance, even those the token order only emits later


class ForcedState(GrammarState):
    """Grammar state that forces a `Skeleton` and restricts new notes by `NewNotes` (see the module docstring).

    `chunk_end`: a bar number; once the model opens the bar after it (its own `Bar` token, so the chunk ends
    where the model would end the bar), only EOS is allowed (bar-by-bar decoding)."""

    forkable = False  # advance pops the given notes off shared lists: no shallow fork (no speculation)

    def __init__(self, grammar: Grammar, controls: Controls, skeleton: Skeleton, new: NewNotes,
                 chunk_end: int | None = None) -> None:
        super().__init__(grammar, controls)
        self.sk, self.new, self.chunk_end = skeleton, new, chunk_end
        self.gen = np.zeros(DRUMS + 1, bool)
        self.gen[list(new.programs)] = True
        self.range_ok = np.ones((DRUMS + 1, 128), bool)
        for p, (lo, hi) in new.pitch_ranges.items():
            self.range_ok[p] = False
            self.range_ok[p, max(lo, 0):min(hi, 127) + 1] = True
        self.pend: list[Given] = []  # given notes still due at the current onset
        self.due: list[int] = []  # given onsets (positions) of the current bar not reached yet
        self.hdr: list[int] = []  # forced header tokens still to emit
        self.at_given = False  # the current event is a given onset
        self.n_new = 0  # new notes in the current event
        self.bar_new = 0  # new notes in the current bar
        self.cur_given = False  # the Pitch just consumed is the due given note
        self.played: list[PlayedNote] = []

    # ---- bookkeeping ----------------------------------------------------------------------------------------
    @property
    def tick(self) -> int:
        return self.bar_start + max(self.pos, 0)

    def advance(self, tok: int) -> None:
        g = self.g
        t = int(g.type_of[tok])
        header = self.phase in (BAR, TIMESIG, HTEMPO)
        super().advance(tok)
        if tok == g.bar:
            b = self.bar_index - 1
            inside = b < self.sk.n_bars
            self.hdr = list(self.sk.headers[b]) if inside else []
            self.due = sorted(self.sk.events[b]) if inside else []
            self.pend, self.at_given, self.n_new, self.bar_new = [], False, 0, 0
        elif t in (T["TimeSig"], T["Tempo"]) and header and self.hdr and self.hdr[0] == tok:
            self.hdr.pop(0)
        elif t == T["Position"]:
            self.n_new = 0
            self.at_given = bool(self.due) and self.due[0] == self.pos
            self.pend = list(self.sk.events[self.bar_index - 1][self.due.pop(0)]) if self.at_given else []
        elif t == T["Pitch"]:
            p = self.pend[0] if self.pend else None
            self.cur_given = p is not None and (self.program, self.velocity, self.event_pitch) == (
                p.program, p.velocity, p.pitch)
        elif t == T["Duration"]:
            if self.cur_given:
                self.pend.pop(0)
            else:
                self.n_new += 1
                self.bar_new += 1
            self.played.append(PlayedNote(self.tick, self.event_pitch, int(g.dur_ticks[g.value_of[tok]]),
                                          int(self.program or 0), int(self.velocity or 0), self.cur_given))
            self.cur_given = False

    def bias(self) -> np.ndarray | None:
        """The grammar's soft bias (in-key) plus the consonance prior against the given notes sounding now."""
        base = super().bias()
        if self.new.consonance <= 0 or self.phase not in (POSITION, ETEMPO, DURATION, PROGRAM, VELOCITY):
            return base
        if self.program == DRUMS:  # drum keys are not pitches
            return base
        pcs = self.sk.sounding_pcs(self.tick)
        if not pcs.any():
            return base
        out = np.zeros(self.g.V, np.float32) if base is None else base.copy()
        # interval class between each candidate pitch and each sounding given pitch class
        ic = (np.arange(128)[:, None] - np.flatnonzero(pcs)[None, :]) % 12
        bad = _DISSONANT_IC[ic].any(1)
        out[self.g.sl("Pitch")] -= self.new.consonance * bad
        return out

    # ---- new-note rules -------------------------------------------------------------------------------------
    def _can_new(self) -> bool:
        n = self.new
        return self.n_new < n.max_per_event and self.bar_new < n.max_per_bar and (
            self.at_given or not n.only_at_given)

    def _blocked(self) -> bool:
        """The last given note of an onset waits until the onset has its required new notes (when new notes sort
        before it; otherwise they follow it and the onset cannot close without them, see `_moving_on`)."""
        return (self.at_given and len(self.pend) == 1 and self.n_new < self.new.min_at_given
                and min(self.new.programs) <= self.pend[0].program)

    def _new_pitches(self, q: int) -> np.ndarray:
        """(128,) pitches a new note of program `q` may take now."""
        n = self.new
        lo, hi = 0, 127
        if self.event_prog == q and self.event_notes > 0:
            lo = self.event_pitch + 1  # strictly ascending: no doubled new note
        due = self.pend[0] if self.pend else None
        if due is not None and due.program == q:
            hi = due.pitch - 1  # sorts before the due given note
        if n.below_given and q != DRUMS and self.sk.ceiling.size:
            need = max(n.min_at_given - self.n_new - 1, 0) if self.at_given else 0
            hi = min(hi, int(self.sk.ceiling[min(self.tick, len(self.sk.ceiling) - 1)]) - 1 - need)
        base = np.zeros(128, bool)
        if lo <= hi:
            base[lo:hi + 1] = True
        ok = base & self.range_ok[q]
        if n.slots and self.n_new < len(n.slots):
            s_lo, s_hi = n.slots[self.n_new]
            slot = ok.copy()
            slot[:max(s_lo, 0)] = False
            slot[s_hi + 1:] = False
            if slot.any():
                return slot
        return ok if ok.any() else base

    def _new_for(self, q: int | None) -> bool:
        """A new note of the current program `q` may start now (no Program token needed)."""
        if q is None or not self.gen[q] or not self._can_new():
            return False
        due = self.pend[0] if self.pend else None
        return (due is None or q <= due.program) and bool(self._new_pitches(q).any())

    # ---- masks ----------------------------------------------------------------------------------------------
    def allowed(self) -> np.ndarray:
        m = super().allowed()
        if self.bar_index == 0 or self.done:
            return m
        g, ph = self.g, self.phase
        if self.chunk_end is not None and self.bar_index > self.chunk_end:
            m[:] = False  # the chunk's bars are closed by the model's own Bar token: stop here
            m[g.eos] = True
            return m
        if ph in (BAR, TIMESIG, HTEMPO):
            if self.hdr:
                m[:] = False
                m[self.hdr[0]] = True
                return m
            m[g.sl("TimeSig")] = False
            m[g.sl("Tempo")] = False
            self._moving_on(m)
        elif ph in (POSITION, ETEMPO, DURATION):
            m[g.sl("Tempo")] = False
            self._note_start(m)
            if ph == DURATION:
                self._moving_on(m)
        elif ph in (PROGRAM, VELOCITY):
            self._after_state(m)
        elif ph == PITCH:
            if self.cur_given_next():
                d = self.pend[0].duration
                m[g.sl("Duration")] = False
                m[g.off["Duration"] + d] = True
            else:
                left = self.sk.end - self.tick
                if self.new.hold_until_next_given:
                    k = int(np.searchsorted(self.sk.onsets, self.tick, side="right"))
                    if k < len(self.sk.onsets):
                        left = min(left, int(self.sk.onsets[k]) - self.tick)
                m[g.sl("Duration")] &= g.dur_ticks <= max(left, 1)
        return m

    def cur_given_next(self) -> bool:
        """In phase PITCH: the pitch just consumed is the due given note (its Duration is forced)."""
        return self.cur_given

    def _note_start(self, m: np.ndarray) -> None:
        g = self.g
        for name in ("Program", "Velocity", "Pitch"):
            m[g.sl(name)] = False
        due = self.pend[0] if self.pend else None
        give = due is not None and not self._blocked()
        cur = self.program
        progs = np.zeros(DRUMS + 1, bool)
        if self._can_new():
            for q in np.flatnonzero(self.gen).tolist():
                if q == cur or (self.event_prog >= 0 and q <= self.event_prog):
                    continue
                if due is not None and q > due.program:
                    continue
                progs[q] = bool(self._new_pitches(q).any())
        if give and due.program != cur:
            progs[due.program] = True
        m[g.sl("Program")] = progs & self.insts
        if cur is None:
            return
        vel = np.zeros(g.n["Velocity"], bool)
        pitches = np.zeros(128, bool)
        if self._new_for(cur):
            vel[:] = True
            if self.velocity is not None:
                vel[self.velocity] = False
                pitches |= self._new_pitches(cur)
        if give and due.program == cur:
            if self.velocity != due.velocity:
                vel[due.velocity] = True
            else:
                pitches[due.pitch] = True
        m[g.sl("Velocity")] = vel
        m[g.sl("Pitch")] = pitches

    def _after_state(self, m: np.ndarray) -> None:
        """After a Program or Velocity token: the note's Velocity (after Program only) and Pitch."""
        g = self.g
        due = self.pend[0] if self.pend else None
        give = due is not None and not self._blocked() and due.program == self.program
        new = self._new_for(self.program)
        pitches = self._new_pitches(self.program) if new else np.zeros(128, bool)
        if self.phase == PROGRAM:
            vel = np.zeros(g.n["Velocity"], bool)
            if new:
                vel[:] = True
            if give and self.velocity != due.velocity:
                vel[due.velocity] = True
            if self.velocity is not None:
                vel[self.velocity] = False
            m[g.sl("Velocity")] = vel
            if self.velocity is None:
                pitches[:] = False  # the grammar wants a Velocity first
        if give and self.velocity == due.velocity:
            pitches = pitches.copy()
            pitches[due.pitch] = True
        m[g.sl("Pitch")] = pitches

    def _moving_on(self, m: np.ndarray) -> None:
        """Position / Bar / EOS after a complete item: only up to the next given onset, never past due notes."""
        g = self.g
        positions = m[g.sl("Position")].copy()
        bar_ok, eos_ok = bool(m[g.bar]), bool(m[g.eos])
        m[g.sl("Position")] = False
        m[g.bar] = m[g.eos] = False
        if self.pend or (self.at_given and self.n_new < self.new.min_at_given):
            return
        nxt = self.due[0] if self.due else None
        keep = np.zeros_like(positions)
        n = self.new
        if not n.only_at_given and self.gen.any() and self.bar_new < n.max_per_bar:
            keep[: (nxt + 1) if nxt is not None else len(keep)] = True
        if nxt is not None:
            keep[nxt] = True
        m[g.sl("Position")] = positions & keep
        if nxt is None:
            m[g.bar], m[g.eos] = bar_ok, eos_ok


def forced_controls(skeleton: Skeleton, key: int | None = None, mode: str | None = None,
                    key_strength: float = 0.0) -> Controls:
    """Grammar controls to pair with a ForcedState: the bar count of the skeleton, the rest handled by it."""
    return Controls(n_bars=skeleton.n_bars, fit_durations=False, strict_pitch_order=False, key=key, mode=mode,
                    key_strength=key_strength if key is not None else 0.0)


def token_budget(skeleton: Skeleton, new: NewNotes) -> int:
    """Most tokens a forced decode can take: every given note with all its state tokens, every bar's cap of new
    notes as its own event, and the headers (the engine's length guard must never cut a forced piece short)."""
    n_given = sum(len(ev) for bar in skeleton.events for ev in bar.values())
    n_events = sum(len(bar) for bar in skeleton.events)
    headers = sum(1 + len(h) for h in skeleton.headers)
    return headers + n_events + 4 * n_given + skeleton.n_bars * 5 * new.max_per_bar + 8


def replay(grammar: Grammar, controls: Controls, skeleton: Skeleton, new: NewNotes,
           ids: np.ndarray) -> ForcedState:
    """A ForcedState advanced over `ids` (prefix + body), every token checked: raises ValueError on a token the
    control does not allow (so a decoded sequence is proven to keep the given notes)."""
    st = ForcedState(grammar, controls, skeleton, new)
    for i, t in enumerate(np.asarray(ids).tolist()):
        if not st.allowed()[t]:
            raise ValueError(f"token {i} ({grammar.vocab.token(t)}) not allowed by the given-notes control")
        st.advance(t)
    return st


def decode_bars(engine, make_state: Callable[[int | None], ForcedState], prompt: np.ndarray,
                uncond: np.ndarray | None, text_emb: np.ndarray | None, sampling, seed: int, k: int,
                score: Callable[[ForcedState, int], float], tokens_per_bar: int = 768,
                on_step: Callable | None = None) -> np.ndarray:
    """Bar-by-bar decoding with look-ahead by reranking: for each bar sample `k` candidates (one batch), keep the
    one with the lowest `score(state_after_candidate, bar)`, append it (closed by a Bar token) and go on.

    `make_state(chunk_end)` returns a fresh ForcedState (not advanced). Returns the generated ids after `prompt`
    (EOS included)."""
    from acemusic.generate.engine import Request

    v = engine.vocab
    n_bars = make_state(None).sk.n_bars
    accepted: list[int] = []
    for b in range(1, n_bars + 1):
        last = b == n_bars
        seq = np.concatenate([prompt, accepted]).astype(np.int64)
        useq = None if uncond is None else np.concatenate([uncond, accepted]).astype(np.int64)
        reqs, states = [], []
        for _ in range(k):
            st = make_state(None if last else b)
            for t in seq.tolist():
                st.advance(t)
            states.append(st)
            reqs.append(Request(seq, st.c, text_emb, useq, state=st))
        sk, new = states[0].sk, states[0].new  # this bar's worst case: its given notes plus the new-note cap
        bar_tokens = 2 + len(sk.headers[b - 1]) + len(sk.events[b - 1]) + 5 * new.max_per_bar + 4 * sum(
            len(ev) for ev in sk.events[b - 1].values())
        outs: list[list[int]] = [[] for _ in reqs]
        for step in engine.stream(reqs, sampling, seed=seed * 100_003 + b,
                                  max_new_tokens=max(tokens_per_bar, bar_tokens + 16)):
            for row, t in enumerate(step.tokens.tolist()):
                if t != v.pad:
                    outs[row].append(t)
            if on_step is not None:
                on_step(step)
        scores = [score(st, b) for st in states]
        best = int(np.argmin(scores))
        cand = outs[best]
        if cand and cand[-1] == v.eos and not last:
            cand = cand[:-1]  # ends with the Bar that opens the next bar
        accepted += cand
    return np.asarray(accepted, np.int64)
