"""Score builders shared by the tokenizer tests."""

from __future__ import annotations

import numpy as np
import pytest
from symusic import Note, Score, Tempo, TimeSignature, Track


def random_score(rng: np.random.Generator, tpq: int = 480, bars: int = 40) -> Score:
    """A deliberately awkward score: 4 tracks incl. drums, off-grid notes, meter and tempo changes mid-bar."""
    s = Score(tpq)
    for prog, drum in [(0, False), (33, False), (0, True), (48, False)]:
        t = Track("t", prog, drum)
        for _ in range(150):
            on = int(rng.integers(0, bars * tpq * 4))
            dur, pitch, vel = int(rng.integers(1, 8 * tpq)), int(rng.integers(24, 100)), int(rng.integers(1, 127))
            t.notes.append(Note(on, dur, pitch, vel))
        s.tracks.append(t)
    s.time_signatures.append(TimeSignature(0, 4, 4))
    s.time_signatures.append(TimeSignature(tpq * 4 * 10, 3, 4))
    s.time_signatures.append(TimeSignature(tpq * 4 * 10 + tpq * 3 * 5 + tpq, 12, 4))  # mid-bar change, long measure
    s.tempos.append(Tempo(0, 90.0))
    s.tempos.append(Tempo(tpq * 7 + 13, 140.0))
    s.tempos.append(Tempo(tpq * 50, 60.0))
    return s


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
