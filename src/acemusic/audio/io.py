"""Load any audio file as float32 samples at the sample rate a consumer needs, with the checks bad input deserves.

    clip = load_audio("take.flac", sr=22050)           # mono float32 at 22.05 kHz, whatever the file was
    clip.samples, clip.sr, clip.seconds, clip.warnings

Handling (each case is tested in tests/audio/test_io.py):
- any sample rate: resampled with soxr (librosa's default resampler; scipy's polyphase filter when soxr is absent);
- stereo / multichannel: averaged to mono (`mono=False` keeps the channels, shape (channels, n));
- silence (peak below -80 dBFS): loaded, flagged `is_silent`; consumers decide (transcription refuses it);
- clipping (more than 0.1% of samples at full scale): loaded, a warning in `clip.warnings`;
- absurdly long audio: the length is read from the header first, so a 10-hour file is refused before it is decoded
  (`max_seconds`, default 30 minutes), or cut to an excerpt with `duration=`;
- NaN/inf samples, empty files, zero-length audio, directories, MIDI and other non-audio files: `InputError` with a
  one-line reason.
Formats are libsndfile's (soundfile): WAV, FLAC, OGG Vorbis/Opus, MP3, AIFF and more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from acemusic.errors import InputError

DEFAULT_MAX_SECONDS = 1800.0
SILENCE_PEAK = 1e-4  # -80 dBFS: below 16-bit dither level, nothing audible
CLIP_LEVEL = 0.999  # int16 full scale reads as 32767/32768 = 0.99997
CLIP_FRACTION = 1e-3  # one sample in a thousand at full scale is a clipped recording, not a peak
MIN_SR, MAX_SR = 1000, 384000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")


@dataclass(frozen=True)
class Audio:
    """Decoded audio: `samples` is (n,) mono or (channels, n), float32 in [-1, 1] for integer sources."""

    samples: np.ndarray
    sr: int
    source: str = ""
    source_sr: int = 0
    source_channels: int = 1
    peak: float = 0.0
    clipped_fraction: float = 0.0
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def seconds(self) -> float:
        return self.samples.shape[-1] / self.sr

    @property
    def is_silent(self) -> bool:
        return self.peak < SILENCE_PEAK


def _not_audio_reason(path: Path) -> str:
    """Why libsndfile refused `path`, in words a user can act on."""
    with path.open("rb") as f:
        head = f.read(16)
    if head.startswith(b"MThd"):
        return "is a MIDI file, not audio (render it first: acemusic render)"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "is a damaged or unsupported WAV file"
    return "not a readable audio file (supported: " + ", ".join(e.lstrip(".") for e in AUDIO_EXTENSIONS) + ")"


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample along the last axis. soxr HQ when installed (fast, band-limited), else scipy's polyphase filter."""
    if sr_in == sr_out:
        return x
    try:
        import soxr
    except ImportError:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(sr_in), int(sr_out))
        return resample_poly(x, sr_out // g, sr_in // g, axis=-1).astype(np.float32)
    if x.ndim == 1:
        return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(soxr.resample(x.T, sr_in, sr_out, quality="HQ").T, dtype=np.float32)


def audio_info(path: str | Path):
    """soundfile's header info for `path` (frames, samplerate, channels), or InputError naming the problem."""
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such audio file")
    if p.is_dir():
        raise InputError(p, "is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise InputError(p, "empty file")
    try:
        info = sf.info(str(p))
    except (RuntimeError, sf.LibsndfileError, TypeError):  # libsndfile's "Format not recognised" and friends
        raise InputError(p, _not_audio_reason(p)) from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise InputError(p, "contains no audio samples")
    if not MIN_SR <= info.samplerate <= MAX_SR:
        raise InputError(p, f"implausible sample rate {info.samplerate} Hz")
    return info


def load_audio(path: str | Path, sr: int | None = None, mono: bool = True, offset: float = 0.0,
               duration: float | None = None, max_seconds: float | None = DEFAULT_MAX_SECONDS) -> Audio:
    """Decode `path` (from `offset` s, at most `duration` s), downmix when `mono`, resample to `sr` (None keeps the
    file's rate). Files longer than `max_seconds` are refused unless `duration` cuts an excerpt (None: no limit)."""
    import soundfile as sf

    p = Path(path)
    info = audio_info(p)
    if sr is not None and not 8000 <= int(sr) <= 192000:
        raise InputError("sr", f"target sample rate must be 8000..192000, got {sr}")
    if offset < 0 or (duration is not None and duration <= 0):
        raise InputError(p, f"offset must be >= 0 and duration > 0 (got {offset}, {duration})")
    total = info.frames / info.samplerate
    start = round(offset * info.samplerate)
    if start >= info.frames:
        raise InputError(p, f"offset {offset:.1f} s is past the end ({total:.1f} s)")
    stop = info.frames if duration is None else min(info.frames, start + round(duration * info.samplerate))
    length = (stop - start) / info.samplerate
    if max_seconds is not None and length > max_seconds:
        raise InputError(p, f"{length:.0f} s of audio is over the {max_seconds:.0f} s limit; take an excerpt "
                            "(duration / --duration) or raise the limit (max_seconds / --max-seconds)")
    try:
        data, file_sr = sf.read(str(p), start=start, stop=stop, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise InputError(p, f"could not decode the audio ({str(e).splitlines()[0][:120]})") from None
    if len(data) == 0:
        raise InputError(p, "contains no audio samples")
    if not np.isfinite(data).all():
        raise InputError(p, "contains NaN or infinite samples")
    peak = float(np.abs(data).max())
    clipped = float((np.abs(data) >= CLIP_LEVEL).mean())
    warnings: list[str] = []
    if clipped > CLIP_FRACTION:
        warnings.append(f"{100 * clipped:.1f}% of samples are at full scale (clipped recording)")
    if peak < SILENCE_PEAK:
        warnings.append("the audio is silent (peak below -80 dBFS)")
    if info.samplerate < 16000:
        warnings.append(f"low source sample rate ({info.samplerate} Hz): content above {info.samplerate // 2} Hz "
                        "is missing")
    x = data.mean(axis=1) if mono else np.ascontiguousarray(data.T)  # (n,) or (channels, n)
    target = int(sr) if sr is not None else int(file_sr)
    x = resample(x, int(file_sr), target)
    return Audio(samples=np.ascontiguousarray(x, dtype=np.float32), sr=target, source=str(p), source_sr=int(file_sr),
                 source_channels=int(data.shape[1]), peak=peak, clipped_fraction=clipped, warnings=tuple(warnings))


def list_audio(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Audio files under `folder` (by extension), sorted; InputError when the folder is missing."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(d, "no such folder")
    it = d.rglob("*") if recursive else d.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
