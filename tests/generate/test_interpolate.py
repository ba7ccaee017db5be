"""interpolate: join, the bridge (FIM between A and B), the morph mixture decoder and its statistics, the API and
`acemusic interpolate` (tiny random model; one slow test on the shipped checkpoint).

Run: `.venv/bin/python -m pytest tests/generate/test_interpolate.py -q`.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import acemusic.cli.interpolate  # noqa: F401  registers the command
from acemusic.api import Bundle, load
from acemusic.cli.app import app
from acemusic.errors import InputError
from acemusic.generate.constraints import Controls
from acemusic.generate.sampling import SamplingConfig
from acemusic.generate.tasks.infill import FillState
from acemusic.generate.tasks.interpolate import (
    bridge_task,
    concat,
    join,
    mixture_decode,
    morph,
    morph_stats,
    opening_request,
)
from acemusic.generate.tasks.io import load_piece, note_table
from acemusic.tokenizer import Conditions
from tests.generate.conftest import FIXTURES

A_MID, B_MID = FIXTURES / "bach_bwv66_6.mid", FIXTURES / "band.mid"


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint) -> Bundle:
    return load(tiny_checkpoint, text=False)


@pytest.fixture(scope="module")
def pieces(bundle):
    return load_piece(bundle.tokenizer, A_MID), load_piece(bundle.tokenizer, B_MID)


def _grid_table(score):
    return note_table(score.resample(12, min_dur=1) if score.ticks_per_quarter != 12 else score)


def test_join_places_b_after_the_gap(bundle, pieces):
    tok = bundle.tokenizer
    a, b = pieces
    score, first = join(tok, a, b, 3)
    start_b = a.end_tick(tok) + 3 * 48
    joined = load_piece(tok, score)
    assert first == a.n_bars and joined.n_bars == a.n_bars + 3 + b.n_bars
    t = note_table(score)
    assert np.array_equal(t[t[:, 0] < a.end_tick(tok)], _grid_table(a.score))
    tb = t[t[:, 0] >= a.end_tick(tok)].copy()
    tb[:, 0] -= start_b
    assert np.array_equal(tb, _grid_table(b.score))  # B unchanged, moved to its bar line after the gap
    assert [(e.time, e.qpm) for e in score.tempos][-1] == (start_b, b.score.tempos[0].qpm)


def test_bridge_keeps_a_and_b_and_fills_the_gap(bundle, pieces):
    tok = bundle.tokenizer
    a, b = pieces
    out = bundle.interpolate(A_MID, B_MID, bars=2, seed=0)
    joined, _ = join(tok, a, b, 2)
    lo, hi = a.end_tick(tok), a.end_tick(tok) + 2 * 48
    t, j = note_table(out), note_table(joined)
    outside = lambda x: x[(x[:, 0] < lo) | (x[:, 0] >= hi)]
    assert np.array_equal(outside(t), outside(j))
    new = t[(t[:, 0] >= lo) & (t[:, 0] < hi)]
    assert len(new) and (new[:, 0] + new[:, 1]).max() <= hi
    only = bundle.interpolate(A_MID, B_MID, bars=2, seed=0, bridge_only=True)
    assert np.array_equal(note_table(only)[:, 1:], new[:, 1:])  # the same bridge, cropped to start at 0
    assert note_table(only)[:, 0].min() == new[:, 0].min() - lo
    assert (only.time_signatures[0].numerator, only.time_signatures[0].denominator) == (4, 4)


def test_bridge_prompt_has_a_left_and_b_right(bundle, pieces):
    tok, v = bundle.tokenizer, bundle.tokenizer.vocab
    a, b = pieces
    task = bridge_task(tok, a, b, 2)
    req = task.build(bundle.ctx)
    ids = req.prompt.tolist()
    fs, sep = ids.index(v.id("FillStart")), ids.index(v.id("Sep"))
    assert ids[fs - 12:fs] == a.body[-12:].tolist()  # the left side ends with A's last tokens
    b_first = b.body[: tok.bar_starts(b.body)[1]].tolist()
    assert ids[fs + 1:fs + 1 + len(b_first)] == b_first  # B's first bar, as B alone encodes it, opens the suffix
    assert sep == len(ids) - 1


def test_mixture_weights_select_the_context(bundle, pieces):
    """Weight 1 on one context samples exactly what that context alone gives (same seed, same tokens)."""
    tok = bundle.tokenizer
    a, b = pieces
    insts = tuple(sorted(set(a.programs) | set(b.programs)))
    ra, oa = opening_request(tok, a, 2, insts)
    rb, ob = opening_request(tok, b, 2, insts)
    plain = tok.cond_prefix(Conditions(instruments=insts))

    def run(reqs, offs, w, seed=0):
        st = FillState(bundle.engine.grammar, Controls(n_bars=2, time_sig=3, tempo=20, lock_time_sig=True,
                                                       lock_tempo=True), 0, tok.vocab.id("FillEnd"))
        for t in plain.tolist():
            st.advance(t)
        return mixture_decode(bundle.ctx, reqs, offs, w, st, SamplingConfig(), seed, 600)

    only_a = run([ra], [oa], [1.0])
    assert np.array_equal(run([ra, rb], [oa, ob], [1.0, 0.0]), only_a)
    assert np.array_equal(run([ra, rb], [oa, ob], [0.0, 1.0]), run([rb], [ob], [1.0]))
    half = run([ra, rb], [oa, ob], [0.5, 0.5])
    assert half[-2:].tolist() == [tok.vocab.id("FillEnd"), tok.vocab.eos] and (half == tok.vocab.bar).sum() == 2


def test_morph_steps_and_stats(bundle, pieces):
    tok = bundle.tokenizer
    a, b = pieces
    steps = morph(bundle.ctx, a, b, bars=2, steps=4, seed=0)
    assert len(steps) == 4
    plain = tok.cond_prefix(Conditions(instruments=(0,)))
    assert np.array_equal(note_table(steps[0]), note_table(tok.decode(np.concatenate([plain,
                                                                                     tok.slice_bars(a.body, 0, 2)]))))
    assert np.array_equal(note_table(steps[-1]), note_table(tok.decode(np.concatenate([plain,
                                                                                      tok.slice_bars(b.body, 0, 2)]))))
    union = set(a.programs) | set(b.programs)
    for s in steps[1:-1]:
        t = note_table(s)
        assert len(t) and (t[:, 0] + t[:, 1]).max() <= 2 * 48 and set(t[:, 4].tolist()) <= union
    stats = morph_stats(steps)
    assert stats[0]["progress"] == 0.0 and stats[-1]["progress"] == 1.0
    assert stats[0]["pitch_class_overlap_a"] == 1.0 and stats[-1]["rhythm_overlap_b"] == 1.0
    assert morph_stats([steps[0], steps[-1], steps[0], steps[-1]])[2]["progress"] == 0.0  # A itself: at A
    assert morph_stats(steps) == morph_stats(morph(bundle.ctx, a, b, bars=2, steps=4, seed=0))  # seeded
    c = concat(steps, gap_bars=1)
    assert c.note_num() == sum(s.note_num() for s in steps) and len(c.time_signatures) == 4
    with pytest.raises(InputError, match="--steps"):
        morph(bundle.ctx, a, b, bars=2, steps=1)


def test_cli(tiny_checkpoint, tmp_path):
    runner = CliRunner()
    ck = ["--checkpoint", str(tiny_checkpoint)]
    out = tmp_path / "i.mid"
    r = runner.invoke(app, ["interpolate", str(A_MID), str(B_MID), "--bars", "2", "-o", str(out), *ck])
    assert r.exit_code == 0 and out.exists() and "2-bar bridge" in r.output, r.output
    r = runner.invoke(app, ["interpolate", str(A_MID), str(B_MID), "--bars", "1", "--steps", "3",
                            "-o", str(tmp_path / "m.mid"), *ck])
    assert r.exit_code == 0 and "step 2: progress A->B 1.00" in r.output, r.output
    for bad, msg in ((["--steps", "1"], "--steps"), (["--bars", "0"], "--bars"), (["-o", str(out)], "exists")):
        r = runner.invoke(app, ["interpolate", str(A_MID), str(B_MID), "-o", str(tmp_path / "x.mid"), *bad, *ck])
        assert r.exit_code == 1 and msg in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = runner.invoke(app, ["interpolate", str(A_MID), str(FIXTURES / "corrupt.mid"), "-o", str(tmp_path / "x.mid")])
    assert r.exit_code == 1 and "corrupt" in r.output
    assert not (tmp_path / "x.mid").exists()


@pytest.mark.slow
def test_shipped_bridge():
    bundle = load(text=False)
    tok = bundle.tokenizer
    a, b = load_piece(tok, A_MID), load_piece(tok, B_MID)
    out = bundle.interpolate(A_MID, B_MID, bars=2, seed=0)
    lo, hi = a.end_tick(tok), a.end_tick(tok) + 2 * 48
    t = note_table(out)
    new = t[(t[:, 0] >= lo) & (t[:, 0] < hi)]
    assert len(new) >= 4 and set(new[:, 4].tolist()) <= set(a.programs) | set(b.programs)
    assert len(t) - len(new) == a.score.note_num() + b.score.note_num()
