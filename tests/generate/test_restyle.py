"""restyle: the melody's skeleton is kept exactly; instruments follow the prompt; the report says what moved.

Run: `.venv/bin/python -m pytest tests/generate/test_restyle.py -q`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import acemusic.cli.restyle  # noqa: F401  registers the command
from acemusic.api import Bundle, load
from acemusic.cli.app import app
from acemusic.generate.tasks.harmonize import monophonic

from .conftest import FIXTURES


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint) -> Bundle:
    return load(tiny_checkpoint, text=False)


def test_restyle_keeps_the_skeleton_and_takes_the_prompts_instruments(bundle, tok):
    band = tok._grid(tok.load_score(FIXTURES / "band.mid"))
    out, rep = bundle.restyle(band, "jazzy, swing, for flute and double bass", report=True, seed=0)
    skeleton = monophonic(band.tracks[0])  # the piano part is the highest: its top line is the melody
    mel = out.tracks[0]
    assert mel.program == 73  # the prompt's first instrument plays the melody
    a, b = mel.notes.numpy(), skeleton.notes.numpy()
    assert all(np.array_equal(a[f], b[f]) for f in ("time", "duration", "pitch"))
    assert rep["melody_kept"] == 1.0 and rep["melody_notes"] == skeleton.note_num()
    assert {t.program for t in out.tracks[1:]} <= {73, 43}
    assert set(rep["instruments_after"]) <= {73, 43} and rep["instruments_before"] == [0, 33, 128]
    assert set(rep["style_change"]) == set(rep["style_before"])
    for k, v in rep["style_change"].items():
        assert v == pytest.approx(rep["style_after"][k] - rep["style_before"][k])


def test_top_line_of_chords():
    import symusic

    tr = symusic.Track("p", 0, False)
    for t, p in ((0, 60), (0, 64), (0, 67), (12, 62), (24, 65), (24, 69)):
        tr.notes.append(symusic.Note(t, 24, p, 80))
    top = monophonic(tr)
    assert [(n.time, n.pitch, n.duration) for n in top.notes] == [(0, 67, 12), (12, 62, 12), (24, 69, 24)]


def test_cli_restyle_writes_midi_and_report(tiny_checkpoint, tmp_path):
    out, rep = tmp_path / "s.mid", tmp_path / "s.json"
    ck = ["--checkpoint", str(tiny_checkpoint)]
    r = CliRunner().invoke(app, ["restyle", str(FIXTURES / "band.mid"), "--prompt", "calm piano", "-o", str(out),
                                 "--report", str(rep), *ck])
    assert r.exit_code == 0, r.output
    assert json.loads(rep.read_text())["melody_kept"] == 1.0 and "100% of" in r.output
    for argv, msg in ((["--prompt", ""], "prompt"), (["--prompt", "x", "--track", "2"], "--track"),
                      (["--prompt", "jazzy", "--instruments", "kazoo"], "unknown instrument")):
        r = CliRunner().invoke(app, ["restyle", str(FIXTURES / "band.mid"), *argv, "-o", str(tmp_path / "x.mid"),
                                     *ck])
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["restyle", str(FIXTURES / "not_midi.mid"), "--prompt", "jazzy", *ck])
    assert r.exit_code == 1 and "not a MIDI file" in r.output
