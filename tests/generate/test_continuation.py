"""continue: ContinueTask, Bundle.continue_ and `acemusic continue` (tiny random model; one slow test on the shipped
checkpoint).

Run: `.venv/bin/python -m pytest tests/generate/test_continuation.py -q`.
"""

from __future__ import annotations

import numpy as np
import pytest
import symusic
from typer.testing import CliRunner

import acemusic.cli.continue_  # noqa: F401  registers the command
from acemusic.api import Bundle, load
from acemusic.cli.app import app
from acemusic.errors import InputError
from acemusic.generate.constraints import scale_mask
from acemusic.generate.tasks.continuation import ContinueTask
from acemusic.generate.tasks.io import load_piece, note_table
from tests.generate.conftest import FIXTURES


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint) -> Bundle:
    return load(tiny_checkpoint, text=False)


def _split(piece, out, tok):
    """(input-region rows, new rows) of the output's note table, split at the piece's last bar line."""
    end = int(piece.to_input_ticks([piece.end_tick(tok)])[0])
    t = note_table(out)
    return t[t[:, 0] < end], t[t[:, 0] >= end], end


@pytest.mark.parametrize("name", ["bach_bwv66_6.mid", "band.mid"])
def test_input_kept_note_for_note_and_bars_exact(bundle, name):
    tok = bundle.tokenizer
    piece = load_piece(tok, FIXTURES / name)
    bars = 3
    out = bundle.continue_(FIXTURES / name, bars=bars, seed=1)
    old, new, end = _split(piece, out, tok)
    assert np.array_equal(old, note_table(piece.score))  # every input note, unchanged (band.mid is 480 tpq)
    assert out.ticks_per_quarter == piece.score.ticks_per_quarter
    assert len(new) > 0
    bar = int(piece.to_input_ticks([piece.bar_len(tok, piece.n_bars - 1)])[0])
    assert new[:, 0].max() < end + bars * bar  # exactly `bars` new bars ...
    assert (new[:, 0] + new[:, 1]).max() <= end + bars * bar  # ... and nothing rings past them
    assert set(new[:, 4].tolist()) <= set(piece.programs)  # the piece's instruments
    assert out.time_signatures == piece.score.time_signatures and out.tempos == piece.score.tempos


def test_asks_override_the_piece(bundle):
    tok = bundle.tokenizer
    piece = load_piece(tok, FIXTURES / "bach_bwv66_6.mid")
    out = bundle.continue_(FIXTURES / "bach_bwv66_6.mid", bars=2, instruments="flute", meter="3/4", tempo=150,
                           seed=0)
    old, new, end = _split(piece, out, tok)
    assert np.array_equal(old, note_table(piece.score))
    assert len(new) and set(new[:, 4].tolist()) == {73}  # only the flute plays on ...
    assert new[:, 2].min() >= 60 and new[:, 2].max() <= 96  # ... in its range
    ts = [(t.time, t.numerator, t.denominator) for t in out.time_signatures]
    assert ts == [(0, 4, 4), (end, 3, 4)]  # the new meter from the first new bar
    assert (new[:, 0] + new[:, 1]).max() <= end + 2 * 36  # two bars of 3/4
    assert abs(out.tempos[-1].qpm - 150) / 150 < 0.04 and out.tempos[-1].time == end


def test_same_seed_same_output_and_key_in_prompt(bundle):
    a = bundle.continue_(FIXTURES / "band.mid", bars=2, seed=5)
    b = bundle.continue_(FIXTURES / "band.mid", bars=2, seed=5)
    c = bundle.continue_(FIXTURES / "band.mid", bars=2, seed=6)
    assert a == b and a != c
    piece = load_piece(bundle.tokenizer, FIXTURES / "bach_bwv66_6.mid")
    task = ContinueTask(piece, bars=2)
    req = task.build(bundle.ctx)
    v = bundle.tokenizer.vocab
    assert [v.token(t) for t in req.prompt[:6]] == ["BOS", "Style_none", "Key_6", "Mode_minor", "Density_3",
                                                    "Inst_52"]  # the piece's key (F# minor) and instrument
    assert req.controls.key == 6 and req.controls.lock_time_sig and req.controls.lock_tempo


def test_a_single_line_stays_a_single_line(bundle):
    tok = bundle.tokenizer
    score = tok.load_score(FIXTURES / "bach_bwv66_6.mid")
    score.tracks = score.tracks.filter(lambda t: t.name == score.tracks[0].name)  # the soprano alone
    piece = load_piece(tok, score)
    assert piece.max_chord == 1
    out = bundle.continue_(score, bars=4, seed=0)
    _, new, _ = _split(piece, out, tok)
    assert len(new) and len(np.unique(new[:, 0])) == len(new)  # one note per onset, like the input
    inf = bundle.infill(score, "3-6", seed=0)
    t = note_table(inf)
    assert len(np.unique(t[:, 0])) == len(t)


def test_long_input_is_seen_through_its_last_bars(bundle):
    tok = bundle.tokenizer
    base = tok.load_score(FIXTURES / "bach_bwv66_6.mid")
    long = base.copy()  # the chorale four times over: ~40 bars, more than the context budget
    for k in range(1, 4):
        shifted = base.shift_time(k * 480)
        for tr, src in zip(long.tracks, shifted.tracks, strict=True):
            tr.notes.extend(src.notes)
    piece = load_piece(tok, long)
    task = ContinueTask(piece, bars=1, context_tokens=200)
    req = task.build(bundle.ctx)
    assert 1 <= task.context_bars < piece.n_bars and len(req.prompt) <= 6 + 200 + 4
    out = bundle.continue_(long, bars=1, seed=0)
    old, new, _ = _split(piece, out, tok)
    assert np.array_equal(old, note_table(long)) and len(new)


def test_bad_input_errors(bundle, tmp_path):
    for name in ("empty.mid", "corrupt.mid", "not_midi.mid", "no_notes.mid"):
        with pytest.raises(InputError):
            bundle.continue_(FIXTURES / name, bars=2)
    with pytest.raises(InputError, match="--bars"):
        bundle.continue_(FIXTURES / "band.mid", bars=0)
    with pytest.raises(InputError, match="no notes"):
        bundle.continue_(symusic.Score(12), bars=2)


def test_cli(tiny_checkpoint, tmp_path):
    runner = CliRunner()
    out = tmp_path / "c.mid"
    args = ["continue", str(FIXTURES / "band.mid"), "--bars", "2", "--checkpoint", str(tiny_checkpoint), "-o", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "2 new bars" in r.output and out.stat().st_size > 0
    r = runner.invoke(app, args)  # exists, no --force
    assert r.exit_code == 1 and "--force" in r.output
    assert runner.invoke(app, [*args, "--force", "--seed", "1"]).exit_code == 0
    for bad, msg in ((["continue", str(FIXTURES / "corrupt.mid")], "corrupt"),
                     (["continue", str(FIXTURES / "empty.mid")], "empty"),
                     (["continue", str(tmp_path / "missing.mid")], "no such file"),
                     (["continue", str(FIXTURES / "band.mid"), "--bars", "0"], "--bars"),
                     (["continue", str(FIXTURES / "band.mid"), "--meter", "13/4"], "13/4")):
        r = runner.invoke(app, [*bad, "--checkpoint", str(tiny_checkpoint), "-o", str(tmp_path / "x.mid")])
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.mid").exists()


@pytest.mark.slow
def test_shipped_continuation_stays_in_key(tmp_path):
    """The shipped model continues the F# minor chorale in its key: >= 85% of the new notes in F# minor (the
    input itself: 98%)."""
    bundle = load(text=False)
    tok = bundle.tokenizer
    piece = load_piece(tok, FIXTURES / "bach_bwv66_6.mid")
    out = bundle.continue_(FIXTURES / "bach_bwv66_6.mid", bars=4, seed=0)
    old, new, _ = _split(piece, out, tok)
    assert np.array_equal(old, note_table(piece.score))
    assert len(new) >= 8
    assert scale_mask(6, "minor")[new[:, 2]].mean() >= 0.85
