"""Grammar-constrained sampling for the baselines: the same grammar, controls and decoder as the model.

A baseline only has to say how likely each next token is (`Session.probs`); `sample_constrained` masks that with
`GrammarState.allowed()` (bar budget, forced meter and tempo, instruments and their pitch ranges, chord caps),
applies the same soft key bias the engine adds to the model's logits, and samples with a seeded numpy generator.
The ids then go through the same `Tokenizer.decode` as the model's, so every baseline writes real MIDI with exactly
the asked bars, instruments, meter and tempo: the comparison is about the notes, not about the format.

    ids = sample_constrained(UnigramLM(...).session(), prompt, controls, Grammar(vocab), seed=0)

The length guard mirrors `Engine.stream`: close to `max_new_tokens` the state switches to `closing` (finish the
bar budget with the fewest tokens), so a length-limited piece still ends on a complete bar.
Tests: `.venv/bin/python -m pytest tests/eval/test_baselines.py -q`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from acemusic.generate.constraints import Controls, Grammar, GrammarState


class Session(Protocol):
    """Next-token distribution of one sequence being generated."""

    def start(self, prompt: np.ndarray) -> None:
        """Read the prompt (prefix and any given body tokens)."""

    def probs(self) -> np.ndarray:
        """(V,) non-negative weights of the next token (need not sum to 1)."""

    def push(self, token: int) -> None:
        """Append a sampled token."""


def sample_constrained(
    session: Session,
    prompt: np.ndarray,
    controls: Controls,
    grammar: Grammar,
    seed: int = 0,
    max_new_tokens: int = 4096,
    state: GrammarState | None = None,
) -> np.ndarray:
    """Generated ids after `prompt` (EOS included when reached) under the grammar and `controls`."""
    rng = np.random.default_rng(seed)
    prompt = np.asarray(prompt, np.int64)
    if state is None:
        state = GrammarState(grammar, controls)
        for t in prompt.tolist():
            state.advance(t)
    session.start(prompt)
    out: list[int] = []
    eos = grammar.eos
    for step in range(max_new_tokens):
        n_bars = state.c.n_bars
        if not state.closing and max_new_tokens - step <= (max(n_bars - state.bar_index, 0) if n_bars else 0) + 8:
            state.closing = True
        mask = state.allowed()
        p = np.where(mask, np.asarray(session.probs(), np.float64), 0.0)
        bias = state.bias()
        if bias is not None:  # the engine adds it to logits: multiply the probabilities by exp(bias)
            p = p * np.exp(bias.astype(np.float64))
        total = p.sum()
        if not np.isfinite(total) or total <= 0:  # the baseline gives no allowed token any mass: uniform
            p, total = mask.astype(np.float64), float(mask.sum())
        if total <= 0:
            raise RuntimeError(f"no token allowed after phase {state.phase} (controls contradict the grammar)")
        t = int(rng.choice(len(p), p=p / total))
        state.advance(t)
        session.push(t)
        out.append(t)
        if t == eos:
            break
    return np.asarray(out, np.int64)
