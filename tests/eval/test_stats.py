"""Descriptive statistics on hand-built scores, overlapping areas with closed forms, and parity with MusPy.

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/eval/test_stats.py -q`
The MusPy parity test needs `pip install muspy` (dev extra) and skips without it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from symusic import Note, Score, Track

from acemusic.eval.stats import (
    FEATURES,
    compare_features,
    compare_sets,
    density_on_grid,
    describe,
    empty_beat_rate,
    first_bar_ticks,
    groove_consistency,
    ioi_histogram,
    kde,
    n_pitch_classes_used,
    n_pitches_used,
    note_density,
    note_length_histogram,
    overlapping_area,
    pitch_class_entropy,
    pitch_entropy,
    pitch_range,
    polyphony,
    polyphony_rate,
    scale_consistency,
    scott_bandwidth,
)
from acemusic.tokenizer import Tokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "midi"


def score_of(notes: list[tuple[int, int, int]], drums: list[tuple[int, int, int]] | None = None) -> Score:
    """tpq 12 score: one piano track of (onset, duration, pitch), optional drums."""
    s = Score(12)
    for is_drum, rows in ((False, notes), (True, drums or [])):
        if rows:
            t = Track("t", 0, is_drum)
            for on, dur, p in rows:
                t.notes.append(Note(on, dur, p, 80))
            s.tracks.append(t)
    return s


# C major triad then G held, C5, and a kick drum: 5 notes, song length 39 ticks.
TRIAD = score_of([(0, 12, 60), (0, 12, 64), (0, 24, 67), (24, 12, 72)], drums=[(36, 3, 36)])


def test_pitch_features_by_hand() -> None:
    assert pitch_range(TRIAD) == 12
    assert n_pitches_used(TRIAD) == 4 and n_pitch_classes_used(TRIAD) == 3
    assert pitch_entropy(TRIAD) == pytest.approx(2.0)  # four pitches once each
    assert pitch_class_entropy(TRIAD) == pytest.approx(1.5)  # C 1/2, E 1/4, G 1/4
    assert scale_consistency(TRIAD) == 1.0
    # C C# D E: no major or natural-minor scale has three consecutive semitones; C major holds 3 of 4
    assert scale_consistency(score_of([(0, 12, p) for p in (60, 61, 62, 64)])) == pytest.approx(0.75)
    drums_only = score_of([], drums=[(0, 3, 36)])
    assert pitch_range(drums_only) == 0 and math.isnan(pitch_entropy(drums_only))


def test_polyphony_by_hand() -> None:
    # pitched ticks: 0-11 three pitches, 12-23 one, 24-35 one; 36-38 only the drum (excluded, but counts in length)
    assert polyphony(TRIAD) == pytest.approx(60 / 36)
    assert polyphony_rate(TRIAD) == pytest.approx(12 / 39)  # more than 2 pitches: the first 12 ticks
    assert polyphony_rate(TRIAD, threshold=0) == pytest.approx(36 / 39)


def test_empty_beat_rate_by_hand() -> None:
    assert empty_beat_rate(TRIAD) == 0.0
    # notes at beat 0 (6 ticks) and from beat 3 to 4 (ends at tick 48): beats 0..4, marked {0, 3, 4} -> 2/5 empty
    assert empty_beat_rate(score_of([(0, 6, 60), (36, 12, 62)])) == pytest.approx(0.4)


def test_groove_consistency_by_hand() -> None:
    # bar 0 onsets at 0 and 24, bar 1 at 0 and 12: Hamming distance 2 over 48 positions
    s = score_of([(0, 24, 60), (24, 24, 62), (48, 12, 64), (60, 12, 65)])
    assert first_bar_ticks(s) == 48
    assert groove_consistency(s) == pytest.approx(1 - 2 / 48)
    assert math.isnan(groove_consistency(TRIAD))  # one measure


def test_density_and_length_histograms_by_hand() -> None:
    assert note_density(TRIAD) == 5.0
    two_bars = score_of([(0, 12, 60), (12, 12, 62), (48, 12, 64)])
    assert note_density(two_bars) == 1.5
    assert note_density(FIXTURES / "bach_bwv66_6.mid") == Tokenizer().notes_per_bar(
        Tokenizer().load_score(FIXTURES / "bach_bwv66_6.mid")
    )
    lengths = note_length_histogram(TRIAD)  # 12, 12, 24, 12 (drum excluded)
    assert lengths[2] == pytest.approx(0.75) and lengths[1] == pytest.approx(0.25)
    iois = ioi_histogram(TRIAD)  # onsets 0, 24, 36 -> IOIs 24 and 12
    assert iois[1] == pytest.approx(0.5) and iois[2] == pytest.approx(0.5)
    odd = note_length_histogram(score_of([(0, 4, 60), (4, 5, 60), (9, 16, 60)]), normalize=False)
    assert odd[11] == 1 and odd[8] == 1 and odd[9] == 1  # 8th triplet, 5 -> dotted 16th (4.5), half triplet


def test_describe_has_every_feature() -> None:
    d = describe(FIXTURES / "band.mid")
    assert set(d) == set(FEATURES)
    assert d["ioi_histogram"].shape == (12,) and isinstance(d["polyphony"], float)
    with pytest.raises(ValueError, match="unknown"):
        describe(TRIAD, ["nope"])


# ---- overlapping area ---------------------------------------------------------------------------------------------


def test_kde_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).normal(size=40)
    grid = np.linspace(-4, 4, 101)
    np.testing.assert_allclose(kde(x, scott_bandwidth(x))(grid), stats.gaussian_kde(x)(grid), rtol=1e-10)


def test_binned_density_matches_exact() -> None:
    x = np.random.default_rng(2).gamma(2.0, size=3000)
    h = scott_bandwidth(x)
    grid = np.linspace(x.min() - 6 * h, x.max() + 6 * h, 20001)
    exact = density_on_grid(x, h, grid)
    binned = density_on_grid(x, h, grid, exact_limit=0)
    assert np.abs(binned - exact).max() < 1e-4 * exact.max()


def test_overlapping_area_closed_forms() -> None:
    # one sample each with bandwidth s is N(0, s) vs N(d, s): OA = 2 * Phi(-d / (2 s)) = erfc(d / (2 s sqrt 2))
    assert overlapping_area([0.0], [1.0], bandwidth=1.0) == pytest.approx(math.erfc(1 / (2 * math.sqrt(2))), abs=1e-6)
    x = np.random.default_rng(1).normal(size=30)
    assert overlapping_area(x, x) == pytest.approx(1.0, abs=1e-6)
    assert overlapping_area(x, x + 100) == pytest.approx(0.0, abs=1e-6)
    # constant samples: same constant -> 1; different constants use the pooled Scott bandwidth h
    assert overlapping_area([3, 3, 3], [3, 3]) == 1.0
    h = np.std([3, 3, 4, 4], ddof=1) * 4 ** (-0.2)
    assert overlapping_area([3, 3], [4, 4]) == pytest.approx(math.erfc(1 / (2 * h * math.sqrt(2))), abs=1e-6)
    assert math.isnan(overlapping_area([], [1.0]))


def test_compare_sets() -> None:
    rng = np.random.default_rng(0)

    def piece(width: int) -> Score:
        return score_of([(12 * i, 12, 60 + int(rng.integers(0, width))) for i in range(32)])

    narrow = [piece(3) for _ in range(6)]
    wide = [piece(30) for _ in range(6)]
    feats = ["pitch_range", "note_length_histogram"]
    same = compare_sets(narrow, narrow, feats)
    assert same["pitch_range"]["oa"] == pytest.approx(1.0, abs=1e-6)
    assert same["pitch_range"]["generated_mean"] == same["pitch_range"]["reference_mean"]
    assert (
        math.isnan(same["note_length_histogram"]["oa"]) and len(same["note_length_histogram"]["generated_mean"]) == 12
    )
    far = compare_sets(wide, narrow, feats)
    assert far["pitch_range"]["oa"] < 0.05 and far["pitch_range"]["oa_mgeval"] < 0.2
    assert same["pitch_range"]["oa_mgeval"] > 0.5
    # undefined values (groove of a one-bar piece) are left out, not averaged in
    rows = compare_features(
        [{"groove_consistency": math.nan}, {"groove_consistency": 0.5}], [{"groove_consistency": 0.5}]
    )
    assert rows["groove_consistency"]["n_generated"] == 1 and rows["groove_consistency"]["generated_mean"] == 0.5


# ---- MusPy parity ------------------------------------------------------------------------------------------------

PARITY = (
    "pitch_range",
    "n_pitches_used",
    "n_pitch_classes_used",
    "pitch_entropy",
    "pitch_class_entropy",
    "scale_consistency",
    "empty_beat_rate",
    "polyphony",
    "polyphony_rate",
)


def test_equals_muspy_on_real_files(tmp_path: Path) -> None:
    """Chorales written by music21 plus a band file with drums, put on our grid (tpq 12) and read by both."""
    muspy = pytest.importorskip("muspy")
    from music21 import corpus

    sources = [FIXTURES / "band.mid"]
    for name in ("bach/bwv1.6", "bach/bwv10.7", "bach/bwv102.7"):
        path = tmp_path / f"{name.split('/')[1]}.mid"
        corpus.parse(name).write("midi", fp=str(path))
        sources.append(path)
    for src in sources:
        on_grid = tmp_path / f"{Path(src).stem}_12.mid"
        Score(str(src)).resample(12, min_dur=1).dump_midi(str(on_grid))
        music = muspy.read_midi(str(on_grid))
        assert music.resolution == 12
        ours = describe(on_grid)
        for name in PARITY:
            assert ours[name] == pytest.approx(getattr(muspy, name)(music), rel=1e-12), (src, name)
        mr = first_bar_ticks(on_grid)
        assert ours["groove_consistency"] == pytest.approx(muspy.groove_consistency(music, mr), rel=1e-12), src
