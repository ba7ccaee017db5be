"""Audio -> MIDI with Spotify's basic-pitch (Bittner et al., ICASSP 2022) on its bundled ONNX model, and note F1.

    result = transcribe("take.wav")                 # any rate / channels (acemusic.audio.io), -> symusic.Score
    result.score.dump_midi("take.mid")
    f1 = note_f1(reference_score, result.score)     # mir_eval, onset tolerance 50 ms (and with offsets)

basic-pitch ships its weights (`saved_models/icassp_2022/nmp.onnx`); with TensorFlow absent its `Model` runs them
on onnxruntime. We use its windowing, model and note decoding (`window_audio_file`, `Model.predict`,
`unwrap_output`, `model_output_to_notes`) but feed it audio that `load_audio` has checked, resampled to 22.05 kHz
and downmixed, instead of its `librosa.load` of a path, and build the Score ourselves (one track, `program`).
Install: `pip install --no-deps basic-pitch` plus onnxruntime, librosa, "resampy<0.4.3", mir_eval, pretty_midi,
"setuptools<81" (scripts/install.sh); the plain install pulls TensorFlow. The first call in a fresh environment
compiles numba code (~10-30 s, then cached). Test: `pytest tests/audio/test_transcribe.py` (slow-marked parts run it).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acemusic.audio.io import DEFAULT_MAX_SECONDS, Audio, load_audio
from acemusic.errors import InputError

SR = 22050  # basic_pitch.constants.AUDIO_SAMPLE_RATE
TPQ = 480  # the output Score: 120 bpm, so 960 ticks a second (about 1 ms)
TICKS_PER_SECOND = TPQ * 2
ONSET_TOLERANCE = 0.05  # seconds, mir_eval's default and the usual MIREX setting


@dataclass(frozen=True)
class TranscribeConfig:
    """basic-pitch's note-decoding knobs (its defaults) plus the output program."""

    onset_threshold: float = 0.5
    frame_threshold: float = 0.3
    min_note_ms: float = 127.70
    min_hz: float | None = None
    max_hz: float | None = None
    melodia_trick: bool = True
    program: int = 0  # GM program of the output track
    max_seconds: float | None = DEFAULT_MAX_SECONDS

    def check(self) -> None:
        for name in ("onset_threshold", "frame_threshold"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise InputError(f"--{name.replace('_', '-')}", f"must be in (0, 1), got {v}")
        if not 0 < self.min_note_ms <= 2000:
            raise InputError("--min-note-ms", f"must be in (0, 2000], got {self.min_note_ms}")
        if not 0 <= self.program <= 127:
            raise InputError("--program", f"must be a GM program 0..127, got {self.program}")


# Decoding thresholds (onset, frame, min note ms) per instrument family, picked on validation-split FluidSynth
# renders by benchmarks/transcribe.py (benchmarks/results/transcribe.json, "tuning"); "basic-pitch" is the model's
# own default. Tuned on synthetic renders: for real recordings start from the family's preset and adjust.
PRESETS: dict[str, tuple[float, float, float]] = {
    "basic-pitch": (0.5, 0.3, 127.70),
    "piano": (0.8, 0.4, 127.70),
    "woodwinds": (0.6, 0.4, 200.0),
    "strings": (0.8, 0.3, 300.0),  # also best for the choir renders
}


def preset_config(name: str, **overrides) -> TranscribeConfig:
    """A TranscribeConfig from a PRESETS entry; keyword overrides that are not None win."""
    if name not in PRESETS:
        raise InputError("--preset", f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    onset, frame, min_ms = PRESETS[name]
    base = {"onset_threshold": onset, "frame_threshold": frame, "min_note_ms": min_ms}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TranscribeConfig(**base)


@dataclass
class Transcription:
    """The transcribed Score, basic-pitch's note events (start s, end s, pitch, amplitude), and the input audio."""

    score: object  # symusic.Score
    notes: list[tuple[float, float, int, float]]
    audio: Audio


@contextlib.contextmanager
def _quiet():
    """basic-pitch logs a warning per missing backend at import and resampy warns about pkg_resources: hide both."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


_MODELS: dict[int, object] = {}


def _model(threads: int = 0):
    """basic-pitch's Model on the bundled ONNX file, loaded once per thread count (0: onnxruntime's default)."""
    if threads in _MODELS:
        return _MODELS[threads]
    with _quiet():
        try:
            import basic_pitch
            import onnxruntime as ort
            from basic_pitch import FilenameSuffix, build_icassp_2022_model_path
            from basic_pitch.inference import Model
        except ImportError as e:
            raise InputError("transcribe", f"basic-pitch is not installed ({e.name}); run scripts/install.sh or "
                                           "pip install --no-deps basic-pitch onnxruntime librosa 'resampy<0.4.3' "
                                           "mir_eval pretty_midi 'setuptools<81'") from None
        path = build_icassp_2022_model_path(FilenameSuffix.onnx)
        if not Path(path).is_file():
            raise InputError(path, f"basic-pitch {getattr(basic_pitch, '__version__', '')} ships no ONNX model")
        model = Model(path)
        if getattr(model, "model_type", None) != Model.MODEL_TYPES.ONNX:
            raise InputError(path, f"basic-pitch picked {model.model_type}, not its ONNX model")
        if threads:  # same file, same output names; only the session's thread count differs
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = int(threads)
            model.model = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    _MODELS[threads] = model
    return model


def model_output(audio: np.ndarray, threads: int = 0) -> dict[str, np.ndarray]:
    """basic-pitch's frame-level outputs {'note', 'onset', 'contour'} (n_frames, bins) for mono audio at 22.05 kHz.

    Same windowing as basic_pitch.inference.run_inference: 2 s windows overlapping by 30 frames, half the overlap
    trimmed from each side when unwrapping."""
    with _quiet():
        from basic_pitch.constants import AUDIO_N_SAMPLES, FFT_HOP
        from basic_pitch.inference import unwrap_output, window_audio_file

        model = _model(threads)
        n_overlap = 30
        overlap_len = n_overlap * FFT_HOP
        hop = AUDIO_N_SAMPLES - overlap_len
        x = np.concatenate([np.zeros(overlap_len // 2, np.float32), audio.astype(np.float32)])
        out: dict[str, list[np.ndarray]] = {"note": [], "onset": [], "contour": []}
        for window, _ in window_audio_file(x, hop):
            for k, v in model.predict(window[None]).items():
                out[k].append(v)
        return {k: unwrap_output(np.concatenate(v), len(audio), n_overlap) for k, v in out.items()}


def notes_to_score(notes: list[tuple[float, float, int, float]], program: int = 0):
    """basic-pitch note events -> a one-track symusic.Score at 120 bpm (TPQ 480, so ticks are ~1 ms)."""
    from symusic import Note, Score, Tempo, Track

    score = Score(TPQ)
    score.tempos.append(Tempo(0, qpm=120.0))
    track = Track(name="transcription", program=int(program), is_drum=False)
    for start, end, pitch, amp in sorted(notes, key=lambda n: (n[0], n[2])):
        t0 = round(start * TICKS_PER_SECOND)
        dur = max(1, round(end * TICKS_PER_SECOND) - t0)
        vel = int(np.clip(round(127 * float(amp)), 1, 127))
        track.notes.append(Note(t0, dur, int(pitch), vel))
    score.tracks.append(track)
    return score


def transcribe(source: str | Path | Audio, config: TranscribeConfig | None = None, threads: int = 0) -> Transcription:
    """Transcribe an audio file (or an already loaded `Audio`) to a Score. Silent audio is an InputError."""
    cfg = config or TranscribeConfig()
    cfg.check()
    audio = source if isinstance(source, Audio) else load_audio(source, sr=SR, max_seconds=cfg.max_seconds)
    if audio.sr != SR or audio.samples.ndim != 1:
        audio = Audio(load_mono(audio), SR, audio.source, audio.source_sr, audio.source_channels, audio.peak,
                      audio.clipped_fraction, audio.warnings)
    if audio.is_silent:
        raise InputError(audio.source or "audio", "the audio is silent (peak below -80 dBFS): nothing to transcribe")
    if audio.seconds < 0.1:
        raise InputError(audio.source or "audio", f"only {1000 * audio.seconds:.0f} ms of audio: too short")
    notes = decode_notes(model_output(audio.samples, threads=threads), cfg)
    return Transcription(notes_to_score(notes, cfg.program), notes, audio)


def decode_notes(out: dict[str, np.ndarray], cfg: TranscribeConfig) -> list[tuple[float, float, int, float]]:
    """basic-pitch's note decoding of `model_output` frames with `cfg`'s thresholds: (start s, end s, pitch, amp).
    Separate from the model so threshold sweeps run the network once per clip."""
    with _quiet():
        from basic_pitch.constants import FFT_HOP
        from basic_pitch.note_creation import model_output_to_notes

        _, events = model_output_to_notes(
            out, onset_thresh=cfg.onset_threshold, frame_thresh=cfg.frame_threshold,
            min_note_len=int(np.round(cfg.min_note_ms / 1000 * (SR / FFT_HOP))), min_freq=cfg.min_hz,
            max_freq=cfg.max_hz, include_pitch_bends=False, melodia_trick=cfg.melodia_trick)
    return [(float(s), float(e), int(p), float(a)) for s, e, p, a, *_ in events]


def load_mono(audio: Audio) -> np.ndarray:
    """`audio` as mono float32 at 22.05 kHz."""
    from acemusic.audio.io import resample

    x = audio.samples if audio.samples.ndim == 1 else audio.samples.mean(axis=0)
    return resample(x.astype(np.float32), audio.sr, SR)


# ---- scoring -----------------------------------------------------------------------------------------------------
def note_arrays(score, include_drums: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(intervals (n, 2) in seconds, pitches in Hz) of every pitched note of a symusic Score, for mir_eval."""
    sec = score.to("second")
    on, off, hz = [], [], []
    for tr in sec.tracks:
        if tr.is_drum and not include_drums:
            continue
        a = tr.notes.numpy()
        on.append(a["time"])
        off.append(a["time"] + np.maximum(a["duration"], 1e-3))
        hz.append(440.0 * 2.0 ** ((a["pitch"].astype(np.float64) - 69) / 12))
    if not on:
        return np.zeros((0, 2)), np.zeros(0)
    iv = np.stack([np.concatenate(on), np.concatenate(off)], axis=1).astype(np.float64)
    return iv, np.concatenate(hz)


def note_f1(reference, estimate, onset_tolerance: float = ONSET_TOLERANCE) -> dict[str, float]:
    """Note-level precision/recall/F1 (mir_eval.transcription): onset only (pitch within 50 cents, onset within
    `onset_tolerance`), and with offsets (offset within 20% of the reference note or 50 ms, mir_eval's default)."""
    with _quiet():
        import mir_eval

    ref_iv, ref_hz = note_arrays(reference)
    est_iv, est_hz = note_arrays(estimate)
    res = {"n_ref": len(ref_hz), "n_est": len(est_hz)}
    if len(ref_hz) == 0 or len(est_hz) == 0:  # mir_eval warns and returns zeros: make it explicit
        return {**res, "precision": 0.0, "recall": 0.0, "f1": 0.0, "precision_offset": 0.0, "recall_offset": 0.0,
                "f1_offset": 0.0}
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_iv, ref_hz, est_iv, est_hz, onset_tolerance=onset_tolerance, offset_ratio=None)
    po, ro, fo, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_iv, ref_hz, est_iv, est_hz, onset_tolerance=onset_tolerance, offset_ratio=0.2)
    return {**res, "precision": float(p), "recall": float(r), "f1": float(f), "precision_offset": float(po),
            "recall_offset": float(ro), "f1_offset": float(fo)}
