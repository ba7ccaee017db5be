"""accompany and track infill: given tracks kept exactly (tokens and output), new notes only for asked programs.

Run: `.venv/bin/python -m pytest tests/generate/test_accompany.py -q`.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import acemusic.cli.accompany  # noqa: F401  registers the commands
from acemusic.api import Bundle, load
from acemusic.cli.app import app
from acemusic.errors import InputError
from acemusic.generate.sampling import SamplingConfig
from acemusic.generate.tasks.accompany import AccompanyTask
from acemusic.generate.tasks.track_infill import TrackInfillTask
from acemusic.tokenizer.vocab import DRUMS

from .conftest import FIXTURES


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint) -> Bundle:
    return load(tiny_checkpoint, text=False)


def table(track) -> np.ndarray:
    a = track.notes.numpy()
    return np.stack([a["time"], a["duration"], a["pitch"], a["velocity"]], 1)


def program(track) -> int:
    return DRUMS if track.is_drum else int(track.program)


def test_accompany_keeps_the_melody_and_adds_only_the_asked_instruments(bundle, tok):
    bach = tok._grid(tok.load_score(FIXTURES / "bach_bwv66_6.mid"))
    task = AccompanyTask(tok, bach, (0, 33, DRUMS), tracks=[0])
    out = task.run(bundle.ctx, SamplingConfig(), seed=0)
    assert np.array_equal(table(out.tracks[0]), table(bach.tracks[0]))
    assert {program(t) for t in out.tracks[1:]} <= {0, 33, DRUMS} and len(out.tracks) >= 2
    given = [n for n in task.last_state.played if n.given]
    assert len(given) == bach.tracks[0].note_num()  # forced in the token stream, not only copied
    assert sum(t.note_num() for t in out.tracks[1:]) == sum(not n.given for n in task.last_state.played)
    played = sorted((n.onset, n.pitch, int(tok.vocab.velocity_value(n.velocity))) for n in task.last_state.played
                    if not n.given)
    written = sorted((n.time, n.pitch, n.velocity) for t in out.tracks[1:] for n in t.notes)
    assert written == played  # velocity bins written back as MIDI velocities


def test_accompany_keeps_every_track_of_a_band(bundle, tok):
    band = tok._grid(tok.load_score(FIXTURES / "band.mid"))
    out = bundle.accompany(band, "strings", seed=1)
    for a, b in zip(out.tracks[:3], band.tracks, strict=True):
        assert np.array_equal(table(a), table(b)) and program(a) == program(b)
    assert all(program(t) == 48 for t in out.tracks[3:])


def test_track_infill_regenerates_one_track_and_keeps_the_others(bundle, tok):
    band = tok._grid(tok.load_score(FIXTURES / "band.mid"))
    task = TrackInfillTask(tok, band, track=1)  # the bass
    out = task.run(bundle.ctx, SamplingConfig(), seed=0)
    assert [t.name for t in out.tracks[:2]] == [band.tracks[0].name, band.tracks[2].name]
    assert np.array_equal(table(out.tracks[0]), table(band.tracks[0]))
    assert np.array_equal(table(out.tracks[1]), table(band.tracks[2]))
    assert program(out.tracks[2]) == program(band.tracks[1]) and len(out.tracks) == 3
    out2 = bundle.infill_track(band, 1, instrument="cello", seed=0)
    assert program(out2.tracks[-1]) == 42


def test_bad_requests(tok):
    band = tok._grid(tok.load_score(FIXTURES / "band.mid"))
    with pytest.raises(InputError, match="at least one instrument"):
        AccompanyTask(tok, band, ())
    with pytest.raises(InputError, match="no track 5"):
        TrackInfillTask(tok, band, 5)
    one = tok._grid(tok.load_score(FIXTURES / "bach_bwv66_6.mid"))
    del one.tracks[1:]
    with pytest.raises(InputError, match="at least one other track"):
        TrackInfillTask(tok, one, 0)


def test_cli_accompany_and_infill_track(tiny_checkpoint, tmp_path):
    out = tmp_path / "a.mid"
    ck = ["--checkpoint", str(tiny_checkpoint)]
    r = CliRunner().invoke(app, ["accompany", str(FIXTURES / "bach_bwv66_6.mid"), "--track", "0", "--instruments",
                                 "piano,bass", "-o", str(out), *ck])
    assert r.exit_code == 0, r.output
    assert "1 track(s) kept" in r.output and out.exists()
    r = CliRunner().invoke(app, ["infill-track", str(FIXTURES / "band.mid"), "--track", "1", "-o",
                                 str(tmp_path / "r.mid"), *ck])
    assert r.exit_code == 0, r.output
    for argv, msg in ((["accompany", str(FIXTURES / "empty.mid")], "empty file"),
                      (["accompany", str(FIXTURES / "band.mid"), "--instruments", "kazoo"], "unknown instrument"),
                      (["accompany", str(FIXTURES / "band.mid"), "--track", "9"], "--track"),
                      (["infill-track", str(FIXTURES / "band.mid"), "--track", "7"], "no track 7"),
                      (["infill-track", str(FIXTURES / "corrupt.mid"), "--track", "0"], "corrupt MIDI")):
        r = CliRunner().invoke(app, [*argv, "-o", str(tmp_path / "x.mid"), *ck])
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output
