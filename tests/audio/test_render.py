"""FluidSynth rendering: a real render of short MIDI, soundfont discovery, error paths and `acemusic render`.

Run: `.venv/bin/python -m pytest tests/audio -q`. Needs the fluidsynth binary and a GM SoundFont
(Debian: fluidsynth fluid-soundfont-gm); without them the render tests are skipped, the error tests still run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from symusic import Note, Score, Tempo, Track
from typer.testing import CliRunner

import acemusic.cli.render  # noqa: F401  registers the command
from acemusic.audio.render import ENV_SOUNDFONT, find_soundfont, render
from acemusic.cli.app import app
from acemusic.errors import InputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "midi"


def _has_soundfont() -> bool:
    try:
        find_soundfont()
        return True
    except InputError:
        return False


needs_fluidsynth = pytest.mark.skipif(shutil.which("fluidsynth") is None or not _has_soundfont(),
                                      reason="fluidsynth or a GM SoundFont is not installed")


def _scale(qpm: float = 120.0) -> Score:
    """Eight quarter notes, C major scale: 4 s at 120 bpm."""
    s = Score(12)
    t = Track("piano", 0, False)
    for i, p in enumerate((60, 62, 64, 65, 67, 69, 71, 72)):
        t.notes.append(Note(i * 12, 12, p, 90))
    s.tracks.append(t)
    s.tempos.append(Tempo(0, qpm=qpm))
    return s


@needs_fluidsynth
def test_render_score_is_audible_and_long_enough(tmp_path):
    import soundfile as sf

    out = render(_scale(), tmp_path / "scale.wav", sr=22050)
    audio, sr = sf.read(str(out), always_2d=True)
    seconds = len(audio) / sr
    assert sr == 22050
    assert 4.0 <= seconds <= 4.0 + 3.5  # the music plus FluidSynth's release tail
    rms = np.sqrt((audio[: int(4.0 * sr)] ** 2).mean())
    assert rms > 0.01  # not silent
    # Loudness normalisation (pyloudnorm) lands near -16 LUFS.
    pyloudnorm = pytest.importorskip("pyloudnorm")
    assert abs(pyloudnorm.Meter(sr).integrated_loudness(audio) + 16.0) < 1.0
    # Half the tempo, twice the length.
    slow, _ = sf.read(str(render(_scale(60.0), tmp_path / "slow.wav", sr=22050)), always_2d=True)
    assert 8.0 <= len(slow) / sr <= 8.0 + 3.5


@needs_fluidsynth
def test_render_midi_file_and_cli(tmp_path):
    import soundfile as sf

    runner = CliRunner()
    out = tmp_path / "bach.wav"
    r = runner.invoke(app, ["render", str(FIXTURES / "bach_bwv66_6.mid"), "-o", str(out), "--sr", "16000"])
    assert r.exit_code == 0, r.output
    audio, sr = sf.read(str(out), always_2d=True)
    assert sr == 16000 and len(audio) > 10 * sr and np.abs(audio).max() > 0.05
    r = runner.invoke(app, ["render", str(FIXTURES / "bach_bwv66_6.mid"), "-o", str(out)])
    assert r.exit_code == 1 and "exists" in r.output


def test_errors(tmp_path, monkeypatch):
    runner = CliRunner()
    for args in (["render", str(tmp_path / "missing.mid"), "-o", str(tmp_path / "a.wav")],
                 ["render", str(FIXTURES / "not_midi.mid"), "-o", str(tmp_path / "b.wav")],
                 ["render", str(FIXTURES / "bach_bwv66_6.mid"), "-o", str(tmp_path / "c.wav"), "--sr", "10"],
                 ["render", str(FIXTURES / "bach_bwv66_6.mid"), "-o", str(tmp_path / "d.wav"),
                  "--soundfont", str(tmp_path / "none.sf2")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and r.output.startswith("error:"), (args, r.output)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(ENV_SOUNDFONT, str(tmp_path / "nowhere.sf2"))
    with pytest.raises(InputError, match=ENV_SOUNDFONT):
        find_soundfont()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="fluidsynth"):
        render(_scale(), tmp_path / "x.wav")
