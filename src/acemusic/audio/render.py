"""Render a Score or MIDI file to WAV with FluidSynth and a General MIDI SoundFont.

    render("song.mid", "song.wav")                      # 44.1 kHz, -16 LUFS when pyloudnorm is installed
    render(score, "song.wav", sr=22050, soundfont="my.sf2", normalize=False)

Runs the `fluidsynth` binary (Debian: `apt-get install fluidsynth fluid-soundfont-gm`) in a subprocess: no Python
bindings needed and a crash cannot take the caller down. SoundFont discovery order: the explicit argument,
$ACEMUSIC_SOUNDFONT, then the standard Debian/Ubuntu/Fedora/Homebrew locations. Missing tools raise InputError with
the install hint. Test: `pytest tests/audio/test_render.py`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from acemusic.errors import InputError

ENV_SOUNDFONT = "ACEMUSIC_SOUNDFONT"
SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
    "/opt/homebrew/share/soundfonts/default.sf2",
    "/usr/local/share/soundfonts/default.sf2",
)
TARGET_LUFS = -16.0
DEFAULT_SR = 44100
DEFAULT_GAIN = 0.5  # FluidSynth's default 0.2 is quiet; louder risks clipping before normalisation


def find_soundfont(explicit: str | Path | None = None) -> Path:
    """The SoundFont to use; InputError naming what was tried when there is none."""
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise InputError(p, "no such SoundFont file")
        return p
    env = os.environ.get(ENV_SOUNDFONT)
    if env:
        p = Path(env)
        if not p.is_file():
            raise InputError(p, f"${ENV_SOUNDFONT} points to a missing file")
        return p
    for c in SOUNDFONT_PATHS:
        if Path(c).is_file():
            return Path(c)
    raise InputError("soundfont", "no General MIDI SoundFont found; install one (apt-get install fluid-soundfont-gm) "
                                  f"or pass --soundfont / set ${ENV_SOUNDFONT}")


def find_fluidsynth() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise InputError("fluidsynth", "the fluidsynth program is not installed (apt-get install fluidsynth, "
                                       "brew install fluid-synth)")
    return exe


def _midi_path(source, tmp: Path) -> Path:
    """A MIDI file for `source`: a path is checked and used as is, a symusic.Score is written to `tmp`."""
    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.is_file():
            raise InputError(p, "no such MIDI file")
        with p.open("rb") as f:
            if f.read(4) != b"MThd":
                raise InputError(p, "not a MIDI file (no MThd header)")
        return p
    out = tmp / "in.mid"
    source.dump_midi(str(out))
    return out


def normalize_loudness(path: Path, target_lufs: float = TARGET_LUFS) -> float | None:
    """Scale a WAV in place to `target_lufs` (peak-limited to -1 dBFS). Returns the gain in dB, or None when
    pyloudnorm/soundfile are missing or the audio is silent or too short to measure."""
    try:
        import numpy as np
        import pyloudnorm
        import soundfile as sf
    except ImportError:
        return None
    data, sr = sf.read(str(path), always_2d=True)
    if len(data) < int(0.4 * sr) or not np.any(data):  # BS.1770 needs one 400 ms block
        return None
    loudness = pyloudnorm.Meter(sr).integrated_loudness(data)
    if not np.isfinite(loudness):
        return None
    gain_db = target_lufs - loudness
    out = data * 10.0 ** (gain_db / 20.0)
    peak = float(np.abs(out).max())
    limit = 10.0 ** (-1.0 / 20.0)
    if peak > limit:  # keep quiet pieces from clipping: loudness yields to the peak limit
        out *= limit / peak
        gain_db += 20.0 * float(np.log10(limit / peak))
    sf.write(str(path), out, sr, subtype="PCM_16")
    return gain_db


def render(source, out: str | Path, sr: int = DEFAULT_SR, soundfont: str | Path | None = None,
           gain: float = DEFAULT_GAIN, normalize: bool = True, timeout: float = 600.0) -> Path:
    """Render a symusic.Score or a MIDI file path to a WAV file at `out`. Returns `out`."""
    if not 8000 <= int(sr) <= 192000:
        raise InputError("--sr", f"sample rate must be 8000..192000, got {sr}")
    exe = find_fluidsynth()
    sf2 = find_soundfont(soundfont)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="acemusic-render-") as d:
        midi = _midi_path(source, Path(d))
        tmp_wav = Path(d) / "out.wav"
        cmd = [exe, "-ni", "-q", "-F", str(tmp_wav), "-T", "wav", "-r", str(int(sr)), "-g", str(gain),
               str(sf2), str(midi)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise InputError(midi, f"fluidsynth took longer than {timeout:.0f} s") from None
        if res.returncode != 0 or not tmp_wav.is_file() or tmp_wav.stat().st_size <= 44:
            msg = (res.stderr or res.stdout or "no output").strip().splitlines()
            raise InputError(midi, f"fluidsynth failed: {msg[-1][:200] if msg else 'no output'}")
        if normalize:
            normalize_loudness(tmp_wav)
        shutil.move(str(tmp_wav), str(out))
    return out
