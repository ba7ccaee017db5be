"""The shared shape of the given-notes tasks (harmonize, accompany, restyle, track infill).

A `GivenTask` holds the source piece, the notes to keep (a Score whose programs are the ones the token stream
shows, e.g. a melody relabelled as choir for a chorale), and the `NewNotes` rules. It builds one `ForcedState`
request (`build`), or decodes bar by bar with look-ahead reranking (`lookahead > 1`, `run`), and `finish` proves
the result: the decoded ids are replayed through the control (every token checked), the given notes are matched
one to one, and the output is the source's kept tracks, unchanged, plus the new notes as new tracks.

Tests: `.venv/bin/python -m pytest tests/generate/test_forced.py tests/generate/test_accompany.py -q`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import symusic

from acemusic.errors import InputError
from acemusic.eval.voice_leading import DISSONANT, dissonance
from acemusic.generate.engine import Request
from acemusic.generate.forced import (
    ForcedState,
    NewNotes,
    PlayedNote,
    Skeleton,
    decode_bars,
    forced_controls,
    replay,
    token_budget,
)
from acemusic.generate.tasks.base import Task, TaskContext, run_task
from acemusic.tokenizer.vocab import DRUMS


def grid(tok, score: symusic.Score) -> symusic.Score:
    """The score on the tokenizer's 12-ticks-per-quarter grid (what every task keeps exactly)."""
    return tok._grid(score)


def sub_score(score: symusic.Score, tracks: list[int], programs: dict[int, int] | None = None) -> symusic.Score:
    """A copy of `score` with only the listed tracks (optionally relabelled to other programs), same meter/tempo."""
    out = symusic.Score(score.ticks_per_quarter)
    out.time_signatures = score.time_signatures.copy()
    out.tempos = score.tempos.copy()
    for i in tracks:
        t = score.tracks[i].copy()
        if programs and i in programs:
            p = programs[i]
            t.is_drum = p == DRUMS
            t.program = 0 if p == DRUMS else p
        out.tracks.append(t)
    return out


def track_program(track) -> int:
    return DRUMS if track.is_drum else int(track.program)


def program_name(p: int) -> str:
    from acemusic.data.captions import instrument_names

    names = instrument_names([p])
    return names[0] if names else f"program {p}"


@dataclass
class GivenTask(Task):
    """Decode new notes around kept ones. Subclasses set the fields in __post_init__ or a constructor."""

    source: symusic.Score  # the input on the grid (its kept tracks are copied to the output)
    kept_tracks: list[int]  # indices into source.tracks that stay
    given: symusic.Score  # the kept notes with the programs the token stream shows
    new: NewNotes
    cond: object  # tokenizer Conditions for the prefix
    text: str | None = None
    lookahead: int = 1  # candidates per bar (1 = plain left-to-right forced decoding)
    key_strength: float = 1.0
    name: str = "given"
    skeleton: Skeleton | None = field(default=None, init=False)
    last_state: ForcedState | None = field(default=None, init=False)  # the replayed result of `finish`

    # ---- building ---------------------------------------------------------------------------------------------
    def _skeleton(self, ctx: TaskContext) -> Skeleton:
        if self.skeleton is None:
            if self.given.note_num() == 0:
                raise InputError("input", "nothing to keep: the kept tracks have no notes")
            self.skeleton = Skeleton.from_score(ctx.tok, self.given)
        return self.skeleton

    def controls(self, ctx: TaskContext):
        c = self.cond
        return forced_controls(self._skeleton(ctx), key=c.key, mode=c.mode, key_strength=self.key_strength)

    def prompts(self, ctx: TaskContext) -> tuple[np.ndarray, np.ndarray]:
        from acemusic.tokenizer import Conditions

        tok = ctx.tok
        bar = [tok.vocab.bar]
        prompt = np.concatenate([tok.cond_prefix(self.cond), bar]).astype(np.int64)
        uncond = np.concatenate([tok.cond_prefix(Conditions(instruments=self.cond.instruments)), bar])
        return prompt, uncond.astype(np.int64)

    def state(self, ctx: TaskContext, chunk_end: int | None = None) -> ForcedState:
        return ForcedState(ctx.engine.grammar, self.controls(ctx), self._skeleton(ctx), self.new, chunk_end)

    def build(self, ctx: TaskContext) -> Request:
        prompt, uncond = self.prompts(ctx)
        st = self.state(ctx)
        for t in prompt.tolist():
            st.advance(t)
        return Request(prompt, st.c, ctx.embed(self.text), uncond, state=st)

    def max_new_tokens(self) -> int:
        assert self.skeleton is not None, "build() first"
        return token_budget(self.skeleton, self.new)

    def total_bars(self) -> int | None:
        return None if self.skeleton is None else self.skeleton.n_bars

    # ---- decoding -----------------------------------------------------------------------------------------------
    def run(self, ctx: TaskContext, sampling=None, seed: int = 0,
            on_step: Callable | None = None) -> symusic.Score:
        """Decode and finish: plain forced decoding, or bar-by-bar reranking when `lookahead > 1`."""
        if self.lookahead <= 1:
            return run_task(self, ctx, sampling, seed=seed, on_step=on_step)
        prompt, uncond = self.prompts(ctx)
        sk = self._skeleton(ctx)
        per_bar = token_budget(sk, self.new) // max(sk.n_bars, 1) + 64
        gen = decode_bars(ctx.engine, lambda end: self.state(ctx, end), prompt, uncond, ctx.embed(self.text),
                          sampling, seed, self.lookahead, self.bar_score, tokens_per_bar=per_bar, on_step=on_step)
        return self.finish(ctx, prompt, gen)

    def bar_score(self, st: ForcedState, bar: int) -> float:
        """Lower is better: how badly the new notes that start in `bar` clash with the given notes they overlap
        (including given notes after their onset, which the model had not seen), plus how the new notes still
        sounding at the bar line fit the next bar's first given onset."""
        sk = self.skeleton
        lo = int(sk.bar_starts[bar - 1])
        hi = int(sk.bar_starts[bar]) if bar < sk.n_bars else sk.end
        new = np.asarray([(n.onset, n.onset + n.duration, n.pitch) for n in st.played
                          if not n.given and lo <= n.onset < hi and n.program != DRUMS], np.int64).reshape(-1, 3)
        given = self._given_rows()
        cost = dissonance(new, given)
        if bar < sk.n_bars and len(new):
            nxt = [g.pitch for p, ev in sorted(sk.events[bar].items())[:1] for g in ev if g.program != DRUMS]
            last = new[new[:, 0] == new[:, 0].max(), 2]
            if nxt:
                cost += float(DISSONANT[np.abs(last[:, None] - np.asarray(nxt)[None, :]) % 12].mean())
        return cost

    def _given_rows(self) -> np.ndarray:
        if not hasattr(self, "_given_cache"):
            rows = [(n.time, n.time + n.duration, n.pitch) for t in self.given.tracks if not t.is_drum
                    for n in t.notes]
            self._given_cache = np.asarray(rows, np.int64).reshape(-1, 3)
        return self._given_cache

    # ---- finishing ------------------------------------------------------------------------------------------------
    def finish(self, ctx: TaskContext, prompt: np.ndarray, generated: np.ndarray) -> symusic.Score:
        ids = np.concatenate([prompt, generated])
        try:
            st = replay(ctx.engine.grammar, self.controls(ctx), self._skeleton(ctx), self.new, ids)
        except ValueError as e:  # the control is the engine's own mask: this is a bug, not a user error
            raise RuntimeError(f"forced decoding broke its own control: {e}") from e
        want = sum(len(ev) for bar in self.skeleton.events for ev in bar.values())
        got = sum(n.given for n in st.played)
        if got != want or not st.done:
            raise RuntimeError(f"forced decoding stopped early: {got} of {want} given notes emitted")
        self.last_state = st
        out = sub_score(self.source, self.kept_tracks)
        vel = ctx.tok.vocab.velocity_value  # velocity bins back to MIDI velocities
        for tr in self.new_tracks([n._replace(velocity=int(vel(n.velocity))) for n in st.played if not n.given]):
            out.tracks.append(tr)
        return out

    def new_tracks(self, notes: list[PlayedNote]) -> list[symusic.Track]:
        """New notes (velocities in MIDI units) -> tracks (default: one per program)."""
        out = []
        for p in sorted({n.program for n in notes}):
            sel = [n for n in notes if n.program == p]
            out.append(make_track(f"{program_name(p)} (generated)", p, sel))
        return out


def make_track(name: str, program: int, notes: list[PlayedNote]) -> symusic.Track:
    """A symusic Track from played notes whose velocities are MIDI velocities."""
    tr = symusic.Track(name, 0 if program == DRUMS else program, program == DRUMS)
    if notes:
        a = np.asarray([(n.onset, n.duration, n.pitch, n.velocity) for n in notes], np.int64)
        a = a[np.lexsort((a[:, 2], a[:, 0]))]
        tr.notes = symusic.core.NoteTickList.from_numpy(a[:, 0].astype(np.int32), a[:, 1].astype(np.int32),
                                                        a[:, 2].astype(np.int8), a[:, 3].astype(np.int8))
    return tr
