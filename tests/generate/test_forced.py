"""Given-notes control: kept notes are reproduced exactly, new notes obey their rules, the mask never dead-ends.

Run: `.venv/bin/python -m pytest tests/generate/test_forced.py -q`.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import symusic

from acemusic.eval.voice_leading import DISSONANT
from acemusic.generate.engine import Engine, Request
from acemusic.generate.forced import (
    ForcedState,
    NewNotes,
    Skeleton,
    decode_bars,
    forced_controls,
    replay,
    token_budget,
)
from acemusic.generate.sampling import SamplingConfig
from acemusic.generate.tasks.given import sub_score
from acemusic.tokenizer import Conditions
from acemusic.tokenizer.vocab import DRUMS

from .conftest import FIXTURES

CHORALE = NewNotes((52,), pitch_ranges={52: (40, 74)}, max_per_event=3, min_at_given=3, only_at_given=True,
                   below_given=True, slots=((40, 60), (48, 67), (55, 74)), hold_until_next_given=True)
RULES = {
    "chorale": CHORALE,
    "chorale_melody_first": CHORALE,  # same rules, melody relabelled to a lower program (emitted before the voices)
    "chords_below": NewNotes((0,), pitch_ranges={0: (36, 84)}, max_per_event=4, below_given=True),
    "band": NewNotes((0, 33, DRUMS), pitch_ranges={33: (28, 60)}, max_per_event=2, max_per_bar=12),
    "same_program": NewNotes((52,), max_per_event=2, max_per_bar=8),  # new notes in the given notes' program
}


@pytest.fixture(scope="module")
def bach(tok) -> symusic.Score:
    return tok._grid(tok.load_score(FIXTURES / "bach_bwv66_6.mid"))


def given_of(bach: symusic.Score, case: str) -> symusic.Score:
    if case == "chorale_melody_first":
        return sub_score(bach, [0], {0: 40})
    if case == "band":
        return sub_score(bach, [0, 3])  # soprano and bass kept, piano/bass/drums added
    return sub_score(bach, [0])


def prompt_for(tok, given: symusic.Score, new: NewNotes) -> np.ndarray:
    progs = {52 if not t.is_drum else DRUMS for t in given.tracks} | {int(t.program) for t in given.tracks}
    insts = tuple(sorted(progs | set(new.programs)))
    return np.append(tok.cond_prefix(Conditions(style="bach", instruments=insts)), tok.vocab.bar)


def check_decoded(tok, grammar, given, sk, new, ids) -> ForcedState:
    """Every invariant the control promises, on a finished sequence."""
    st = replay(grammar, forced_controls(sk), sk, new, ids)  # every token allowed by the control
    assert st.done
    want = Counter(map(tuple, tok.note_table(given).tolist()))
    have = Counter(map(tuple, tok.note_table(tok.decode(ids)).tolist()))
    assert not want - have, "a given note is missing or changed in the decoded tokens"
    played_given = Counter((n.onset, n.pitch, int(tok.vocab.duration_bin(n.duration)), n.program, n.velocity)
                           for n in st.played if n.given)
    assert played_given == want
    new_notes = [n for n in st.played if not n.given]
    assert {n.program for n in new_notes} <= set(new.programs)
    per_event = Counter(n.onset for n in new_notes)
    assert max(per_event.values(), default=0) <= new.max_per_event
    for n in new_notes:
        if n.program != DRUMS and n.program in new.pitch_ranges:
            lo, hi = new.pitch_ranges[n.program]
            assert lo <= n.pitch <= hi or not new.slots
        assert n.onset + n.duration <= sk.end
        if new.below_given and n.program != DRUMS:
            assert n.pitch < sk.ceiling[n.onset], "a new note above the sounding melody"
        if new.only_at_given:
            assert n.onset in set(sk.onsets.tolist())
        if new.hold_until_next_given:
            later = sk.onsets[sk.onsets > n.onset]
            assert not len(later) or n.onset + n.duration <= later[0]
    if new.min_at_given:
        assert all(per_event[o] == new.min_at_given for o in sk.onsets.tolist())
        for o, group in _groups(new_notes).items():
            for (lo, hi), n in zip(new.slots, sorted(group, key=lambda n: n.pitch), strict=True):
                assert lo <= n.pitch <= hi, f"voice out of its range at {o}"
    return st


def _groups(notes):
    out: dict[int, list] = {}
    for n in notes:
        out.setdefault(n.onset, []).append(n)
    return out


def test_skeleton_matches_the_tokenizer(tok, bach):
    given = sub_score(bach, [0, 1])
    sk = Skeleton.from_score(tok, given)
    assert sum(len(v) for ev in sk.events for v in ev.values()) == given.note_num()
    assert len(sk.headers[0]) == 2  # bar 1 states TimeSig and Tempo
    assert sk.n_bars == len(tok.bar_start_ticks(tok.encode_body(given)))
    soprano = {(n.time, n.pitch) for n in bach.tracks[0].notes}
    for t, p in soprano:
        assert sk.ceiling[t] >= p  # the soprano is the top of the kept notes


@pytest.mark.parametrize("case", list(RULES))
def test_random_walks_keep_given_notes_and_never_dead_end(tok, grammar, bach, case):
    """Uniformly random allowed tokens (no model): the mask alone guarantees the invariants."""
    new = RULES[case]
    given = given_of(bach, case)
    sk = Skeleton.from_score(tok, given)
    prompt = prompt_for(tok, given, new)
    rng = np.random.default_rng(0)
    for _ in range(3):
        st = ForcedState(grammar, forced_controls(sk), sk, new)
        ids = prompt.tolist()
        for t in ids:
            st.advance(t)
        for _ in range(token_budget(sk, new)):
            ok = np.flatnonzero(st.allowed())
            assert len(ok), f"dead end after {[tok.vocab.token(t) for t in ids[-6:]]}"
            t = int(rng.choice(ok))
            st.advance(t)
            ids.append(t)
            if st.done:
                break
        check_decoded(tok, grammar, given, sk, new, np.asarray(ids))


@pytest.mark.parametrize("case", ["chorale", "chorale_melody_first", "band"])
def test_model_decoding_keeps_given_notes(tiny_model, tok, grammar, bach, case):
    engine = Engine(tiny_model, tok)
    new = RULES[case]
    given = given_of(bach, case)
    sk = Skeleton.from_score(tok, given)
    prompt = prompt_for(tok, given, new)
    st = ForcedState(engine.grammar, forced_controls(sk), sk, new)
    for t in prompt.tolist():
        st.advance(t)
    out = engine.generate([Request(prompt, st.c, state=st)], SamplingConfig(top_p=0.95), seed=1,
                          max_new_tokens=token_budget(sk, new))[0]
    check_decoded(tok, grammar, given, sk, new, np.concatenate([prompt, out]))


def test_replay_rejects_a_changed_given_note(tok, grammar, bach):
    new = RULES["chorale"]
    given = given_of(bach, "chorale")
    sk = Skeleton.from_score(tok, given)
    prompt = prompt_for(tok, given, new)
    st = ForcedState(grammar, forced_controls(sk), sk, new)
    ids = prompt.tolist()
    for t in ids:
        st.advance(t)
    rng = np.random.default_rng(1)
    while not st.done:
        t = int(rng.choice(np.flatnonzero(st.allowed())))
        st.advance(t)
        ids.append(t)
    ids = np.asarray(ids)
    replay(grammar, forced_controls(sk), sk, new, ids)
    # the soprano is the last note of each onset: move the first one a semitone
    pitch_at = np.flatnonzero(tok.vocab.type_of[ids] == tok.vocab.type_of[tok.vocab.id("Pitch", 60)])
    soprano = pitch_at[3]  # bass, tenor, alto, soprano
    bad = ids.copy()
    bad[soprano] += 1
    with pytest.raises(ValueError, match="not allowed"):
        replay(grammar, forced_controls(sk), sk, new, bad)


def test_consonance_prior_avoids_clashes_with_the_melody(tiny_model, tok, grammar, bach):
    """The prior sees given notes sounding at a new note's onset; with a large penalty clashes remain only where
    the voice rules leave no consonant pitch (e.g. an alto squeezed between tenor and melody)."""
    engine = Engine(tiny_model, tok)
    given = given_of(bach, "chorale_melody_first")
    sk = Skeleton.from_score(tok, given)
    clashes = {}
    for strength in (0.0, 50.0):
        new = NewNotes(**{**CHORALE.__dict__, "consonance": strength})
        prompt = prompt_for(tok, given, new)
        st = ForcedState(engine.grammar, forced_controls(sk), sk, new)
        for t in prompt.tolist():
            st.advance(t)
        out = engine.generate([Request(prompt, st.c, state=st)], SamplingConfig(), seed=0,
                              max_new_tokens=token_budget(sk, new))[0]
        st = check_decoded(tok, grammar, given, sk, new, np.concatenate([prompt, out]))
        new_notes = [n for n in st.played if not n.given]
        assert len(new_notes) == 3 * len(sk.onsets)
        clashes[strength] = sum(bool(DISSONANT[(n.pitch - np.flatnonzero(sk.sounding_pcs(n.onset))) % 12].any())
                                for n in new_notes)
    assert clashes[50.0] <= 0.1 * 3 * len(sk.onsets) and clashes[50.0] * 4 < clashes[0.0]


def test_bar_by_bar_lookahead_keeps_the_best_candidate(tiny_model, tok, grammar, bach):
    engine = Engine(tiny_model, tok)
    new = RULES["chords_below"]
    given = given_of(bach, "chorale")
    sk = Skeleton.from_score(tok, given)
    prompt = prompt_for(tok, given, new)
    seen: dict[int, list[tuple[float, list]]] = {}

    def score(st: ForcedState, bar: int) -> float:  # prefer few new notes in the bar
        lo = int(sk.bar_starts[bar - 1])
        notes = [n for n in st.played if not n.given and n.onset >= lo]
        s = float(len(notes))
        seen.setdefault(bar, []).append((s, notes))
        return s

    gen = decode_bars(engine, lambda end: ForcedState(engine.grammar, forced_controls(sk), sk, new, end), prompt,
                      None, None, SamplingConfig(), seed=0, k=3, score=score)
    st = check_decoded(tok, grammar, given, sk, new, np.concatenate([prompt, gen]))
    assert sorted(seen) == list(range(1, sk.n_bars + 1)) and all(len(v) == 3 for v in seen.values())
    for bar, cands in seen.items():
        lo = int(sk.bar_starts[bar - 1])
        hi = int(sk.bar_starts[bar]) if bar < sk.n_bars else sk.end
        kept = [n for n in st.played if not n.given and lo <= n.onset < hi]
        assert len(kept) == min(s for s, _ in cands)
