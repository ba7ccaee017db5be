"""music21 -> symusic conversion on real corpus pieces: note counts, pickup alignment, key, metadata."""

from __future__ import annotations

import pytest
from music21 import converter, corpus, harmony

from acemusic.data.analysis import key_of_notes, note_arrays
from acemusic.data.corpus import Task, convert_task, music21_root, read_text, split_abc
from acemusic.data.m21 import CHOIR, measure_grid, sig_from_ticks, stream_to_score
from acemusic.tokenizer import TPQ, Tokenizer


def _m21_note_count(s) -> int:
    """Sounding pitches after music21's own tie stripping (grace notes and chord symbols excluded)."""
    n = 0
    for p in s.parts:
        for el in p.stripTies(inPlace=False).flatten().notes:
            if isinstance(el, harmony.Harmony) or el.duration.isGrace:
                continue
            n += len(el.pitches)
    return n


@pytest.fixture(scope="module")
def bwv66():
    return corpus.parse("bach/bwv66.6")


def test_bach_chorale_notes_programs_and_pickup(bwv66):
    score = stream_to_score(bwv66, "bach")
    assert score.ticks_per_quarter == TPQ
    assert score.note_num() == _m21_note_count(bwv66) == 163
    assert [t.program for t in score.tracks] == [CHOIR] * 4  # vocal parts without a MIDI program
    # bwv66.6 opens with a one-beat pickup in 4/4: it must sit on the last beat of bar 0 ...
    assert [(ts.numerator, ts.denominator) for ts in score.time_signatures] == [(4, 4)]
    first = min(int(t.notes[0].time) for t in score.tracks)
    assert first == 3 * TPQ
    # ... so measure 1 (the first full measure) starts exactly on the second bar line.
    shift, _ = measure_grid(bwv66.parts[0])
    m1 = bwv66.parts[0].measure(1)
    assert int(m1.offset * TPQ) + shift == 4 * TPQ


def test_key_estimate_bwv66_is_f_sharp_minor(bwv66):
    key, mode, _ = key_of_notes(note_arrays(stream_to_score(bwv66, "bach")))
    assert (key, mode) == (6, "minor")


def test_essen_tune_from_opus_matches_music21():
    path = music21_root() / "essenFolksong" / "altdeu10.abc"
    header, tunes = split_abc(read_text(path))
    assert len(tunes) == 313
    ours = converter.parseData(header + tunes[0], format="abc")
    theirs = converter.parse(path, number=1)  # music21's own opus handling of the same tune
    assert ours.metadata.title == theirs.metadata.title == "Das Hildebrandslied"
    score = stream_to_score(ours, "folk_essen")
    assert score.note_num() == _m21_note_count(theirs)
    # 'G2 |' is a two-beat pickup in 4/2: shifted so the first full measure starts on the first bar line.
    assert (score.time_signatures[0].numerator, score.time_signatures[0].denominator) == (4, 2)
    assert int(score.tracks[0].notes[0].time) == 6 * TPQ
    shift, _ = measure_grid(ours.parts[0])
    second = ours.parts[0].getElementsByClass("Measure")[1]
    assert int(second.offset * TPQ) + shift == 8 * TPQ


def test_free_meter_tune_gets_one_bar_per_measure():
    # Essen tune 2 ("M: none"): no declared signature, so every measure becomes its own bar.
    path = music21_root() / "essenFolksong" / "altdeu10.abc"
    header, tunes = split_abc(read_text(path))
    s = converter.parseData(header + tunes[1], format="abc")
    _, events = measure_grid(s.parts[0])
    measures = s.parts[0].getElementsByClass("Measure")
    assert len(events) >= 2
    starts = {round(float(m.offset) * TPQ) for m in measures}
    assert all(t in starts for t, _, _ in events)


def test_sig_from_ticks():
    assert sig_from_ticks(48) == (4, 4)
    assert sig_from_ticks(18) == (3, 8)
    assert sig_from_ticks(3) == (1, 16)
    assert sig_from_ticks(4) is None  # a triplet eighth is no measure
    assert sig_from_ticks(0) is None


def test_convert_task_metadata_for_an_opus_chunk():
    tok = Tokenizer()
    path = music21_root() / "essenFolksong" / "teste.abc"
    task = Task("abc", str(path), "essenFolksong/teste.abc", "essenFolksong", "folk_essen", 0, 3)
    pieces, skips = convert_task(task, tok)
    assert skips == [] and len(pieces) == 3
    ids = [m["id"] for _, m in pieces]
    assert ids == [f"music21:essenFolksong/teste.abc#{i}" for i in (1, 2, 3)]
    body, meta = pieces[0]
    assert meta["title"] == "Ich hab die Nacht geträumet"  # DOS code page decoded
    assert meta["source"] == "music21" and meta["style"] == "folk_essen"
    assert meta["polyphony"] == "monophonic" and meta["instruments"] == [0]
    assert meta["n_tokens"] == len(body) and meta["n_bars"] == int((body == tok.vocab.bar).sum())
    assert meta["n_notes"] == len(tok.note_table(tok.decode(body)))
    assert 0 <= meta["key"] < 12 and meta["mode"] in ("major", "minor")
    assert meta["tempo"] == 100.0 and meta["meter"] == "6/8"
    assert meta["pitch_min"] <= meta["pitch_max"] and 0 <= meta["density"] <= 3


@pytest.mark.parametrize("work", ["bach/bwv66.6", "bach/bwv269", "palestrina/Agnus_01"])
def test_key_estimate_is_music21_krumhansl_schmuckler(work):
    # Same algorithm and profiles as music21's 'key.krumhansl' (music21's default 'key' uses Aarden-Essen weights).
    s = corpus.parse(work)
    key, mode, _ = key_of_notes(note_arrays(stream_to_score(s, "other")))
    ref = s.analyze("key.krumhansl")
    assert (key, mode) == (ref.tonic.pitchClass, ref.mode)
