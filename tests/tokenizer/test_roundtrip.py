"""Round trip MIDI -> tokens -> MIDI keeps every note on the grid. Run: pytest tests/tokenizer -q"""

from __future__ import annotations

import numpy as np
import pytest
from symusic import Note, Score, Tempo, TimeSignature, Track

from acemusic.tokenizer import Conditions, Tokenizer
from acemusic.tokenizer.vocab import T
from tests.tokenizer.conftest import random_score

tok = Tokenizer()


def assert_roundtrip(score: Score) -> np.ndarray:
    ids = tok.encode(score)
    back = tok.decode(ids)
    a, b = tok.note_table(score), tok.note_table(back)
    assert a.shape == b.shape
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(tok.encode(back), ids)  # decoding is canonical: re-encoding is identical
    return ids


def test_random_multitrack_scores_roundtrip(rng):
    for _ in range(10):
        assert_roundtrip(random_score(rng))


def test_simple_melody_tokens():
    s = Score(12)
    t = Track("p", 0, False)
    for i, p in enumerate([60, 62, 64]):
        t.notes.append(Note(i * 12, 12, p, 80))
    s.tracks.append(t)
    s.tempos.append(Tempo(0, 120.0))
    s.time_signatures.append(TimeSignature(0, 3, 4))
    body = tok.encode_body(s)
    words = [tok.vocab.token(i) for i in body]
    assert words == [
        "Bar", "TimeSig_3/4", f"Tempo_{int(tok.vocab.tempo_bin(120.0))}",
        "Position_0", "Program_0", "Velocity_10", "Pitch_60", "Duration_11",
        "Position_12", "Pitch_62", "Duration_11",
        "Position_24", "Pitch_64", "Duration_11",
    ]


def test_drums_keep_program_128_and_keys(rng):
    s = Score(12)
    d = Track("drums", 0, True)
    d.notes.append(Note(0, 3, 36, 100))
    d.notes.append(Note(6, 3, 42, 100))
    s.tracks.append(d)
    back = tok.decode(tok.encode(s))
    assert back.tracks[0].is_drum and [n.pitch for n in back.tracks[0].notes] == [36, 42]


def test_chords_and_velocity_state():
    s = Score(12)
    t = Track("p", 0, False)
    for p, v in [(60, 40), (64, 40), (67, 100)]:
        t.notes.append(Note(0, 24, p, v))
    s.tracks.append(t)
    words = [tok.vocab.token(i) for i in tok.encode_body(s)]
    # one Position for the chord; Velocity only where it changes
    assert words.count("Position_0") == 1
    assert [w for w in words if w.startswith("Velocity")] == ["Velocity_5", "Velocity_12"]


def test_time_signature_split_and_tempo_changes():
    s = Score(12)
    t = Track("p", 0, False)
    for i in range(40):
        t.notes.append(Note(i * 6, 6, 60 + i % 12, 80))
    s.tracks.append(t)
    s.time_signatures.append(TimeSignature(0, 12, 4))  # 144 ticks: split into 6/4 bars
    s.tempos.append(Tempo(0, 60.0))
    s.tempos.append(Tempo(30, 150.0))  # mid-bar: stated before the note at tick 30
    ids = assert_roundtrip(s)
    words = [tok.vocab.token(i) for i in ids]
    assert "TimeSig_6/4" in words
    back = tok.decode(ids)
    assert [tp.time for tp in back.tempos] == [0, 30]


def test_grid_quantisation_of_off_grid_input():
    s = Score(480)
    t = Track("p", 0, False)
    t.notes.append(Note(121, 239, 60, 80))  # ~ a sixteenth late, an eighth long
    s.tracks.append(t)
    back = tok.decode(tok.encode(s))
    n = back.tracks[0].notes[0]
    assert (n.time, n.duration) == (3, 6)


def test_empty_score_is_rejected():
    with pytest.raises(Exception, match="no notes"):
        tok.encode(Score(480))


def test_prefix_slots_are_fixed():
    a = tok.cond_prefix(Conditions(style="bach", key=2, mode="minor", density=1, instruments=(0, 48)))
    b = tok.cond_prefix(Conditions(instruments=(48, 0)))
    assert len(a) == len(b) == 7
    assert [tok.vocab.token(i) for i in a] == [
        "BOS", "Style_bach", "Key_2", "Mode_minor", "Density_1", "Inst_0", "Inst_48"
    ]
    assert [tok.vocab.token(i) for i in b[1:5]] == ["Style_none", "Key_none", "Mode_none", "Density_none"]


def test_structure_arrays():
    s = Score(12)
    t = Track("p", 0, False)
    t.notes.append(Note(0, 12, 60, 80))
    t.notes.append(Note(54, 12, 62, 80))  # bar 2, position 6
    s.tracks.append(t)
    ids = tok.encode(s)
    bar, pos, glob = tok.structure(ids)
    prefix_len = int(np.flatnonzero(ids == tok.vocab.bar)[0])
    assert (bar[:prefix_len] == 0).all() and glob[:prefix_len].all()
    i62 = int(np.flatnonzero(ids == tok.vocab.id("Pitch", 62))[0])
    assert bar[i62] == 2 and pos[i62] == 6 and not glob[i62]
    assert glob[ids == tok.vocab.bar].all()


def test_slice_bars_is_self_contained(rng):
    s = random_score(rng)
    body = tok.encode_body(s)
    starts = tok.bar_starts(body)
    ticks = tok.bar_start_ticks(body)
    full = tok.note_table(tok.decode(body))
    for _ in range(20):
        a = int(rng.integers(0, len(starts) - 1))
        b = int(rng.integers(a + 1, len(starts) + 1))
        part = tok.slice_bars(body, a, b)
        assert tok.vocab.type_of[part[1]] == T["TimeSig"] and tok.vocab.type_of[part[2]] == T["Tempo"]
        got = tok.note_table(tok.decode(part))
        end = ticks[b] if b < len(ticks) else np.inf
        want = full[(full[:, 0] >= ticks[a]) & (full[:, 0] < end)].copy()
        want[:, 0] -= ticks[a]
        np.testing.assert_array_equal(got, want)


def test_slice_bars_rejects_bad_ranges(rng):
    body = tok.encode_body(random_score(rng, bars=4))
    n = len(tok.bar_starts(body))
    for a, b in [(3, 2), (0, n + 1), (-1, 2), (2, 2)]:
        with pytest.raises(Exception, match="outside"):
            tok.slice_bars(body, a, b)


def test_decode_is_tolerant_of_garbage(rng):
    ids = rng.integers(0, len(tok.vocab), size=2000)
    ids[0] = tok.vocab.bar
    score = tok.decode(ids)  # must not raise
    for track in score.tracks:
        for n in track.notes:
            assert n.duration >= 1 and 0 <= n.pitch < 128


@pytest.mark.slow
def test_roundtrip_on_hundreds_of_real_corpus_pieces():
    """Real music, not only hand-made scores: Bach chorales, Essen folk tunes, Palestrina."""
    from music21 import corpus, stream

    from acemusic.data.m21 import stream_to_score

    scores = []
    for i, chorale in enumerate(corpus.chorales.Iterator()):
        if i >= 120:
            break
        scores.append(stream_to_score(chorale, style="bach"))
    for name in ("essenFolksong/altdeu10", "essenFolksong/boehme10"):
        opus = corpus.parse(name)
        tunes = opus.scores if isinstance(opus, stream.Opus) else [opus]
        scores.extend(stream_to_score(t, style="folk_essen") for t in tunes[:90])
    for p in sorted(corpus.getComposer("palestrina"))[:15]:
        scores.append(stream_to_score(corpus.parse(p), style="palestrina"))
    scores = [s for s in scores if s.note_num() > 0]
    assert len(scores) >= 250
    notes = 0
    for s in scores:
        assert_roundtrip(s)
        notes += s.note_num()
    assert notes > 40_000
