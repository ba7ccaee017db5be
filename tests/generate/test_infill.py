"""infill: span parsing, the FIM prompt and FillState, InfillTask, Bundle.infill and `acemusic infill` (tiny random
model; one slow test on the shipped checkpoint).

Run: `.venv/bin/python -m pytest tests/generate/test_infill.py -q`.
"""

from __future__ import annotations

import numpy as np
import pytest
import symusic
from typer.testing import CliRunner

import acemusic.cli.infill  # noqa: F401  registers the command
from acemusic.api import Bundle, load
from acemusic.cli.app import app
from acemusic.errors import InputError
from acemusic.generate.constraints import scale_mask
from acemusic.generate.tasks.infill import InfillTask, fim_window
from acemusic.generate.tasks.io import load_piece, note_table, parse_spans
from acemusic.train.batching import fim_sequence
from tests.generate.conftest import FIXTURES


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint) -> Bundle:
    return load(tiny_checkpoint, text=False)


def _span_ticks(piece, tok, a, b):
    end = piece.bar_ticks[b] if b < piece.n_bars else piece.end_tick(tok)
    lo, hi = piece.to_input_ticks([piece.bar_ticks[a], end])
    return int(lo), int(hi)


def _check_spans(piece, out, tok, spans):
    """Outside every span: the input's notes exactly; inside: new notes that start and end in the span."""
    a_t, b_t = note_table(piece.score), note_table(out)
    inside = lambda t, lo, hi: (t[:, 0] >= lo) & (t[:, 0] < hi)
    out_a, out_b = np.ones(len(a_t), bool), np.ones(len(b_t), bool)
    for a, b in spans:
        lo, hi = _span_ticks(piece, tok, a, b)
        out_a &= ~inside(a_t, lo, hi)
        out_b &= ~inside(b_t, lo, hi)
        new = b_t[inside(b_t, lo, hi)]
        assert len(new) > 0
        assert (new[:, 0] + new[:, 1]).max() <= hi  # no filled note rings past its span
        assert set(new[:, 4].tolist()) <= set(piece.programs)
    assert np.array_equal(a_t[out_a], b_t[out_b])


def test_parse_spans():
    assert parse_spans("5-8", 10) == [(4, 8)]
    assert parse_spans(" 7 , 2-3 ", 10) == [(1, 3), (6, 7)]
    assert parse_spans("1-2,3-4", 4) == [(0, 2), (2, 4)]  # adjacent is fine
    for bad, msg in (("0-2", "from 1"), ("5-3", "reversed"), ("9-11", "outside"), ("11", "outside"),
                     ("1-3,3-4", "overlap"), ("2,2", "overlap"), ("a-b", "not a bar span"), ("", "give")):
        with pytest.raises(InputError, match=msg):
            parse_spans(bad, 10)


@pytest.mark.parametrize("name,spans", [("bach_bwv66_6.mid", "4-6"), ("bach_bwv66_6.mid", "1-2,9-10"),
                                        ("band.mid", "2-3"), ("band.mid", "4")])
def test_outside_identical_inside_new(bundle, name, spans):
    tok = bundle.tokenizer
    piece = load_piece(tok, FIXTURES / name)
    out = bundle.infill(FIXTURES / name, spans, seed=0)
    assert out.ticks_per_quarter == piece.score.ticks_per_quarter
    assert out.time_signatures == piece.score.time_signatures and out.tempos == piece.score.tempos
    _check_spans(piece, out, tok, parse_spans(spans, piece.n_bars))


def test_prompt_is_the_training_fim_format(bundle):
    """Prompt = `prefix bars[:a] FillStart bars[b:] Sep` with the structure the trainer used; the decoded middle
    takes bar numbers a+1.. and ends with FillEnd after exactly b - a bars."""
    tok, v = bundle.tokenizer, bundle.tokenizer.vocab
    piece = load_piece(tok, FIXTURES / "bach_bwv66_6.mid")
    task = InfillTask(piece, 3, 6)
    req = task.build(bundle.ctx)
    assert task.window == (0, piece.n_bars)  # a short piece is seen whole
    prefix = tok.cond_prefix(task.conditions(bundle.ctx)[0])
    ids, bar_idx, pos, glob, _ = fim_sequence(tok, prefix, piece.body, 3, 6, with_middle=False)
    assert np.array_equal(req.prompt, ids) and req.prompt[-1] == v.id("Sep")
    assert all(np.array_equal(x, y) for x, y in zip(req.structure, (bar_idx, pos, glob), strict=True))
    assert len(req.uncond_prompt) == len(req.prompt)
    toks, bars_seen = [], []
    for step in bundle.engine.stream([req], max_new_tokens=task.max_new_tokens(), seed=0):
        toks.append(int(step.tokens[0]))
        bars_seen.append(step.states[0].structure)  # the states are live: read them at each step
    assert toks[-2:] == [v.id("FillEnd"), v.eos]
    assert toks.count(v.bar) == 3 and toks[0] == v.bar
    ts, tempo = piece.header(tok, 3)
    assert toks[1:3] == [v.id("TimeSig", ts), v.id("Tempo", tempo)]  # the meter and tempo in effect at bar 4
    assert bars_seen[0] == (4, 0, True) and max(b[0] for b in bars_seen) == 6  # true bar numbers, as trained
    assert bars_seen[-2] == (6, 0, True)  # FillEnd: a global token at position 0 with bar count b


def test_fill_state_structure_and_end():
    from acemusic.generate.constraints import Controls, Grammar
    from acemusic.generate.tasks.infill import FillState
    from acemusic.tokenizer import Conditions, Tokenizer

    tok = Tokenizer()
    v = tok.vocab
    ids = {name: i for i, name in enumerate(v.tokens)}
    st = FillState(Grammar(v), Controls(n_bars=1), offset=5, fill_end=v.id("FillEnd"))
    for t in tok.cond_prefix(Conditions()).tolist():
        st.advance(t)
    assert np.flatnonzero(st.allowed()).tolist() == [v.bar]
    for t in ("Bar", "TimeSig_4/4", "Tempo_20", "Position_0", "Program_0", "Velocity_10", "Pitch_60", "Duration_11"):
        assert st.allowed()[ids[t]], t
        st.advance(ids[t])
    assert st.structure[0] == 6  # bar 1 of the middle is bar 6 of the window
    m = st.allowed()
    assert m[v.id("FillEnd")] and not m[v.eos] and not m[v.bar]  # one bar asked: the middle may only end
    st.advance(v.id("FillEnd"))
    assert np.flatnonzero(st.allowed()).tolist() == [v.eos] and st.structure[2]


def test_long_piece_window_fits_training_length(bundle):
    tok = bundle.tokenizer
    base = tok.load_score(FIXTURES / "bach_bwv66_6.mid")
    long = base.copy()
    for k in range(1, 5):
        for tr, src in zip(long.tracks, base.shift_time(k * 480).tracks, strict=True):
            tr.notes.extend(src.notes)
    piece = load_piece(tok, long)
    task = InfillTask(piece, 24, 26)
    req = task.build(bundle.ctx)
    lo, hi = task.window
    assert 0 < lo < 24 and 26 < hi < piece.n_bars and len(req.prompt) <= 512
    assert fim_window(tok, piece.body, 24, 26, 10_000) == (0, piece.n_bars)
    out = bundle.infill(long, "25-26", seed=0)
    _check_spans(piece, out, tok, [(24, 26)])


def test_same_seed_same_output_and_errors(bundle, tmp_path):
    a = bundle.infill(FIXTURES / "band.mid", "2-3", seed=2)
    assert a == bundle.infill(FIXTURES / "band.mid", [(2, 3)], seed=2)
    assert a != bundle.infill(FIXTURES / "band.mid", "2-3", seed=3)
    for name in ("empty.mid", "corrupt.mid", "not_midi.mid", "no_notes.mid"):
        with pytest.raises(InputError):
            bundle.infill(FIXTURES / name, "1-2")
    with pytest.raises(InputError, match="outside"):
        bundle.infill(FIXTURES / "band.mid", "3-9")
    # a span across a meter change: the filled bars follow the input's meters (the bar lines are kept)
    sc = bundle.tokenizer.load_score(FIXTURES / "bach_bwv66_6.mid")
    sc.time_signatures.append(symusic.TimeSignature(5 * 48, 3, 4))
    piece = load_piece(bundle.tokenizer, sc)
    assert piece.bar_ts[4] != piece.bar_ts[5]
    steps = []
    task = InfillTask(piece, 4, 7)
    out = bundle.infill(sc, "5-7", seed=0, on_step=lambda s: steps.append(int(s.tokens[0])))
    _check_spans(piece, out, bundle.tokenizer, [(4, 7)])
    v = bundle.tokenizer.vocab
    assert [t for t in steps if v.type_of[t] == v.type_of[v.id("TimeSig")]] == \
        [v.id("TimeSig", int(piece.bar_ts[4])), v.id("TimeSig", int(piece.bar_ts[5]))]
    assert task.total_bars() == 3


def test_cli(tiny_checkpoint, tmp_path):
    runner = CliRunner()
    out = tmp_path / "f.mid"
    args = ["infill", str(FIXTURES / "band.mid"), "--bars", "2-3", "--checkpoint", str(tiny_checkpoint),
            "-o", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "bars 2-3 of 4" in r.output and out.stat().st_size > 0
    assert runner.invoke(app, args).exit_code == 1  # exists without --force
    for bars, msg in (("3-9", "outside"), ("3-2", "reversed"), ("1-2,2-3", "overlap"), ("0", "from 1")):
        r = runner.invoke(app, [*args[:3], bars, *args[4:-1], str(tmp_path / "x.mid")])
        assert r.exit_code == 1 and msg in r.output and len(r.output.strip().splitlines()) == 1, r.output
    for name in ("corrupt.mid", "empty.mid"):
        r = runner.invoke(app, ["infill", str(FIXTURES / name), "--bars", "1", "-o", str(tmp_path / "x.mid")])
        assert r.exit_code == 1 and "Traceback" not in r.output
    assert not (tmp_path / "x.mid").exists()


@pytest.mark.slow
def test_shipped_infill_keeps_outside_and_key():
    bundle = load(text=False)
    tok = bundle.tokenizer
    piece = load_piece(tok, FIXTURES / "bach_bwv66_6.mid")
    out = bundle.infill(FIXTURES / "bach_bwv66_6.mid", "4-5", seed=0)
    _check_spans(piece, out, tok, [(3, 5)])
    lo, hi = _span_ticks(piece, tok, 3, 5)
    t = note_table(out)
    new = t[(t[:, 0] >= lo) & (t[:, 0] < hi)]
    assert len(new) >= 8 and scale_mask(6, "minor")[new[:, 2]].mean() >= 0.85


def test_left_side_only(bundle):
    tok, v = bundle.tokenizer, bundle.tokenizer.vocab
    piece = load_piece(tok, FIXTURES / "bach_bwv66_6.mid")
    req = InfillTask(piece, 3, 6, right_bars=0).build(bundle.ctx)
    ids = req.prompt.tolist()
    assert ids[-2:] == [v.id("FillStart"), v.id("Sep")]  # no suffix: the training case of a middle at the end
    assert len(InfillTask(piece, 3, 6, right_bars=1).build(bundle.ctx).prompt) > len(ids)


def test_mixture_path(bundle):
    """The default fill decodes from the both-sides / left-only mix; weight 1 on a single FIM row samples what
    the engine samples for that prompt (same seed, no guidance)."""
    from acemusic.generate.engine import Engine
    from acemusic.generate.sampling import SamplingConfig
    from acemusic.generate.tasks.mixture import mixture_decode

    tok = bundle.tokenizer
    piece = load_piece(tok, FIXTURES / "bach_bwv66_6.mid")
    task = InfillTask(piece, 3, 5)
    req = task.build(bundle.ctx)
    assert task.mixes() and not InfillTask(piece, 3, 5, right_weight=1.0).mixes()
    # the mixture decodes token by token with the bundle's decoder, like the plain path of the same engine setup
    plain = Engine(bundle.model, tok, quantize=bundle.engine.quantize, speculate=0)
    engine_ids = plain.generate([req], SamplingConfig(top_p=0.95), seed=3, max_new_tokens=600)[0]
    state = task.new_state(bundle.ctx)
    mixed_ids = mixture_decode(bundle.ctx, [req], [task.a - task.window[0]], [1.0], state,
                               SamplingConfig(top_p=0.95), 3, 600)
    assert np.array_equal(engine_ids, mixed_ids)
    prompt, gen = task.decode_mixture(bundle.ctx, SamplingConfig(top_p=0.95, cfg=1.5), seed=0)
    assert gen[-2:].tolist() == [tok.vocab.id("FillEnd"), tok.vocab.eos] and (gen == tok.vocab.bar).sum() == 2
    _check_spans(piece, task.finish(bundle.ctx, prompt, gen), tok, [(3, 5)])
