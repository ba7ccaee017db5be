"""Continue: an input piece -> the same piece, note for note, followed by N new bars.

The prompt is the piece's conditioning prefix (its instruments and density, its key and mode by Krumhansl-
Schmuckler, or what the user asks) followed by the last bars of the piece that fit in `context_tokens` (the model
was trained on 512-token windows that start on a bar line, `Tokenizer.slice_bars` makes them self-contained). The
decoder then writes exactly `bars` more bars under the grammar with the piece's meter and tempo locked, Programs
limited to the piece's instruments (or the asked ones) in their ranges, and a soft bias towards the key.
The output is a copy of the input score with the new notes added after the last bar line (`io.add_notes`), so the
input is never re-quantised: every input note is in the output unchanged.

A tempo or meter the user asks for (prompt text or flags) is stated in the header of the first new bar.

Tests: `.venv/bin/python -m pytest tests/generate/test_continuation.py -q`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acemusic.errors import InputError
from acemusic.generate.constraints import BAR, TIMESIG, Controls, GrammarState
from acemusic.generate.engine import Request
from acemusic.generate.prompt import PromptSpec, check_bars
from acemusic.generate.tasks.base import Task, TaskContext
from acemusic.generate.tasks.io import Piece, add_notes, context_window, notes_of_tokens, pitch_ranges
from acemusic.tokenizer import Conditions

TOKENS_PER_BAR_GUARD = 256  # as compose: the engine closes the piece cleanly near the guard


class HeaderState(GrammarState):
    """A GrammarState that makes bar `at_bar` (1-based, in the prompt's count) state a given TimeSig and/or Tempo
    in its header: how a continuation changes meter or tempo where the user asked. Later bars keep it (locks)."""

    def __init__(self, grammar, controls: Controls, at_bar: int, ts: int | None, tempo: int | None) -> None:
        super().__init__(grammar, controls)
        self.at_bar, self.force_ts, self.force_tempo = at_bar, ts, tempo

    def allowed(self) -> np.ndarray:
        m = super().allowed()
        if self.bar_index != self.at_bar:
            return m
        g = self.g
        if self.phase == BAR and self.force_ts is not None and self.force_ts != self.ts:
            m[:] = False
            m[g.off["TimeSig"] + self.force_ts] = True
        elif self.phase in (BAR, TIMESIG) and self.force_tempo is not None and self.force_tempo != self.tempo:
            m[:] = False
            m[g.off["Tempo"] + self.force_tempo] = True
        return m


@dataclass
class ContinueTask(Task):
    """Continue `piece` by `bars` bars. `spec` (optional) carries the text prompt and any asked attributes:
    key/mode, instruments, tempo, meter, style; what it leaves out comes from the piece."""

    piece: Piece
    bars: int = 8
    spec: PromptSpec | None = None
    key_strength: float = 1.0  # logit penalty for out-of-key pitches (0 = off)
    context_tokens: int = 384  # most body tokens of the piece shown to the model (its last whole bars)
    max_notes_per_position: int = 8
    name: str = "continue"

    def __post_init__(self) -> None:
        check_bars(self.bars)
        self.spec = self.spec or PromptSpec()

    # ---- what the continuation keeps or changes ------------------------------------------------------------
    @property
    def key(self) -> tuple[int | None, str | None]:
        s = self.spec
        if s.key is not None:
            return s.key, s.effective_mode
        return self.piece.cond.key, s.effective_mode or self.piece.cond.mode

    @property
    def instruments(self) -> tuple[int, ...]:
        return tuple(self.spec.instruments) or self.piece.programs

    @property
    def chord_limit(self) -> int:
        """Notes per onset: the piece's own texture (a fiddle tune stays one line) unless other instruments
        are asked."""
        if self.spec.instruments:
            return self.max_notes_per_position
        return min(self.max_notes_per_position, max(1, self.piece.max_chord))

    def _header_change(self, ctx: TaskContext) -> tuple[int | None, int | None]:
        """(TimeSig index, Tempo bin) to state in the first new bar, None where the piece's holds."""
        v, s = ctx.tok.vocab, self.spec
        ts_now, tempo_now = self.piece.header(ctx.tok, self.piece.n_bars - 1)
        ts = tempo = None
        if s.meter is not None:
            ts = v.time_signature_index(*s.meter)
            if ts is None:
                raise InputError("meter", f"{s.meter[0]}/{s.meter[1]} is not in the vocabulary")
        if s.tempo is not None:
            tempo = int(v.tempo_bin(s.tempo))
        return (None if ts == ts_now else ts), (None if tempo == tempo_now else tempo)

    def build(self, ctx: TaskContext) -> Request:
        tok, p = ctx.tok, self.piece
        k = max(1, context_window(tok, p.body, p.n_bars, p.n_bars, self.context_tokens, "left"))
        self.context_bars = k
        context = tok.slice_bars(p.body, p.n_bars - k, p.n_bars)
        key, mode = self.key
        insts = tuple(sorted(set(p.programs) | set(self.instruments)))
        cond = Conditions(style=self.spec.style, key=key, mode=mode, density=p.cond.density, instruments=insts)
        prompt = np.concatenate([tok.cond_prefix(cond), context]).astype(np.int64)
        uncond = np.concatenate([tok.cond_prefix(Conditions(instruments=insts)), context]).astype(np.int64)
        controls = Controls(
            n_bars=k + self.bars, lock_time_sig=True, lock_tempo=True,
            max_notes_per_position=self.chord_limit, strict_pitch_order=True,
            pitch_ranges=pitch_ranges(p, self.instruments), key=key, mode=mode,
            key_strength=self.key_strength if key is not None else 0.0,
        )
        ts, tempo = self._header_change(ctx)
        state = HeaderState(ctx.engine.grammar, controls, k + 1, ts, tempo)
        for t in prompt.tolist():
            state.advance(t)
        self.header_change = (ts, tempo)
        return Request(prompt, controls, ctx.embed(self.spec.text), uncond, state=state)

    def new_notes(self, ctx: TaskContext, prompt: np.ndarray, generated: np.ndarray) -> np.ndarray:
        """The generated notes as (n, 5) rows on the piece's 12-TPQ time line (after its last bar)."""
        tok = ctx.tok
        ids = np.concatenate([prompt, generated])
        body = ids[np.flatnonzero(ids == tok.vocab.bar)[0]:]
        start = int(tok.bar_start_ticks(body)[self.context_bars])  # first new bar, in the decoded time line
        notes = notes_of_tokens(tok, ids)
        notes = notes[notes[:, 0] >= start].copy()
        notes[:, 0] += self.piece.end_tick(tok) - start
        return notes

    def finish(self, ctx: TaskContext, prompt: np.ndarray, generated: np.ndarray):
        import symusic

        notes = self.new_notes(ctx, prompt, generated)
        out = add_notes(self.piece, self.piece.score, notes)
        ts, tempo = self.header_change
        at = int(self.piece.to_input_ticks([self.piece.end_tick(ctx.tok)])[0])
        v = ctx.tok.vocab
        if ts is not None:
            num, den = v.time_signatures[ts]
            out.time_signatures.append(symusic.TimeSignature(at, num, den))
        if tempo is not None:
            out.tempos.append(symusic.Tempo(at, float(v.tempo_bins[tempo])))
        return out

    def max_new_tokens(self) -> int:
        return self.bars * TOKENS_PER_BAR_GUARD + 64

    def total_bars(self) -> int:
        return self.bars
