"""Audio loading: resampling, downmix, silence, clipping, over-long and non-audio input (acemusic.audio.io).

Run: `.venv/bin/python -m pytest tests/audio/test_io.py -q`. Needs soundfile (the `audio` extra); synthetic files only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acemusic.audio.io import audio_info, list_audio, load_audio, resample
from acemusic.errors import InputError

sf = pytest.importorskip("soundfile")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "midi"


def _tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()])


def test_resample_and_downmix_keep_pitch_and_length(tmp_path):
    left, right = _tone(440, 2.0, 44100, 0.6), _tone(440, 2.0, 44100, 0.2)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    clip = load_audio(path, sr=22050)
    assert clip.sr == 22050 and clip.samples.ndim == 1 and clip.samples.dtype == np.float32
    assert clip.source_sr == 44100 and clip.source_channels == 2
    assert abs(clip.seconds - 2.0) < 1e-3
    assert abs(_peak_hz(clip.samples, 22050) - 440) < 2
    # The downmix is the channel mean: amplitude (0.6 + 0.2) / 2.
    assert abs(np.abs(clip.samples[2000:-2000]).max() - 0.4) < 0.01
    assert clip.warnings == () and not clip.is_silent
    both = load_audio(path, mono=False)
    assert both.samples.shape == (2, 88200) and both.sr == 44100
    # Upsampling a low-rate file works too and says what is missing.
    low = tmp_path / "low.wav"
    sf.write(str(low), _tone(300, 1.0, 8000), 8000)
    up = load_audio(low, sr=22050)
    assert abs(up.seconds - 1.0) < 1e-3 and abs(_peak_hz(up.samples, 22050) - 300) < 3
    assert any("low source sample rate" in w for w in up.warnings)
    assert resample(np.ones(100, np.float32), 16000, 16000) is not None


def test_silence_and_clipping_are_flagged(tmp_path):
    sil = tmp_path / "silence.wav"
    sf.write(str(sil), np.zeros(16000, np.float32), 16000)
    clip = load_audio(sil)
    assert clip.is_silent and any("silent" in w for w in clip.warnings)
    hot = tmp_path / "clipped.wav"
    sf.write(str(hot), np.clip(_tone(220, 1.0, 16000, 3.0), -1, 1), 16000, subtype="PCM_16")
    clip = load_audio(hot)
    assert clip.clipped_fraction > 0.1 and any("clipped" in w for w in clip.warnings)
    assert not clip.is_silent


def test_long_audio_is_refused_before_decoding_or_cut(tmp_path):
    path = tmp_path / "long.flac"
    sf.write(str(path), _tone(440, 12.0, 8000), 8000)
    with pytest.raises(InputError, match="over the 10 s limit"):
        load_audio(path, max_seconds=10)
    part = load_audio(path, max_seconds=10, offset=1.0, duration=2.5)
    assert abs(part.seconds - 2.5) < 1e-3
    assert abs(load_audio(path, max_seconds=None).seconds - 12.0) < 1e-3
    with pytest.raises(InputError, match="past the end"):
        load_audio(path, offset=20.0)


def test_bad_files_raise_input_errors(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    damaged = tmp_path / "damaged.wav"
    good = tmp_path / "good.wav"
    sf.write(str(good), _tone(440, 0.5, 16000), 16000)
    damaged.write_bytes(good.read_bytes()[:20])
    nan = tmp_path / "nan.wav"
    x = _tone(440, 0.5, 16000)
    x[100] = np.nan
    sf.write(str(nan), x, 16000, subtype="FLOAT")
    cases = {
        tmp_path / "missing.wav": "no such audio file",
        tmp_path: "is a directory",
        empty: "empty file",
        text: "not a readable audio file",
        FIXTURES / "bach_bwv66_6.mid": "is a MIDI file",
        damaged: "WAV",
        nan: "NaN",
    }
    for path, reason in cases.items():
        with pytest.raises(InputError, match=reason):
            load_audio(path)
    with pytest.raises(InputError, match="target sample rate"):
        load_audio(good, sr=100)
    assert audio_info(good).samplerate == 16000
    assert list_audio(tmp_path) == sorted([damaged, empty, good, nan, text])
