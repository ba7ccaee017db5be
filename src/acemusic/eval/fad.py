"""Fréchet audio distance (Kilgour et al. 2019, "Fréchet Audio Distance") between two sets of audio, with a
pluggable embedder.

    res = fad_dirs("renders/generated", "renders/test")                   # classic features, B is the reference
    res = fad_dirs(a, b, embedder=get_embedder("align"))                  # the shared symbolic-audio embedding
    frechet_distance(mu_a, cov_a, mu_b, cov_b)                            # the formula alone

FAD fits a Gaussian to each set's embeddings and reports
    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)),
0 for identical distributions, growing as they part. Like FID it is biased upward for small sets (a finite-sample
estimate of a matrix square root), so only compare numbers computed with the same embedder, reference set and set
sizes. Embedders turn one mono clip into (n_segments, d) vectors; every segment of every file is a sample.

`classic` (the default): no learned weights, librosa features of 22.05 kHz mono, 2048-point frames, hop 512:
  20 MFCCs (of a 128-band log-mel spectrum), 12 chroma (STFT), 7 spectral-contrast bands, and log spectral centroid,
  log bandwidth, log roll-off (85%), flatness, zero-crossing rate, RMS in dB: 45 values per frame,
  summarised per 1 s segment (non-overlapping) by their mean and standard deviation: 90 dimensions.
  Silent segments (peak below -60 dBFS: render tails) are dropped. The features live on very different scales
  (MFCC 0 spans hundreds, flatness one), so before the distance every dimension is divided by its standard
  deviation over the reference set B: each feature counts about equally, and FADs against the same reference are
  comparable (the distance is then not symmetric in A and B).
`align`: the audio encoder of the shared symbolic-audio embedding (acemusic.audio.align, checkpoint
  checkpoints/acemusic-align): one 128-d unit vector per 6 s window.
The reference-std scaling is applied for every embedder (`fad_dirs`), so numbers of both embedders are on a
similar, unitless scale; `fad_from_embeddings(..., standardize=False)` gives the raw distance.

Test: `pytest tests/audio/test_fad.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from acemusic.errors import InputError

MIN_FILES = 2
SEGMENT_SILENCE = 1e-3  # -60 dBFS


class Embedder(Protocol):
    """Audio -> (n_segments, dim) float vectors."""

    name: str
    sr: int

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray: ...


def frechet_distance(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu_a, cov_a) and N(mu_b, cov_b). A near-singular product gets `eps` added to
    both diagonals (as pytorch-fid does); tiny imaginary parts of sqrtm from round-off are dropped."""
    from scipy import linalg

    mu_a, mu_b = np.atleast_1d(mu_a).astype(np.float64), np.atleast_1d(mu_b).astype(np.float64)
    cov_a, cov_b = np.atleast_2d(cov_a).astype(np.float64), np.atleast_2d(cov_b).astype(np.float64)
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (len(mu_a), len(mu_a)):
        raise ValueError(f"shape mismatch: mu {mu_a.shape} / {mu_b.shape}, cov {cov_a.shape} / {cov_b.shape}")
    diff = mu_a - mu_b
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        off = np.eye(len(mu_a)) * eps
        covmean = linalg.sqrtm((cov_a + off) @ (cov_b + off))
    covmean = np.real(covmean)
    return float(max(0.0, diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean)))


def gaussian(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of samples x (n, d)."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least 2 samples of shape (n, d), got {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def fad_from_embeddings(a: np.ndarray, b: np.ndarray, standardize: bool = True) -> float:
    """FAD between sample sets a (n_a, d) and b (n_b, d); `standardize` divides every dimension by its standard
    deviation over b (the reference) first."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings must be (n, d) with the same d, got {a.shape} and {b.shape}")
    if standardize:
        scale = b.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        a, b = a / scale, b / scale
    return frechet_distance(*gaussian(a), *gaussian(b))


# ---- embedders ---------------------------------------------------------------------------------------------------
class ClassicEmbedder:
    """Hand-made spectral features, 1 s segments, mean + std: 90 dims (see the module docstring)."""

    name = "classic"
    sr = 22050
    n_fft = 2048
    hop = 512
    segment_seconds = 1.0

    def frame_features(self, y: np.ndarray) -> np.ndarray:
        """(n_frames, 45) per-frame features of mono audio at `self.sr`."""
        import librosa

        sr, n_fft, hop = self.sr, self.n_fft, self.hop
        spec = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)) ** 2  # (1 + n_fft/2, T) power
        mel = librosa.feature.melspectrogram(S=spec, sr=sr, n_mels=128)
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20)
        mag = np.sqrt(spec)
        chroma = librosa.feature.chroma_stft(S=spec, sr=sr)
        contrast = librosa.feature.spectral_contrast(S=mag, sr=sr)
        tiny = 1e-6
        centroid = np.log(librosa.feature.spectral_centroid(S=mag, sr=sr) + 1.0)
        bandwidth = np.log(librosa.feature.spectral_bandwidth(S=mag, sr=sr) + 1.0)
        rolloff = np.log(librosa.feature.spectral_rolloff(S=mag, sr=sr) + 1.0)
        flatness = librosa.feature.spectral_flatness(S=mag)
        zcr = librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop)
        rms = 20 * np.log10(librosa.feature.rms(S=mag, frame_length=n_fft) + tiny)
        n = min(f.shape[1] for f in (mfcc, chroma, contrast, centroid, zcr, rms))
        feats = [mfcc, chroma, contrast, centroid, bandwidth, rolloff, flatness, zcr, rms]
        return np.concatenate([f[:, :n] for f in feats], axis=0).T.astype(np.float64)

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        from acemusic.audio.io import resample

        y = resample(np.asarray(audio, np.float32), sr, self.sr)
        seg = int(self.segment_seconds * self.sr)
        if len(y) < seg:
            y = np.pad(y, (0, seg - len(y)))
        frames = self.frame_features(y)
        per = seg // self.hop  # frames per segment
        out = []
        for s in range(len(y) // seg):
            chunk = y[s * seg:(s + 1) * seg]
            if np.abs(chunk).max(initial=0.0) < SEGMENT_SILENCE:
                continue
            f = frames[s * per:(s + 1) * per]
            if len(f) < 2:
                continue
            out.append(np.concatenate([f.mean(axis=0), f.std(axis=0)]))
        return np.asarray(out, np.float64).reshape(-1, 2 * frames.shape[1])


class AlignEmbedder:
    """The audio encoder of the shared symbolic-audio embedding (acemusic.audio.align): one unit-norm vector per
    `segment_seconds` window of each clip (non-overlapping; silent windows dropped; a clip shorter than one window
    is one segment). The encoder was trained on excerpts of a few bars (up to 12 s), hence 6 s windows."""

    name = "align"
    segment_seconds = 6.0

    def __init__(self, checkpoint: str | Path | None = None) -> None:
        try:
            from acemusic.audio import align
        except ImportError as e:
            raise InputError("--embedder align", f"the shared audio embedding is not available ({e})") from None
        self._align = align
        self.model, _ = align.load_align(checkpoint)  # InputError when no checkpoint is installed
        self.sr = int(self.model.cfg.sr)

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        from acemusic.audio.io import resample

        y = resample(np.asarray(audio, np.float32), sr, self.sr)
        seg = int(self.segment_seconds * self.sr)
        windows = [y[i:i + seg] for i in range(0, max(len(y) - seg // 2, 1), seg)]  # a short last bit joins none
        windows = [w for w in windows if np.abs(w).max(initial=0.0) >= SEGMENT_SILENCE]
        if not windows:
            return np.zeros((0, int(self.model.cfg.d_embed)))
        return np.asarray(self._align.embed_audio(windows, sr=self.sr, model=self.model), np.float64)


EMBEDDERS: dict[str, Callable[..., Embedder]] = {"classic": ClassicEmbedder, "align": AlignEmbedder}


def get_embedder(name: str, checkpoint: str | Path | None = None) -> Embedder:
    """An embedder by name; `checkpoint` is the weights directory of a learned one (align: default shipped)."""
    if name not in EMBEDDERS:
        raise InputError("--embedder", f"unknown embedder {name!r}; choose one of {', '.join(EMBEDDERS)}")
    if name == "align":
        return AlignEmbedder(checkpoint)
    if checkpoint is not None:
        raise InputError("--checkpoint", f"the {name} embedder has no weights to load")
    return EMBEDDERS[name]()


# ---- folders -----------------------------------------------------------------------------------------------------
@dataclass
class FADResult:
    fad: float
    embedder: str
    n_files_a: int
    n_files_b: int
    n_segments_a: int
    n_segments_b: int
    dim: int
    skipped: list[dict]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def embed_files(files: Sequence[str | Path], embedder: Embedder, max_seconds: float | None = 600.0,
                on_file: Callable[[Path], None] | None = None) -> tuple[np.ndarray, int, list[dict]]:
    """Stack the embeddings of `files`: (segments, dim), the number of files used, and the skipped ones
    (unreadable or silent audio, with the reason)."""
    from acemusic.audio.io import load_audio

    rows: list[np.ndarray] = []
    used, skipped = 0, []
    for f in files:
        try:
            clip = load_audio(f, sr=embedder.sr, duration=max_seconds, max_seconds=None)
            if clip.is_silent:
                raise InputError(f, "silent")
            e = embedder.embed(clip.samples, clip.sr)
            if len(e) == 0:
                raise InputError(f, "no non-silent segment")
        except InputError as err:
            skipped.append({"file": str(f), "reason": err.reason})
        else:
            rows.append(e)
            used += 1
        if on_file is not None:
            on_file(Path(f))
    if not rows:
        return np.zeros((0, 0)), 0, skipped
    return np.concatenate(rows, axis=0), used, skipped


def fad_dirs(dir_a: str | Path, dir_b: str | Path, embedder: Embedder | None = None,
             max_seconds: float | None = 600.0, on_file: Callable[[Path], None] | None = None) -> FADResult:
    """FAD between every audio file under `dir_a` and under `dir_b` (the reference; see `fad_from_embeddings`)."""
    from acemusic.audio.io import list_audio

    emb = embedder or ClassicEmbedder()
    sets = []
    skipped: list[dict] = []
    for d in (dir_a, dir_b):
        files = list_audio(d)
        if len(files) < MIN_FILES:
            raise InputError(d, f"needs at least {MIN_FILES} audio files, found {len(files)}")
        x, used, sk = embed_files(files, emb, max_seconds=max_seconds, on_file=on_file)
        skipped += sk
        if used < MIN_FILES or len(x) < 2:
            raise InputError(d, f"only {used} usable audio files ({len(sk)} skipped)")
        sets.append((x, used))
    (a, na), (b, nb) = sets
    return FADResult(fad_from_embeddings(a, b), emb.name, na, nb, len(a), len(b), a.shape[1], skipped)
