"""Pitch-class histograms, transition matrices and melodic BLEU on hand-built scores with hand-computed values.

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/eval/test_metrics.py -q`
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from symusic import Note, Score, TimeSignature, Track

from acemusic.eval.metrics import (
    bar_lines,
    corpus_bleu,
    histogram_overlap,
    kl_divergence,
    melody,
    melody_bleu,
    melody_sequence,
    notes_of,
    pitch_class_histogram,
    pitch_class_transitions,
    transition_distance,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "midi"
C, D, E, F, G, A = 60, 62, 64, 65, 67, 69


def score_of(
    *tracks: list[tuple[int, int, int]], drums: list[tuple[int, int, int]] | None = None, tpq: int = 12
) -> Score:
    """A score with one piano track per list of (onset, duration, pitch) and an optional drum track."""
    s = Score(tpq)
    for notes in tracks:
        t = Track("piano", 0, False)
        for on, dur, p in notes:
            t.notes.append(Note(on, dur, p, 80))
        s.tracks.append(t)
    if drums:
        t = Track("drums", 0, True)
        for on, dur, p in drums:
            t.notes.append(Note(on, dur, p, 80))
        s.tracks.append(t)
    return s


def line(pitches: list[int], step: int = 12, start: int = 0) -> list[tuple[int, int, int]]:
    return [(start + i * step, step, p) for i, p in enumerate(pitches)]


# ---- helpers -----------------------------------------------------------------------------------------------------


def test_notes_are_put_on_the_grid() -> None:
    s = score_of([(480, 240, C), (960, 480, E)], tpq=480)
    n = notes_of(s)
    assert n.onset.tolist() == [12, 24] and n.duration.tolist() == [6, 12] and n.pitch.tolist() == [C, E]


def test_melody_is_the_top_voice_without_drums() -> None:
    s = score_of([(0, 12, C), (0, 12, G), (12, 12, A)], [(0, 24, E), (24, 12, D)], drums=[(0, 3, 90), (36, 3, 90)])
    m = melody(s)
    assert m.onset.tolist() == [0, 12, 24] and m.pitch.tolist() == [G, A, D]
    assert melody_sequence(s, "interval") == [2, -7]


def test_bar_lines_follow_meter_changes() -> None:
    s = score_of(line([C] * 20))
    s.time_signatures.append(TimeSignature(0, 4, 4))
    s.time_signatures.append(TimeSignature(96, 3, 4))
    assert bar_lines(s).tolist() == [0, 48, 96, 132, 168, 204]  # last onset 228 lies in the bar from 204


# ---- pitch-class histograms --------------------------------------------------------------------------------------


def test_pitch_class_histogram_count_and_duration() -> None:
    s = score_of([(0, 12, C), (12, 24, E), (36, 12, C + 12)], drums=[(0, 48, D)])
    count = pitch_class_histogram(s, weight="count")
    dur = pitch_class_histogram(s, weight="duration")
    assert count[0] == pytest.approx(2 / 3) and count[4] == pytest.approx(1 / 3) and count.sum() == pytest.approx(1)
    assert dur[0] == pytest.approx(0.5) and dur[4] == pytest.approx(0.5)  # C: 12 + 12 ticks, E: 24 ticks
    assert pitch_class_histogram(s, weight="count", normalize=False).tolist()[:5] == [2, 0, 0, 0, 1]
    assert pitch_class_histogram(score_of(drums=[(0, 3, 36)])).sum() == 0


def test_histogram_overlap() -> None:
    p = np.eye(12)[0]
    q = (np.eye(12)[0] + np.eye(12)[4]) / 2
    assert histogram_overlap(p, q) == pytest.approx(0.5)
    assert histogram_overlap(q, q * 7) == pytest.approx(1.0)  # normalized first
    assert histogram_overlap(np.eye(12)[0], np.eye(12)[1]) == 0.0


def test_kl_divergence_with_and_without_smoothing() -> None:
    p = np.eye(12)[0]
    q = (np.eye(12)[0] + np.eye(12)[1]) / 2
    assert kl_divergence(p, q, alpha=0.0) == pytest.approx(math.log(2))
    assert kl_divergence(q, q) == pytest.approx(0.0, abs=1e-12)
    # p = e0, q = e1: only bins 0 and 1 differ after smoothing; KL = log((1 + a) / a) / (1 + 12 a) by hand.
    a = 1e-3
    assert kl_divergence(np.eye(12)[0], np.eye(12)[1], alpha=a) == pytest.approx(math.log((1 + a) / a) / (1 + 12 * a))


# ---- transitions -------------------------------------------------------------------------------------------------


def test_pitch_class_transitions_by_hand() -> None:
    melody_track = line([C, D, E, C + 12])
    chords = [(0, 12, C), (0, 12, E), (24, 12, G)]  # a rest between the groups still links them
    m = pitch_class_transitions(score_of(melody_track, chords, drums=[(0, 3, 40), (12, 3, 41)]), normalize=False)
    expected = np.zeros((12, 12))
    expected[0, 2] = expected[2, 4] = expected[4, 0] = 1  # C->D, D->E, E->C
    expected[0, 7] += 1
    expected[4, 7] += 1  # {C, E} -> G
    np.testing.assert_array_equal(m, expected)
    rows = pitch_class_transitions(score_of(melody_track, chords))
    assert rows[0, 2] == pytest.approx(0.5) and rows[0, 7] == pytest.approx(0.5) and rows[1].sum() == 0


def test_transition_distance_by_hand() -> None:
    a = np.zeros((12, 12))
    a[0, 2] = 3  # C -> D
    b = np.zeros((12, 12))
    b[0, 2] = b[0, 4] = 1  # C -> D or E: total variation 0.5 against a
    b[2, 4] = 5  # a row only b has: distance 1
    assert transition_distance(a, b) == pytest.approx(0.75)
    assert transition_distance(a, a / 3) == 0.0
    assert transition_distance(np.zeros((12, 12)), np.zeros((12, 12))) == 0.0


# ---- BLEU --------------------------------------------------------------------------------------------------------


def test_corpus_bleu_by_hand() -> None:
    # p1..p4 = 4/5, 3/4, 2/3, 1/2, same length: BLEU = (0.8 * 0.75 * 2/3 * 0.5) ** 0.25 = 0.2 ** 0.25
    assert corpus_bleu([[[1, 2, 3, 4, 6]]], [[1, 2, 3, 4, 5]]) == pytest.approx(0.2**0.25)
    # perfect precision, candidate 4 against reference 6: BP = exp(1 - 6/4)
    assert corpus_bleu([[[1, 2, 3, 4, 5, 6]]], [[1, 2, 3, 4]]) == pytest.approx(math.exp(-0.5))
    # clipping: five 7s against a reference with two: p1 = 2/5, p2 = 1/4 (BLEU-2)
    assert corpus_bleu([[[7, 7]]], [[7, 7, 7, 7, 7]], weights=(0.5, 0.5)) == pytest.approx(math.sqrt(0.1))
    # no shared 4-gram -> 0 without smoothing; closest reference length picks the shorter on ties
    assert corpus_bleu([[[1, 2, 3, 9, 4]]], [[1, 2, 3, 4, 5]]) == 0.0
    assert corpus_bleu([[[1, 2, 3], [1, 2, 3, 4, 5, 6, 7]]], [[1, 2, 3, 4, 5]], weights=(1.0,)) == pytest.approx(1.0)


def test_corpus_bleu_matches_nltk() -> None:
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    rng = np.random.default_rng(0)
    for _ in range(20):
        refs = [
            [rng.integers(0, 5, int(rng.integers(6, 30))).tolist() for _ in range(int(rng.integers(1, 4)))]
            for _ in range(5)
        ]
        cands = [rng.integers(0, 5, int(rng.integers(6, 30))).tolist() for _ in range(5)]
        ours = corpus_bleu(refs, cands)
        theirs = nltk_bleu.corpus_bleu(refs, cands)
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-300)


def test_melody_bleu_pitch_vs_interval() -> None:
    tune = [C, D, E, C, E, F, G, E, G, A, G, F, E, C]
    ref = score_of(line(tune))
    up = score_of(line([p + 5 for p in tune]))
    assert melody_bleu([ref], [ref]) == pytest.approx(1.0)
    assert melody_bleu([up], [ref], kind="interval") == pytest.approx(1.0)  # a transposed quotation
    assert melody_bleu([up], [ref], kind="pitch") < 0.5
    other = score_of(line([C, C + 12, C, C + 12, D, D + 12, D, D + 12]))
    assert melody_bleu([other], [ref]) == 0.0


def test_metrics_run_on_real_midi() -> None:
    path = FIXTURES / "bach_bwv66_6.mid"
    h = pitch_class_histogram(path)
    assert h.sum() == pytest.approx(1) and h[1] == pytest.approx(0.208, abs=0.01)  # F# minor: C# is most present
    m = pitch_class_transitions(path)
    assert np.allclose(m.sum(axis=1)[m.sum(axis=1) > 0], 1)
    assert melody_bleu([path], [path, FIXTURES / "band.mid"], kind="interval") == pytest.approx(1.0)
