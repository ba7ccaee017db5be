"""compose: the task, the Python API (load / Bundle.compose) and `acemusic compose`, on a tiny random checkpoint.

Run: `.venv/bin/python -m pytest tests/generate/test_compose.py -q`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import acemusic.cli.compose  # noqa: F401  registers the command
from acemusic.api import Bundle, load
from acemusic.cli.app import app
from acemusic.errors import InputError
from acemusic.generate.tasks.compose import ComposeTask


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint) -> Bundle:
    return load(tiny_checkpoint, text=False)


def _bars(score, tpq=12) -> float:
    """Length in bars of the (single) time signature."""
    ts = score.time_signatures[0]
    return score.end() / (ts.numerator * 4 * tpq // ts.denominator)


@pytest.mark.parametrize("prompt,bars", [("melancholic piano, slow, D minor", 8),
                                         ("joyful 6/8 clarinet tune in E major at 50 bpm", 5),
                                         ("string quartet, waltz, F sharp minor, 150 bpm", 3),
                                         ("anything at all", 1)])
def test_exact_bars_notes_and_asks(bundle, prompt, bars):
    score = bundle.compose(prompt, bars=bars, seed=0)
    assert score.note_num() > 0
    spec = __import__("acemusic.generate.prompt", fromlist=["parse_prompt"]).parse_prompt(prompt)
    progs = {(128 if t.is_drum else t.program) for t in score.tracks if t.note_num()}
    assert progs <= set(spec.instruments or (0,))
    if spec.meter is not None:
        assert len(score.time_signatures) == 1
        assert (score.time_signatures[0].numerator, score.time_signatures[0].denominator) == spec.meter
        assert bars - 1 < _bars(score) <= bars
    if spec.tempo is not None:
        assert len(score.tempos) == 1 and abs(score.tempos[0].qpm - spec.tempo) / spec.tempo < 0.04
    n_bar_tokens = []
    bundle.compose(prompt, bars=bars, seed=0, on_step=lambda s: n_bar_tokens.append(s.states[0].bar_index))
    assert max(n_bar_tokens) == bars


def test_same_seed_same_output(bundle):
    a = bundle.compose("bright harp, fast, in E major", bars=4, seed=3)
    b = bundle.compose("bright harp, fast, in E major", bars=4, seed=3)
    c = bundle.compose("bright harp, fast, in E major", bars=4, seed=4)
    assert a == b
    assert a != c


def test_flags_override_prompt(bundle):
    score = bundle.compose("melancholic piano, slow, D minor", bars=2, tempo=120, meter="3/4", instruments="flute")
    assert {t.program for t in score.tracks} == {73}
    assert (score.time_signatures[0].numerator, score.time_signatures[0].denominator) == (3, 4)
    assert abs(score.tempos[0].qpm - 120) < 5
    flute = np.concatenate([t.notes.numpy()["pitch"] for t in score.tracks])
    assert flute.min() >= 60 and flute.max() <= 96  # the flute's range


def test_prompt_and_cfg_reach_the_model(bundle):
    task = ComposeTask(__import__("acemusic.generate.prompt", fromlist=["x"]).parse_prompt("dark organ, C minor"))
    req = task.build(bundle.ctx)
    v = bundle.tokenizer.vocab
    toks = [v.token(t) for t in req.prompt]
    assert toks == ["BOS", "Style_none", "Key_0", "Mode_minor", "Density_none", "Inst_19", "Bar"]
    assert [v.token(t) for t in req.uncond_prompt] == ["BOS", "Style_none", "Key_none", "Mode_none", "Density_none",
                                                       "Inst_19", "Bar"]
    assert req.controls.n_bars == 16 and req.controls.key == 0 and req.controls.key_strength > 0


def test_api_errors(bundle, tmp_path, tiny_checkpoint):
    for kwargs in (dict(prompt=""), dict(prompt="x" * 1001), dict(prompt="piano", bars=0),
                   dict(prompt="piano", bars=257), dict(prompt="piano", instruments="kazoo"),
                   dict(prompt="piano", key="H"), dict(prompt="piano", top_p=0.0), dict(prompt="piano", cfg=-1)):
        with pytest.raises(InputError):
            bundle.compose(**kwargs)
    with pytest.raises(InputError, match="no checkpoint"):
        load(tmp_path / "missing")
    other = tmp_path / "other_vocab"
    other.mkdir()
    for f in ("model.safetensors", "config.json"):
        (other / f).write_bytes((tiny_checkpoint / f).read_bytes())
    doc = json.loads((other / "config.json").read_text())
    doc["meta"]["vocab"]["n_velocity_bins"] = 32  # another vocabulary: 16 more tokens than the weights have
    (other / "config.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="vocab"):
        load(other)


def test_save_midi_roundtrip(bundle, tmp_path):
    score = bundle.compose("piano", bars=2, seed=1)
    path = bundle.save_midi(score, tmp_path / "sub" / "x.mid")
    back = bundle.tokenizer.load_score(path)
    assert back.note_num() == score.note_num()


def test_cli(tiny_checkpoint, tmp_path):
    runner = CliRunner()
    out = tmp_path / "song.mid"
    args = ["compose", "melancholic piano, slow, D minor", "-o", str(out), "--bars", "3", "--checkpoint",
            str(tiny_checkpoint), "--seed", "2"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert out.is_file() and "3 bars" in r.output and "D minor" in r.output
    first = out.read_bytes()
    r = runner.invoke(app, args)  # exists, no --force
    assert r.exit_code == 1 and "exists" in r.output
    r = runner.invoke(app, [*args, "--force"])
    assert r.exit_code == 0 and out.read_bytes() == first  # same seed, same file
    bad = [["compose", "", "-o", str(tmp_path / "a.mid")],
           ["compose", "x" * 1001, "-o", str(tmp_path / "b.mid")],
           ["compose", "piano", "--bars", "0", "-o", str(tmp_path / "c.mid")],
           ["compose", "piano", "--bars", "300", "-o", str(tmp_path / "d.mid")],
           ["compose", "piano", "--instruments", "kazoo", "-o", str(tmp_path / "e.mid")],
           ["compose", "piano", "--checkpoint", str(tmp_path / "nope"), "-o", str(tmp_path / "f.mid")],
           ["compose", "piano", "--meter", "7/3", "-o", str(tmp_path / "g.mid")],
           ["compose", "piano", "--threads", "0", "-o", str(tmp_path / "h.mid")],
           ["compose", "piano", "--threads", "many", "-o", str(tmp_path / "i.mid")]]
    for b in bad:
        r = runner.invoke(app, b if "--checkpoint" in b else [*b, "--checkpoint", str(tiny_checkpoint)])
        assert r.exit_code == 1, (b, r.output)
        assert r.output.strip().startswith("error:") and len(r.output.strip().splitlines()) == 1, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.mid"]  # nothing else written
    r = runner.invoke(app, [*args, "--force", "--threads", "auto"])  # opt-in: threads from the load average
    assert r.exit_code == 0, r.output


def test_meter_held_when_not_asked(bundle):
    """No meter in the prompt: the model picks bar 1's, and it holds for the whole piece (one TimeSig)."""
    for seed in range(3):
        score = bundle.compose("a tune for violin", bars=6, seed=seed)
        assert len(score.time_signatures) == 1
