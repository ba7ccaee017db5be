"""Spectral helpers in plain torch: mel filterbanks, log-mel spectrograms, the multi-scale mel loss, and the two
evaluation metrics the codec benchmark reports (mel distance, SI-SDR).

    mel = log_mel(wave, sr=16000)                  # (B, n_mels, frames), log10 of the magnitude mel, floored
    d = mel_distance(ref, est, sr=16000)           # float: mean |log10 mel(ref) - log10 mel(est)|
    s = si_sdr(ref, est)                           # float dB, scale-invariant SDR (Le Roux et al. 2019)

No torchaudio/librosa dependency: the mel filterbank is the HTK formula (triangles on the mel scale, unit peak),
so training loss and evaluation metric share one definition and are reproducible from this file alone.
Test: `pytest tests/audio/test_codec.py -k spectral`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

LOG_FLOOR = 1e-5  # amplitude floor before log10: -100 dB, below any 16-bit render's noise floor
EVAL_N_FFT, EVAL_HOP, EVAL_MELS = 1024, 256, 80  # the mel-distance metric's one fixed resolution


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=32)
def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular HTK-mel filters with unit peak."""
    fmax = sr / 2 if fmax is None else fmax
    freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - freqs[None]) / np.maximum(hi - mid, 1e-9)
    fb = np.clip(np.minimum(up, down), 0.0, None)
    return torch.from_numpy(fb.astype(np.float32))


@functools.lru_cache(maxsize=32)
def _hann(n: int) -> torch.Tensor:
    return torch.hann_window(n)


def stft_mag(wave: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """wave (B, N) -> magnitude (B, n_fft//2+1, frames), Hann window, centred frames."""
    spec = torch.stft(wave, n_fft, hop, window=_hann(n_fft).to(wave.device), center=True, return_complex=True)
    return spec.abs()


def log_mel(wave: torch.Tensor, sr: int, n_fft: int = EVAL_N_FFT, hop: int = EVAL_HOP,
            n_mels: int = EVAL_MELS, floor: float = LOG_FLOOR) -> torch.Tensor:
    """wave (B, N) or (N,) -> log10(max(mel magnitude, floor)), shape (B, n_mels, frames)."""
    if wave.dim() == 1:
        wave = wave[None]
    fb = mel_filterbank(int(sr), n_fft, n_mels).to(wave.device, wave.dtype)
    mel = fb @ stft_mag(wave, n_fft, hop)
    return torch.log10(mel.clamp_min(floor))


# Training loss: several resolutions so both transients (short windows) and pitch (long windows) are penalised.
MEL_SCALES = ((256, 64, 32), (512, 128, 64), (1024, 256, 80), (2048, 512, 128))  # (n_fft, hop, n_mels)


def multiscale_mel_loss(ref: torch.Tensor, est: torch.Tensor, sr: int,
                        scales: tuple[tuple[int, int, int], ...] = MEL_SCALES) -> torch.Tensor:
    """Mean over scales of L1 between log10 mel spectrograms (DAC-style mel reconstruction loss)."""
    losses = [(log_mel(ref, sr, n, h, m) - log_mel(est, sr, n, h, m)).abs().mean() for n, h, m in scales]
    return torch.stack(losses).mean()


def _as_tensor(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()
    return t.reshape(-1)


@torch.no_grad()
def mel_distance(ref, est, sr: int) -> float:
    """The benchmark's mel distance: mean absolute difference of log10 mel magnitudes (80 bands, 0..sr/2,
    n_fft 1024, hop 256) over the common length. Lower is better; 0 for identical signals."""
    r, e = _as_tensor(ref), _as_tensor(est)
    n = min(len(r), len(e))
    return float((log_mel(r[:n], sr) - log_mel(e[:n], sr)).abs().mean())


@torch.no_grad()
def si_sdr(ref, est, eps: float = 1e-8) -> float:
    """Scale-invariant signal-to-distortion ratio in dB over the common length (zero-mean signals)."""
    r, e = _as_tensor(ref).double(), _as_tensor(est).double()
    n = min(len(r), len(e))
    r, e = r[:n] - r[:n].mean(), e[:n] - e[:n].mean()
    alpha = (e @ r) / (r @ r + eps)
    target = alpha * r
    noise = e - target
    return float(10.0 * math.log10((target @ target + eps) / (noise @ noise + eps)))
