"""Random baseline: tokens drawn from their training frequencies, under the grammar.

`UnigramLM` counts every token of the training sequences (prefix + body + EOS, as the other models see them).
Sampled through `sample_constrained`, the grammar mask turns the unigram into "the training frequency of each
token among the tokens allowed here": per token type (which positions, pitches, durations are common) without any
context. It is the floor every model must clear; its held-out NLL is scored under the same mask
(`masked_nll`), i.e. the distribution it actually samples from.

Tests: `.venv/bin/python -m pytest tests/eval/test_baselines.py -q`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from acemusic.generate.constraints import Grammar, GrammarState


class UnigramLM:
    """Add-`alpha` smoothed token frequencies of the training sequences."""

    def __init__(self, counts: np.ndarray, alpha: float = 0.5) -> None:
        self.counts = np.asarray(counts, np.float64)
        self.alpha = alpha
        w = self.counts + alpha
        self.p = w / w.sum()

    @classmethod
    def fit(cls, sequences: Iterable[np.ndarray], vocab_size: int, alpha: float = 0.5) -> UnigramLM:
        counts = np.zeros(vocab_size, np.float64)
        for s in sequences:
            counts += np.bincount(np.asarray(s, np.int64), minlength=vocab_size)[:vocab_size]
        return cls(counts, alpha)

    def session(self) -> _Session:
        return _Session(self.p)

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, counts=self.counts, alpha=np.asarray(self.alpha))

    @classmethod
    def load(cls, path: str | Path) -> UnigramLM:
        with np.load(path) as z:
            return cls(z["counts"], float(z["alpha"]))

    def masked_nll(self, grammar: Grammar, seqs: Sequence[np.ndarray], starts: Sequence[int]) -> tuple[float, int]:
        """(summed NLL in nats, tokens scored) of targets seq[start:], each renormalized over the grammar's allowed
        tokens at its position (no controls: the grammar alone, as for a free continuation)."""
        total, n = 0.0, 0
        for seq, start in zip(seqs, starts, strict=True):
            st = GrammarState(grammar)
            for i, t in enumerate(np.asarray(seq, np.int64).tolist()):
                if i >= start:
                    m = st.allowed()
                    total -= float(np.log(self.p[t] / self.p[m].sum()))
                    n += 1
                st.advance(t)
        return total, n


class _Session:
    def __init__(self, p: np.ndarray) -> None:
        self.p = p

    def start(self, prompt: np.ndarray) -> None:
        pass

    def probs(self) -> np.ndarray:
        return self.p

    def push(self, token: int) -> None:
        pass
