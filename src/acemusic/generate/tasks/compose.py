"""Compose: text prompt (+ explicit attributes) -> a new piece of exactly N bars.

The prompt's hard attributes become conditioning tags (Style, Key, Mode, Density, Inst), forced tokens (bar 1's
TimeSig and Tempo, held for the whole piece when asked) and masks (Programs limited to the asked instruments, each in
its playable range, a soft in-key bias); the whole text goes through the sentence embedder to the cross-attention
memory. Guidance contrasts it with the same prefix stripped of tags and text (Inst kept: it has no `none` token).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acemusic.errors import InputError
from acemusic.generate.constraints import Controls
from acemusic.generate.engine import Request
from acemusic.generate.prompt import PromptSpec, check_bars, pitch_range
from acemusic.generate.tasks.base import Task, TaskContext
from acemusic.tokenizer.vocab import DRUMS

DEFAULT_INSTRUMENTS = (0,)  # acoustic piano when the prompt names no instrument
TOKENS_PER_BAR_GUARD = 256  # length guard: dense piano bars run ~100-200 tokens; the engine closes cleanly near it


@dataclass
class ComposeTask(Task):
    """Generate `bars` bars from a parsed prompt."""

    spec: PromptSpec
    bars: int = 16
    key_strength: float = 1.0  # logit penalty for out-of-key pitches when a key is asked (0 = off)
    max_notes_per_position: int = 8
    name: str = "compose"

    def __post_init__(self) -> None:
        check_bars(self.bars)

    @property
    def instruments(self) -> tuple[int, ...]:
        return tuple(self.spec.instruments) or DEFAULT_INSTRUMENTS

    def controls(self, ctx: TaskContext) -> Controls:
        v, s = ctx.tok.vocab, self.spec
        ts = None
        if s.meter is not None:
            ts = v.time_signature_index(*s.meter)
            if ts is None:
                raise InputError("meter", f"{s.meter[0]}/{s.meter[1]} is not in the vocabulary")
        tempo = None if s.tempo is None else int(v.tempo_bin(s.tempo))
        mode = s.effective_mode
        return Controls(
            # The meter is always held: the model picks bar 1's when none is asked (unlocked, it drifted from 6/8
            # to 4/4 after bar 1 in some pieces); the tempo may still move unless asked.
            n_bars=self.bars, time_sig=ts, tempo=tempo, lock_time_sig=True, lock_tempo=tempo is not None,
            max_notes_per_position=self.max_notes_per_position,
            pitch_ranges={p: pitch_range(p) for p in self.instruments},
            strict_pitch_order=True, key=s.key, mode=mode,
            key_strength=self.key_strength if s.key is not None else 0.0,
        )

    def build(self, ctx: TaskContext) -> Request:
        from acemusic.tokenizer import Conditions

        tok, s = ctx.tok, self.spec
        cond = Conditions(style=s.style, key=s.key, mode=s.effective_mode, density=s.density,
                          instruments=self.instruments)
        bar = [tok.vocab.bar]  # the body starts now: no more Inst tokens than asked
        prompt = np.concatenate([tok.cond_prefix(cond), bar]).astype(np.int64)
        uncond = np.concatenate([tok.cond_prefix(Conditions(instruments=self.instruments)), bar]).astype(np.int64)
        return Request(prompt, self.controls(ctx), ctx.embed(s.text), uncond)

    def finish(self, ctx: TaskContext, prompt: np.ndarray, generated: np.ndarray):
        return ctx.tok.decode(np.concatenate([prompt, generated]))

    def max_new_tokens(self) -> int:
        return self.bars * TOKENS_PER_BAR_GUARD + 64

    def total_bars(self) -> int:
        return self.bars

    def ranks_candidates(self) -> bool:
        return self.spec.key is not None or self.spec.effective_mode is not None

    def candidate_score(self, ctx: TaskContext, score) -> float:
        """Key fit of the pitched notes to the asked key/mode (data.analysis.key_fit: the margin by which the
        Krumhansl-Kessler and Aarden-Essen key finders prefer the asked key over any other)."""
        from acemusic.data.analysis import key_fit, note_arrays

        a = note_arrays(score)
        pitched = a["program"] != DRUMS
        return key_fit(a["pitch"][pitched], a["duration"][pitched], self.spec.key, self.spec.effective_mode)

    def candidate_meets(self, fit: float) -> bool:
        return fit > 0.0  # both key finders already pick the asked key (mode)
