"""Sampling session over a fitted `KneserNeyLM`: its next-token distribution after the last `order - 1` ids.

    ids = sample_constrained(NgramSession(lm), prompt, controls, grammar, seed=0)

The n-gram was fit on prefix + body + EOS sequences, so the prompt's conditioning prefix is its context exactly as
in training (`KneserNeyLM.probs` pads the start as a document start).
"""

from __future__ import annotations

import numpy as np

from acemusic.eval.baselines.ngram import KneserNeyLM


class NgramSession:
    def __init__(self, lm: KneserNeyLM) -> None:
        self.lm = lm
        self.hist: list[int] = []

    def start(self, prompt: np.ndarray) -> None:
        self.hist = [int(t) for t in np.asarray(prompt).tolist()][-(self.lm.order - 1):] if self.lm.order > 1 else []

    def probs(self) -> np.ndarray:
        return self.lm.probs(np.asarray(self.hist, np.int64))

    def push(self, token: int) -> None:
        if self.lm.order > 1:
            self.hist = [*self.hist, int(token)][-(self.lm.order - 1):]
