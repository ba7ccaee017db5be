"""vary: span picking, variations (kept bars identical, reworked bars differ), the motif/difference measures,
Bundle.vary and `acemusic vary` (tiny random model; one slow test on the shipped checkpoint).

Run: `.venv/bin/python -m pytest tests/generate/test_vary.py -q`.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from typer.testing import CliRunner

import acemusic.cli.vary  # noqa: F401  registers the command
from acemusic.api import Bundle, load
from acemusic.cli.app import app
from acemusic.errors import InputError
from acemusic.generate.tasks.io import load_piece, note_table
from acemusic.generate.tasks.vary import difference, motif_similarity, pick_spans, variation_stats, vary
from tests.generate.conftest import FIXTURES

CHORALE = FIXTURES / "bach_bwv66_6.mid"


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint) -> Bundle:
    return load(tiny_checkpoint, text=False)


def test_pick_spans():
    rng = np.random.default_rng(0)
    for strength, want in ((0.5, 5), (1.0, 9), (0.01, 1)):
        spans = pick_spans(10, 1, strength, rng)
        bars = [b for a, c in spans for b in range(a, c)]
        assert len(bars) == want and min(bars) >= 1 and bars == sorted(set(bars))
        assert all(s1[1] < s2[0] for s1, s2 in pairwise(spans))  # merged, not touching
    assert pick_spans(10, 1, 1.0, rng) == [(1, 10)]


def test_variations_keep_unpicked_bars_and_differ(bundle):
    tok = bundle.tokenizer
    piece = load_piece(tok, CHORALE)
    out = vary(bundle.ctx, piece, n=3, strength=0.4, keep_bars=2, seed=0)
    assert len(out) == 3
    orig = note_table(piece.score)
    for score, spans in out:
        t = note_table(score)

        def in_span(x, spans=spans):
            return np.any([(x[:, 0] >= piece.bar_ticks[a]) &
                           (x[:, 0] < (piece.bar_ticks[b] if b < piece.n_bars else 1 << 30)) for a, b in spans], 0)

        assert all(a >= 2 for a, _ in spans)  # the motif bars are never picked
        assert np.array_equal(orig[~in_span(orig)], t[~in_span(t)])  # everything not picked: note for note
    assert len({tuple(map(tuple, s)) for _, s in out}) > 1  # different variations rework different bars
    stats = variation_stats(piece.score, [s for s, _ in out])
    assert min(stats["pairwise_difference"]) > 0 and len(stats["pairwise_difference"]) == 3
    assert all(0 <= m <= 1 for m in stats["motif_similarity"])
    again = vary(bundle.ctx, piece, n=3, strength=0.4, keep_bars=2, seed=0)
    assert all(a[0] == b[0] for a, b in zip(out, again, strict=True))  # seeded


def test_measures():
    from acemusic.tokenizer import Tokenizer

    score = Tokenizer().load_score(CHORALE)
    assert motif_similarity(score, score) == 1.0 and difference(score, score) == 0.0
    shifted = score.shift_pitch(2)  # transposed: same motifs (intervals), notes moved
    assert motif_similarity(score, shifted) == 1.0 and difference(score, shifted) > 0.95  # (a voice meets another)
    half = score.copy()
    for tr in half.tracks:
        a = tr.notes.numpy()
        keep = a["time"] < 240
        tr.notes = type(tr.notes).from_numpy(*(a[k][keep] for k in ("time", "duration", "pitch", "velocity")))
    assert 0 < motif_similarity(score, half) < 1 and 0 < difference(score, half) < 1


def test_errors_and_cli(bundle, tiny_checkpoint, tmp_path):
    for kw, msg in (({"n": 0}, "--n"), ({"strength": 0.0}, "--strength"), ({"keep_bars": 10}, "leaves none")):
        with pytest.raises(InputError, match=msg):
            bundle.vary(CHORALE, **kw)
    with pytest.raises(InputError):
        bundle.vary(FIXTURES / "corrupt.mid")
    runner = CliRunner()
    args = ["vary", str(CHORALE), "--n", "2", "-o", str(tmp_path / "v.mid"), "--checkpoint", str(tiny_checkpoint)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "v1.mid").exists() and (tmp_path / "v2.mid").exists() and "pairwise difference" in r.output
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "--force" in r.output
    r = runner.invoke(app, [*args, "--n", "99"])
    assert r.exit_code == 1 and "--n" in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_shipped_variations_keep_motifs():
    """On the shipped model, variations of the chorale that rework a third of its bars keep most of its motifs
    and differ from each other."""
    bundle = load(text=False)
    scores = bundle.vary(CHORALE, n=2, strength=0.3, seed=0)
    stats = variation_stats(bundle.tokenizer.load_score(CHORALE), scores)
    assert min(stats["motif_similarity"]) >= 0.4
    assert stats["mean_pairwise_difference"] > 0.1
