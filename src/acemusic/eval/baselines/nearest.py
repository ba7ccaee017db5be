"""Copy baseline: the training piece nearest to the prompt's attributes, its first N bars, decoded as they are.

It measures what plain retrieval gets: real music (perfect statistics, structure, idiom) that answers the prompt
only as well as the corpus happens to. Nearness is a lexicographic score over the prompt's asks, most important
first: the piece has at least the asked bars, same instruments, same meter, same mode, same tonic, same style, same
density, then the closest tempo (log ratio). Ties are broken by the seed, so different prompts with the same asks
copy different pieces.

    nn = NearestPiece(train_metas)
    i = nn.pick(asks, bars=8, seed=0)           # index into the training split
    body = tok.slice_bars(train.piece(i), 0, 8)

Tests: `.venv/bin/python -m pytest tests/eval/test_baselines.py -q`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Asks:
    """What a prompt asks, as the metadata spells it (None = not asked)."""

    instruments: tuple[int, ...] = ()
    meter: str | None = None  # "3/4"
    mode: str | None = None
    key: int | None = None
    style: str | None = None
    density: int | None = None
    tempo: float | None = None


class NearestPiece:
    """Index of the training metadata for `pick`."""

    def __init__(self, metas: Sequence[dict]) -> None:
        self.n = len(metas)
        if not self.n:
            raise ValueError("NearestPiece needs at least one training piece")
        self.bars = np.asarray([int(m.get("n_bars") or 0) for m in metas])
        self.inst = [tuple(int(p) for p in (m.get("instruments") or ())) for m in metas]
        self.meter = np.asarray([str(m.get("meter") or "") for m in metas])
        self.mode = np.asarray([str(m.get("mode") or "") for m in metas])
        self.key = np.asarray([-1 if m.get("key") is None else int(m["key"]) for m in metas])
        self.style = np.asarray([str(m.get("style") or "") for m in metas])
        self.density = np.asarray([-1 if m.get("density") is None else int(m["density"]) for m in metas])
        self.log_tempo = np.log(np.asarray([float(m.get("tempo") or 100.0) for m in metas]))

    def scores(self, asks: Asks, bars: int) -> np.ndarray:
        """(n_train, 8) match table, columns in priority order (1 = match; the last is -|log tempo ratio|)."""
        inst = set(asks.instruments)
        cols = [
            self.bars >= bars,
            np.asarray([set(i) == inst for i in self.inst]) if inst else np.ones(self.n, bool),
            self.meter == asks.meter if asks.meter else np.ones(self.n, bool),
            self.mode == asks.mode if asks.mode else np.ones(self.n, bool),
            self.key == asks.key if asks.key is not None else np.ones(self.n, bool),
            self.style == asks.style if asks.style else np.ones(self.n, bool),
            self.density == asks.density if asks.density is not None else np.ones(self.n, bool),
        ]
        tempo = -np.abs(self.log_tempo - math.log(asks.tempo)) if asks.tempo else np.zeros(self.n)
        return np.column_stack([*(c.astype(np.float64) for c in cols), np.round(tempo, 2)])

    def pick(self, asks: Asks, bars: int, seed: int = 0) -> int:
        """Index of the nearest training piece (lexicographic best; seeded choice among the tied best)."""
        s = self.scores(asks, bars)
        order = np.lexsort(s.T[::-1])  # last key of lexsort is primary: reverse so column 0 leads
        best = s[order[-1]]
        tied = np.flatnonzero((s == best).all(axis=1))
        return int(np.random.default_rng(seed).choice(tied))
