"""Transcription: note F1 scoring (mir_eval), the Score built from note events, input checks, and (slow-marked)
a real basic-pitch run on a FluidSynth render.

Run: `.venv/bin/python -m pytest tests/audio/test_transcribe.py -q` (add `-m slow` for the basic-pitch run only).
The slow test needs basic-pitch + onnxruntime (scripts/install.sh) and fluidsynth with a GM SoundFont.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from symusic import Note, Score, Tempo, Track
from typer.testing import CliRunner

import acemusic.cli.transcribe  # noqa: F401  registers the command
from acemusic.audio.transcribe import (
    PRESETS,
    TICKS_PER_SECOND,
    TranscribeConfig,
    note_f1,
    notes_to_score,
    preset_config,
    transcribe,
)
from acemusic.cli.app import app
from acemusic.errors import InputError

sf = pytest.importorskip("soundfile")
pytest.importorskip("mir_eval")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "midi"


def _melody(shift_s: float = 0.0, transpose: int = 0) -> Score:
    """Eight 0.5 s notes of a C major scale at 120 bpm (tpq 12: one quarter = 0.5 s), optionally shifted."""
    s = Score(480)
    s.tempos.append(Tempo(0, qpm=120.0))
    t = Track("piano", 0, False)
    shift = round(shift_s * 960)
    for i, p in enumerate((60, 62, 64, 65, 67, 69, 71, 72)):
        t.notes.append(Note(480 * i + shift, 400, p + transpose, 90))
    s.tracks.append(t)
    return s


def test_note_f1_matches_the_tolerances():
    ref = _melody()
    assert note_f1(ref, ref)["f1"] == 1.0 and note_f1(ref, ref)["f1_offset"] == 1.0
    assert note_f1(ref, _melody(0.03))["f1"] == 1.0  # inside the 50 ms onset window
    assert note_f1(ref, _melody(0.08))["f1"] == 0.0  # outside it
    assert note_f1(ref, _melody(transpose=1))["f1"] == 0.0  # a semitone off is a wrong note
    half = _melody()
    half.tracks[0].notes = half.tracks[0].notes[:4]
    r = note_f1(ref, half)
    assert r["precision"] == 1.0 and r["recall"] == 0.5 and abs(r["f1"] - 2 / 3) < 1e-9
    assert note_f1(ref, Score(480))["f1"] == 0.0
    # Drum tracks are not pitched notes: ignored on both sides.
    drums = _melody()
    drums.tracks.append(Track("drums", 0, True))
    drums.tracks[1].notes.append(Note(0, 100, 36, 100))
    assert note_f1(ref, drums)["n_est"] == 8


def test_notes_to_score_keeps_times_and_pitches():
    events = [(0.5, 1.0, 60, 0.8), (0.25, 0.3, 67, 0.1), (1.0, 1.0004, 72, 2.0)]
    s = notes_to_score(events, program=40)
    assert s.tracks[0].program == 40 and s.note_num() == 3
    notes = sorted((n.time, n.duration, n.pitch, n.velocity) for n in s.tracks[0].notes)
    assert notes[0] == (round(0.25 * TICKS_PER_SECOND), round(0.05 * TICKS_PER_SECOND), 67, 13)
    assert notes[1][2] == 60 and notes[1][0] == TICKS_PER_SECOND // 2
    assert notes[2][1] >= 1 and notes[2][3] == 127  # zero-length notes last a tick; velocity clipped
    sec = s.to("second")
    assert abs(min(n.time for n in sec.tracks[0].notes) - 0.25) < 1e-3


def test_presets_and_overrides():
    assert preset_config("basic-pitch") == TranscribeConfig()  # basic-pitch's own defaults
    piano = preset_config("piano")
    assert (piano.onset_threshold, piano.frame_threshold, piano.min_note_ms) == PRESETS["piano"]
    mixed = preset_config("strings", onset_threshold=0.55, frame_threshold=None, program=40)
    assert mixed.onset_threshold == 0.55 and mixed.frame_threshold == PRESETS["strings"][1] and mixed.program == 40
    with pytest.raises(InputError, match="unknown preset"):
        preset_config("kazoo")


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="onset-threshold"):
        TranscribeConfig(onset_threshold=1.5).check()
    with pytest.raises(InputError, match="program"):
        TranscribeConfig(program=200).check()
    sil = tmp_path / "silence.wav"
    sf.write(str(sil), np.zeros(22050, np.float32), 22050)
    with pytest.raises(InputError, match="silent"):
        transcribe(sil)
    runner = CliRunner()
    out = tmp_path / "out.mid"
    for src, msg in ((FIXTURES / "bach_bwv66_6.mid", "MIDI file, not audio"), (sil, "silent"),
                     (tmp_path / "missing.wav", "no such audio file")):
        r = runner.invoke(app, ["transcribe", str(src), "-o", str(out)])
        assert r.exit_code == 1 and msg in r.output, r.output
        assert "Traceback" not in r.output and not out.exists()
    r = runner.invoke(app, ["transcribe", str(sil), "-o", str(out), "--preset", "kazoo"])
    assert r.exit_code == 1 and "unknown preset" in r.output
    out.write_bytes(b"keep")
    r = runner.invoke(app, ["transcribe", str(sil), "-o", str(out)])
    assert r.exit_code == 1 and "exists" in r.output and out.read_bytes() == b"keep"


@pytest.mark.slow
def test_basic_pitch_transcribes_a_piano_render(tmp_path):
    pytest.importorskip("basic_pitch")
    pytest.importorskip("onnxruntime")
    from acemusic.audio.render import render

    if shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth is not installed")
    ref = _melody()
    wav = render(ref, tmp_path / "scale.wav", sr=44100)  # 44.1 kHz stereo: resampled + downmixed on the way in
    res = transcribe(wav, threads=1)
    assert res.audio.sr == 22050 and res.audio.source_channels == 2
    score = note_f1(ref, res.score)
    assert score["f1"] >= 0.85, score  # a clean piano scale: basic-pitch finds nearly every onset
    assert {n[2] for n in res.notes} >= {60, 64, 67, 72}
    # Same notes as basic-pitch's own predict() on a file already at its 22.05 kHz (no resampling difference).
    from acemusic.audio.transcribe import _quiet

    wav22 = render(ref, tmp_path / "scale22.wav", sr=22050)
    with _quiet():
        from basic_pitch import ICASSP_2022_MODEL_PATH
        from basic_pitch.inference import predict

        _, _, events = predict(str(wav22), ICASSP_2022_MODEL_PATH)
    ours = transcribe(wav22, threads=1).notes
    assert sorted((round(s, 4), p) for s, _, p, *_ in events) == sorted((round(s, 4), p) for s, _, p, _ in ours)
    out = tmp_path / "scale.mid"
    r = CliRunner().invoke(app, ["transcribe", str(wav), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert Score(str(out)).note_num() == len(res.notes)
    tuned = tmp_path / "tuned.mid"
    r = CliRunner().invoke(app, ["transcribe", str(wav), "-o", str(tuned), "--preset", "piano"])
    assert r.exit_code == 0, r.output
    assert note_f1(ref, Score(str(tuned)))["f1"] >= 0.85
