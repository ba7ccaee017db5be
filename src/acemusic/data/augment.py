"""Data augmentation as pure numpy functions on body token arrays (no prefix): transpose, tempo shift, program remap.

Each function returns a new array and keeps the sequence grammar of docs/TOKENS.md valid, so an augmented window
decodes like a real one. Randomness only enters through `random_*` helpers that take a numpy Generator.
Test: `pytest tests/train/test_augment.py`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from acemusic.tokenizer.vocab import DRUMS, T, Vocab

PIANO_RANGE = (21, 108)  # A0..C8: a piece inside it stays inside it
# GM melodic programs offered by `random_program_mapping`: everything below the percussive (112-119) and
# sound-effect (120-127) families, which make no sense as a remapped melody voice.
MELODIC_PROGRAMS = tuple(range(112))


def program_state(body: np.ndarray, vocab: Vocab) -> np.ndarray:
    """Program in force at every token (the value of the last Program token so far), -1 before the first one."""
    body = np.asarray(body)
    is_prog = vocab.type_of[body] == T["Program"]
    last = np.maximum.accumulate(np.where(is_prog, np.arange(len(body)), -1)) if len(body) else np.zeros(0, int)
    state = np.where(last >= 0, vocab.value_of[body[np.maximum(last, 0)]], -1)
    return state.astype(np.int64)


def pitched_mask(body: np.ndarray, vocab: Vocab) -> np.ndarray:
    """True at Pitch tokens of melodic notes (not played while the program state is 128 = drums)."""
    body = np.asarray(body)
    return (vocab.type_of[body] == T["Pitch"]) & (program_state(body, vocab) != DRUMS)


def transpose(body: np.ndarray, semitones: int, vocab: Vocab) -> np.ndarray:
    """Shift every melodic Pitch token by `semitones`; drum keys stay. Raises ValueError if a pitch would leave
    0..127 (ask `transpose_range` first)."""
    out = np.array(body, dtype=np.int64, copy=True)
    if semitones == 0 or len(out) == 0:
        return out
    m = pitched_mask(out, vocab)
    pitches = vocab.value_of[out[m]] + semitones
    if len(pitches) and (pitches.min() < 0 or pitches.max() > 127):
        raise ValueError(f"transposing by {semitones} leaves the MIDI pitch range")
    out[m] = vocab.offset["Pitch"] + pitches
    return out


def transpose_range(vocab: Vocab, body: np.ndarray | None = None, meta: Mapping | None = None) -> tuple[int, int]:
    """Allowed semitone shifts (lo <= 0 <= hi) keeping every melodic pitch within 0..127, and within the piano
    range 21..108 if it was inside it. Uses the pitches of `body` if given (exact for that window), else the
    piece's `meta['pitch_min']`/`meta['pitch_max']`. (0, 0) when there is no melodic note (the key is meaningless)."""
    if body is not None:
        b = np.asarray(body)
        p = vocab.value_of[b[pitched_mask(b, vocab)]]
        if len(p) == 0:
            return 0, 0
        pmin, pmax = int(p.min()), int(p.max())
    elif meta is not None:
        if meta.get("pitch_min") is None or meta.get("pitch_max") is None:
            return 0, 0
        pmin, pmax = int(meta["pitch_min"]), int(meta["pitch_max"])
    else:
        raise ValueError("transpose_range needs a body or a meta dict")
    lo_bound, hi_bound = (PIANO_RANGE if PIANO_RANGE[0] <= pmin and pmax <= PIANO_RANGE[1] else (0, 127))
    return min(0, lo_bound - pmin), max(0, hi_bound - pmax)


def shift_tempo(body: np.ndarray, bins: int, vocab: Vocab) -> np.ndarray:
    """Move every Tempo token by `bins` geometric bins (~6% each), clipped to the bin range."""
    out = np.array(body, dtype=np.int64, copy=True)
    if bins == 0 or len(out) == 0:
        return out
    m = vocab.type_of[out] == T["Tempo"]
    v = np.clip(vocab.value_of[out[m]] + bins, 0, vocab.size("Tempo") - 1)
    out[m] = vocab.offset["Tempo"] + v
    return out


def programs_in(body: np.ndarray, vocab: Vocab) -> list[int]:
    """Sorted distinct programs named by Program tokens."""
    b = np.asarray(body)
    return sorted(int(v) for v in np.unique(vocab.value_of[b[vocab.type_of[b] == T["Program"]]]))


def remap_programs(body: np.ndarray, mapping: Mapping[int, int], vocab: Vocab) -> np.ndarray:
    """Replace Program tokens by `mapping[program]` (programs missing from the mapping stay).

    The grammar sorts the notes of an event by (program, pitch) and the Inst prefix ascends, so the mapping must
    be strictly increasing over the programs present, and drums (128) must stay drums: then every ordering in the
    window is preserved and no re-sorting is needed. `random_program_mapping` builds such mappings."""
    out = np.array(body, dtype=np.int64, copy=True)
    present = programs_in(out, vocab)
    new = [int(mapping.get(p, p)) for p in present]
    if any(b <= a for a, b in itertools.pairwise(new)):
        raise ValueError(f"program mapping must be strictly increasing over {present}, got {new}")
    drums_moved = any((p == DRUMS) != (q == DRUMS) for p, q in zip(present, new, strict=True))
    if drums_moved or any(not 0 <= q <= DRUMS for q in new):
        raise ValueError("program mapping must keep drums (128) as drums and melodic programs in 0..127")
    m = vocab.type_of[out] == T["Program"]
    table = np.arange(DRUMS + 1)
    for p, q in zip(present, new, strict=True):
        table[p] = q
    out[m] = vocab.offset["Program"] + table[vocab.value_of[out[m]]]
    return out


def random_program_mapping(programs: list[int], rng: np.random.Generator,
                           pool: tuple[int, ...] = MELODIC_PROGRAMS) -> dict[int, int]:
    """Map the distinct melodic programs to a random set of distinct programs from `pool`, in ascending order (so
    `remap_programs` keeps the grammar); drums stay drums. Every k-subset of the pool is equally likely."""
    melodic = sorted(p for p in set(programs) if p != DRUMS)
    if len(melodic) > len(pool):
        return {p: p for p in programs}
    chosen = np.sort(rng.choice(np.asarray(pool), size=len(melodic), replace=False))
    mapping = {p: int(q) for p, q in zip(melodic, chosen, strict=True)}
    if DRUMS in programs:
        mapping[DRUMS] = DRUMS
    return mapping


def random_transpose(lo: int, hi: int, max_shift: int, rng: np.random.Generator) -> int:
    """Uniform shift in [max(lo, -max_shift), min(hi, max_shift)]."""
    a, b = max(lo, -max_shift), min(hi, max_shift)
    return int(rng.integers(a, b + 1)) if b >= a else 0
