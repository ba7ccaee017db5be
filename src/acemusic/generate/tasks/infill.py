"""Infill: regenerate bar spans of a piece, keeping everything outside them identical, with both sides as context.

The shipped model was trained with bar-level fill-in-the-middle on 10% of its windows (train/batching.py):

    prefix  bars[:a]  FillStart  bars[b:]  Sep  bars[a:b]  FillEnd

every segment self-contained (`Tokenizer.slice_bars`) and keeping its true bar numbers. The infill prompt is that
sequence up to Sep (`fim_sequence(..., with_middle=False)`, same structure convention), over a window of whole
bars around the span that fits the 512-token training length. The middle is decoded by `FillState`: the grammar
of a body whose first bar states its TimeSig/Tempo (forced to the meter and tempo in effect at bar a, then locked;
a meter change of the input inside the span is stated where it falls, so the filled bars fit the kept bar lines)
and whose first note states Program/Velocity, exactly `b - a` bars, ending with FillEnd (then EOS for the engine).

The output is a copy of the input score without the notes whose onset lies in the span, plus the generated notes:
notes outside the span (including ones that start before it and ring into it) are untouched. Several spans are
filled left to right, each seeing the bars filled before it.

Tests: `.venv/bin/python -m pytest tests/generate/test_infill.py -q`; measured by `benchmarks/infill.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acemusic.errors import InputError
from acemusic.generate.constraints import BAR, INST, Controls, GrammarState
from acemusic.generate.engine import Request
from acemusic.generate.prompt import PromptSpec
from acemusic.generate.tasks.base import Task, TaskContext
from acemusic.generate.tasks.io import Piece, add_notes, notes_of_tokens, pitch_ranges, remove_notes
from acemusic.tokenizer import Conditions, Tokenizer

TOKENS_PER_BAR_GUARD = 256
TRAIN_WINDOW = 512  # the shipped model's training length (prefix + both sides + sentinels + middle)
RIGHT_WEIGHT = 0.5  # default InfillTask.right_weight, chosen on the validation split (README "Infill")


class FillState(GrammarState):
    """Grammar state of a fill-in-the-middle segment.

    Bars are counted from 0 at the segment start, so the segment's first bar is a body's bar 1 (it must state
    TimeSig and Tempo, its first note Program and Velocity: the self-contained form the model was trained on) and
    `Controls.n_bars` is the segment's length. `structure` reports the true bar numbers (`offset` bars before the
    segment) as in training. Where the grammar would end the piece (EOS), the segment ends with FillEnd; after
    FillEnd only EOS is allowed, which tells the engine the row is done.
    """

    def __init__(self, grammar, controls: Controls, offset: int, fill_end: int,
                 meters: list[int] | None = None) -> None:
        super().__init__(grammar, controls)
        self.offset, self.fill_end, self.ended = offset, fill_end, False
        self.meters = meters  # TimeSig of every segment bar (the kept bar lines), stated where it changes

    def allowed(self) -> np.ndarray:
        g = self.g
        if self.ended:
            m = np.zeros(g.V, bool)
            m[g.eos] = True
            return m
        m = super().allowed()
        if self.phase == INST:  # the prompt ends with Sep: the segment begins with its first Bar
            m[:] = False
            m[g.bar] = True
        elif self.meters is not None and self.phase == BAR and 1 < self.bar_index <= len(self.meters):
            want = self.meters[self.bar_index - 1]
            if want != self.ts:  # a meter change of the input inside the segment: state it (lock_time_sig
                m[:] = False     # forbids any other)
                m[g.off["TimeSig"] + want] = True
        if m[g.eos]:
            m[g.eos] = False
            m[self.fill_end] = True
        return m

    def advance(self, tok: int) -> None:
        if tok == self.fill_end:
            self.ended = True
            self.is_global = True  # sentinels are global tokens at position 0 (train/batching.py)
            self.pos = -1
            return
        super().advance(tok)

    @property
    def structure(self) -> tuple[int, int, bool]:
        bar, pos, glob = GrammarState.structure.fget(self)
        return bar + self.offset, pos, glob


def fim_window(tok: Tokenizer, body: np.ndarray, a: int, b: int, budget: int) -> tuple[int, int]:
    """Bars [lo, hi) around the span [a, b) whose tokens (outside the span) fit in `budget`: half the budget for
    each side, and what one side leaves unused goes to the other."""
    starts = tok.bar_starts(body)
    n = len(starts)
    ends = np.append(starts[1:], len(body))

    def grow(side: str, room: int) -> tuple[int, int]:  # (bars taken, tokens used)
        k, used = 0, 0
        while True:
            i = a - k - 1 if side == "left" else b + k
            if not 0 <= i < n:
                return k, used
            cost = int(ends[i] - starts[i])
            if used + cost + 4 > room:
                return k, used
            k, used = k + 1, used + cost

    right, used_r = grow("right", budget // 2)
    left, used_l = grow("left", budget - used_r)
    right, _ = grow("right", budget - used_l)
    return a - left, b + right


@dataclass
class InfillTask(Task):
    """Regenerate bars [a, b) (0-based, half-open) of `piece` from both sides."""

    piece: Piece
    a: int
    b: int
    spec: PromptSpec | None = None  # optional text (mood, style) for the embedder; key defaults to the piece's
    key_strength: float = 1.0
    max_notes_per_position: int = 8
    right_bars: int | None = None  # most bars of right-hand context (None = what fits; 0 = left side only)
    # Weight of the prediction given both sides in a log-linear mix with the prediction given the left side only
    # (1 = the plain FIM prompt). The shipped model is overconfident with the right side: alone it scores the
    # true middles no better than the left side alone, the 50/50 mix better than either (validation split,
    # benchmarks/infill.py).
    right_weight: float = RIGHT_WEIGHT
    name: str = "infill"

    def __post_init__(self) -> None:
        p = self.piece
        if not 0 <= self.a < self.b <= p.n_bars:
            raise InputError("--bars", f"span {self.a + 1}-{self.b} is outside the piece ({p.n_bars} bars)")
        self.spec = self.spec or PromptSpec()

    def conditions(self, ctx: TaskContext) -> tuple[Conditions, Conditions]:
        p, s = self.piece, self.spec
        key = s.key if s.key is not None else p.cond.key
        mode = s.effective_mode or (p.cond.mode if s.key is None else None)
        cond = Conditions(style=s.style, key=key, mode=mode, density=p.cond.density, instruments=p.programs)
        return cond, Conditions(instruments=p.programs)

    def controls(self, ctx: TaskContext, cond: Conditions) -> Controls:
        ts, tempo = self.piece.header(ctx.tok, self.a)
        return Controls(
            n_bars=self.b - self.a, time_sig=ts, tempo=tempo, lock_time_sig=True, lock_tempo=True,
            max_notes_per_position=min(self.max_notes_per_position, max(1, self.piece.max_chord)),
            strict_pitch_order=True,
            pitch_ranges=pitch_ranges(self.piece, self.piece.programs), key=cond.key, mode=cond.mode,
            key_strength=self.key_strength if cond.key is not None else 0.0,
        )

    def _request(self, ctx: TaskContext, lo: int, hi: int, text) -> Request:
        """The FIM prompt over bars [lo, hi) (conditional and unconditional prefix) with its structure."""
        from acemusic.train.batching import fim_sequence

        tok, p = ctx.tok, self.piece
        window = tok.slice_bars(p.body, lo, hi)
        ids, bar_idx, pos, glob, _ = fim_sequence(tok, self._prefix, window, self.a - lo, self.b - lo,
                                                  with_middle=False)
        uids = np.concatenate([self._uprefix, ids[len(self._prefix):]])
        return Request(ids, self._controls, text, uids, structure=(bar_idx, pos, glob))

    def build(self, ctx: TaskContext) -> Request:
        tok, p = ctx.tok, self.piece
        cond, uncond = self.conditions(ctx)
        self._prefix, self._uprefix = tok.cond_prefix(cond), tok.cond_prefix(uncond)
        starts = tok.bar_starts(p.body)
        ends = np.append(starts[1:], len(p.body))
        middle_est = int(ends[self.b - 1] - starts[self.a])  # the replaced bars' length: a guess of the new one's
        budget = max(64, TRAIN_WINDOW - len(self._prefix) - 3 - middle_est)
        lo, hi = fim_window(tok, p.body, self.a, self.b, budget)
        if self.right_bars is not None:
            hi = min(hi, self.b + self.right_bars)
        self.window = (lo, hi)
        self._controls = self.controls(ctx, cond)
        req = self._request(ctx, lo, hi, ctx.embed(self.spec.text))
        req.state = self.new_state(ctx)
        return req

    def new_state(self, ctx: TaskContext) -> FillState:
        """A FillState advanced over the conditioning prefix (the middle is decoded from it)."""
        p, lo = self.piece, self.window[0]
        state = FillState(ctx.engine.grammar, self._controls, self.a - lo, ctx.tok.vocab.id("FillEnd"),
                          meters=p.bar_ts[self.a:self.b].tolist())
        for t in self._prefix.tolist():
            state.advance(t)
        return state

    def mixes(self) -> bool:
        """True when the middle is decoded from the both-sides / left-only mix (there is a right side to mix)."""
        return 0.0 <= self.right_weight < 1.0 and self.window[1] > self.b

    def decode_mixture(self, ctx: TaskContext, sampling, seed: int, on_step=None) -> tuple[np.ndarray, np.ndarray]:
        """(prompt, generated) from the log-linear mix of the FIM prompt with and without the right side
        (`mixture.mixture_decode`); guidance contrasts both with their unconditional prefixes."""
        from acemusic.generate.sampling import SamplingConfig
        from acemusic.generate.tasks.mixture import mixture_decode

        sampling = sampling or SamplingConfig()
        both = self.build(ctx)
        left = self._request(ctx, self.window[0], self.b, both.text_emb)
        w = self.right_weight
        rows = [Request(both.prompt, text_emb=both.text_emb, structure=both.structure),
                Request(left.prompt, text_emb=left.text_emb, structure=left.structure)]
        weights = [w, 1.0 - w]
        s = sampling.cfg
        if s != 1.0:  # guidance: s * cond + (1 - s) * uncond, for both rows (text dropped in the uncond rows)
            rows += [Request(both.uncond_prompt, structure=both.structure),
                     Request(left.uncond_prompt, structure=left.structure)]
            weights = [x * s for x in weights] + [x * (1.0 - s) for x in weights]
        off = self.a - self.window[0]
        gen = mixture_decode(ctx, rows, [off] * len(rows), weights, both.state, sampling, seed,
                             self.max_new_tokens(), on_step)
        return both.prompt, gen

    def middle_tokens(self, ctx: TaskContext, generated: np.ndarray) -> np.ndarray:
        fe = np.flatnonzero(generated == ctx.tok.vocab.id("FillEnd"))
        return generated[: fe[0]] if len(fe) else generated[generated != ctx.tok.vocab.eos]

    def new_notes(self, ctx: TaskContext, generated: np.ndarray) -> np.ndarray:
        """The generated notes as (n, 5) rows on the piece's 12-TPQ time line."""
        p = self.piece
        notes = notes_of_tokens(ctx.tok, np.concatenate([self._prefix, self.middle_tokens(ctx, generated)]))
        notes[:, 0] += int(p.bar_ticks[self.a])
        end = int(p.bar_ticks[self.b]) if self.b < p.n_bars else p.end_tick(ctx.tok)
        # The duration fit assumes the current meter holds to the end; with a shorter bar later in the span a
        # note could ring past it: cut it at the span's end (the next kept bar line).
        notes[:, 1] = np.minimum(notes[:, 1], end - notes[:, 0])
        return notes

    def span_ticks(self, ctx: TaskContext) -> tuple[int, int]:
        """The span in the input's ticks: [start of bar a, start of bar b)."""
        p = self.piece
        end12 = p.bar_ticks[self.b] if self.b < p.n_bars else p.end_tick(ctx.tok)
        lo, hi = p.to_input_ticks([p.bar_ticks[self.a], end12])
        return int(lo), int(hi)

    def finish(self, ctx: TaskContext, prompt: np.ndarray, generated: np.ndarray):
        lo, hi = self.span_ticks(ctx)
        return add_notes(self.piece, remove_notes(self.piece.score, lo, hi), self.new_notes(ctx, generated))

    def max_new_tokens(self) -> int:
        return (self.b - self.a) * TOKENS_PER_BAR_GUARD + 64

    def total_bars(self) -> int:
        return self.b - self.a


def spans_text(bars: str | tuple[int, int] | list[tuple[int, int]]) -> str:
    """'5-8' / (5, 8) / [(2, 3), (7, 7)] (1-based, inclusive) -> the text form `io.parse_spans` reads."""
    if isinstance(bars, str):
        return bars
    if isinstance(bars, tuple) and len(bars) == 2 and all(isinstance(x, int) for x in bars):
        bars = [bars]
    try:
        return ",".join(f"{int(lo)}-{int(hi)}" for lo, hi in bars)
    except (TypeError, ValueError):
        raise InputError("--bars", f"expected spans like '5-8' or [(5, 8)], got {bars!r}") from None


def infill_spans(ctx: TaskContext, piece: Piece, spans: list[tuple[int, int]], spec: PromptSpec | None = None,
                 sampling=None, seed: int = 0, on_step=None, key_strength: float = 1.0,
                 right_weight: float | None = None):
    """Fill every span (0-based, half-open, sorted, disjoint) left to right; span i uses seed + i and sees the
    spans filled before it. Returns the final symusic.Score."""
    from acemusic.generate.tasks.base import run_task
    from acemusic.generate.tasks.io import load_piece

    kw = {"spec": spec, "key_strength": key_strength, **({} if right_weight is None else
                                                         {"right_weight": right_weight})}
    tasks = [InfillTask(piece, a, b, **kw) for a, b in spans]  # validate all
    score = piece.score
    for i, (a, b) in enumerate(spans):
        if i:
            piece = load_piece(ctx.tok, score, name=piece.name)
            tasks[i] = InfillTask(piece, a, b, **kw)
        task = tasks[i]
        task.build(ctx)  # the window decides whether there is a right side to mix
        if task.mixes():
            prompt, gen = task.decode_mixture(ctx, sampling, seed + i, on_step)
            score = task.finish(ctx, prompt, gen)
        else:
            score = run_task(task, ctx, sampling, seed=seed + i, on_step=on_step)
    return score
