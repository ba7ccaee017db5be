"""The acemusic audio codec: 16 kHz mono <-> 50 frames/s of residual-VQ codes (0.5 kbps per level, up to 6 kbps).

    codec = Codec(CodecConfig())
    codes = codec.encode(wave)                   # wave (B, N) float in [-1, 1] -> (B, levels, N / 320) int64
    wave_hat = codec.decode(codes[:, :8])        # fewer levels = lower bitrate, same decoder
    codec, meta = load_codec("checkpoints/acemusic-codec")

Shape of the model (why not a SEANet waveform CNN): on a 2-core CPU a waveform encoder/decoder spends almost all of
its compute at the sample rate. Here both halves are convolutional stacks that run at 100 and 50 frames per second
on an STFT (n_fft 640, hop 160): the encoder reads the log magnitude and the power-compressed complex spectrum and
downsamples 2x to the 50 Hz latent; the decoder upsamples 2x and predicts a log magnitude and a phase per bin that an
inverse STFT turns back into samples (Vocos, Siuzdak 2023). ConvNeXt blocks (depthwise conv k7 + MLP) throughout.
Training objective lives in codec_train.py. Test: `pytest tests/audio/test_codec.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from acemusic import checkpoint_files
from acemusic.audio.rvq import ResidualVQ, RVQConfig, bitrate_bps
from acemusic.errors import InputError

FORMAT = "acemusic-codec"
FORMAT_VERSION = 1
# Training-only RVQ state (EMA statistics, usage counters): not shipped, not needed to encode or decode.
_TRAIN_ONLY = ("cluster_size", "embed_sum", "usage", "initted")


@dataclass
class CodecConfig:
    sr: int = 16000
    hop: int = 160  # STFT hop: 100 frames/s; the latent runs at half that
    n_fft: int = 640
    channels: int = 160
    enc_blocks: tuple[int, int] = (2, 3)  # ConvNeXt blocks at 100 Hz, then at 50 Hz
    dec_blocks: tuple[int, int] = (3, 2)  # at 50 Hz, then at 100 Hz
    mlp_ratio: int = 3
    rvq: RVQConfig = field(default_factory=RVQConfig)

    @property
    def frame_hop(self) -> int:
        """Samples per code frame (320 at 16 kHz: 50 frames/s)."""
        return 2 * self.hop

    @property
    def frame_rate(self) -> float:
        return self.sr / self.frame_hop

    def bitrate(self, n_levels: int | None = None) -> float:
        """Bits per second when `n_levels` levels are kept (all by default)."""
        n = self.rvq.n_levels if n_levels is None else n_levels
        return bitrate_bps(n, self.rvq.codebook_size, self.frame_rate)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["enc_blocks"], d["dec_blocks"] = list(self.enc_blocks), list(self.dec_blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CodecConfig:
        d = dict(d)
        rvq = RVQConfig(**d.pop("rvq", {}))
        d["enc_blocks"], d["dec_blocks"] = tuple(d.get("enc_blocks", (2, 3))), tuple(d.get("dec_blocks", (3, 2)))
        return cls(rvq=rvq, **d)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv k7 -> LayerNorm -> MLP -> layer scale, residual. x: (B, C, T)."""

    def __init__(self, dim: int, ratio: int) -> None:
        super().__init__()
        self.dw = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ratio * dim)
        self.fc2 = nn.Linear(ratio * dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), 0.1))  # small layer scale: deep stacks start near identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dw(x).transpose(1, 2)  # (B, T, C)
        h = self.fc2(F.gelu(self.fc1(self.norm(h)))) * self.scale
        return x + h.transpose(1, 2)


class Encoder(nn.Module):
    """STFT features (B, 3 * bins, 2T) -> latent (B, D, T)."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        bins, c = cfg.n_fft // 2 + 1, cfg.channels
        self.inp = nn.Conv1d(3 * bins, c, 3, padding=1)
        self.high = nn.Sequential(*[ConvNeXtBlock(c, cfg.mlp_ratio) for _ in range(cfg.enc_blocks[0])])
        self.down = nn.Conv1d(c, c, 4, stride=2, padding=1)  # 100 Hz -> 50 Hz
        self.low = nn.Sequential(*[ConvNeXtBlock(c, cfg.mlp_ratio) for _ in range(cfg.enc_blocks[1])])
        self.norm = nn.LayerNorm(c)
        self.out = nn.Conv1d(c, cfg.rvq.dim, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = self.low(self.down(self.high(self.inp(feats))))
        return self.out(self.norm(h.transpose(1, 2)).transpose(1, 2))


class Decoder(nn.Module):
    """Latent (B, D, T) -> log magnitude and phase (B, bins, 2T) for the inverse STFT."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        bins, c = cfg.n_fft // 2 + 1, cfg.channels
        self.inp = nn.Conv1d(cfg.rvq.dim, c, 7, padding=3)
        self.low = nn.Sequential(*[ConvNeXtBlock(c, cfg.mlp_ratio) for _ in range(cfg.dec_blocks[0])])
        self.up = nn.ConvTranspose1d(c, c, 4, stride=2, padding=1)  # 50 Hz -> 100 Hz
        self.high = nn.Sequential(*[ConvNeXtBlock(c, cfg.mlp_ratio) for _ in range(cfg.dec_blocks[1])])
        self.norm = nn.LayerNorm(c)
        self.head = nn.Linear(c, 2 * bins)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.high(self.up(self.low(self.inp(z))))
        out = self.head(self.norm(h.transpose(1, 2))).transpose(1, 2)  # (B, 2*bins, 2T)
        logmag, phase = out.chunk(2, dim=1)
        return logmag, phase


class Codec(nn.Module):
    """Encoder + residual VQ + decoder. Waveforms are (B, N) float at cfg.sr; lengths are padded to 320 samples."""

    def __init__(self, cfg: CodecConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or CodecConfig()
        self.encoder = Encoder(self.cfg)
        self.rvq = ResidualVQ(self.cfg.rvq)
        self.decoder = Decoder(self.cfg)
        self.register_buffer("window", torch.hann_window(self.cfg.n_fft), persistent=False)

    # ---- signal <-> features ------------------------------------------------------------------------------
    def _pad(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave[None]
        if wave.dim() != 2:
            raise InputError("audio", f"expected (batch, samples) mono audio, got shape {tuple(wave.shape)}")
        if wave.shape[1] == 0:
            raise InputError("audio", "no samples")
        hop = self.cfg.frame_hop
        return F.pad(wave.float(), (0, (-wave.shape[1]) % hop))

    def _features(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, 3 * bins, N / hop): log magnitude + magnitude^0.3-compressed real and imaginary parts."""
        # Reflect padding (what training used) needs more than n_fft/2 samples; a one-frame input pads with zeros.
        pad_mode = "reflect" if wave.shape[1] > self.cfg.n_fft // 2 else "constant"
        spec = torch.stft(wave, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True, pad_mode=pad_mode,
                          return_complex=True)
        spec = spec[..., :-1]  # centred STFT has N/hop + 1 frames; drop the last so frames = 2 x code frames
        mag = spec.abs()
        comp = spec / mag.clamp_min(1e-5) * mag.pow(0.3)  # keep phase, compress level: quiet bins still count
        return torch.cat([torch.log(mag.clamp_min(1e-5)), comp.real, comp.imag], dim=1)

    def _synth(self, logmag: torch.Tensor, phase: torch.Tensor, n: int) -> torch.Tensor:
        mag = torch.exp(logmag.clamp(max=6.0))  # clamp: an early-training blow-up cannot produce inf
        spec = torch.polar(mag, phase)
        spec = torch.cat([spec, spec[..., -1:]], dim=-1)  # back to N/hop + 1 frames for the centred iSTFT
        return torch.istft(spec, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True, length=n)

    # ---- public -------------------------------------------------------------------------------------------
    def forward(self, wave: torch.Tensor, n_levels: int | None = None):
        """Training/eval pass: (reconstruction (B, N'), RVQOutput). N' = N padded to a multiple of 320."""
        x = self._pad(wave)
        q = self.rvq(self.encoder(self._features(x)), n_levels)
        return self._synth(*self.decoder(q.quantized), x.shape[1]), q

    @torch.no_grad()
    def encode(self, wave: torch.Tensor, n_levels: int | None = None) -> torch.Tensor:
        """(B, N) or (N,) waveform -> (B, n_levels, ceil(N / 320)) int64 codes."""
        x = self._pad(wave)
        return self.rvq(self.encoder(self._features(x)), n_levels or self.cfg.rvq.n_levels).codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, L, T) or (L, T) codes, any 1 <= L <= levels -> (B, T * 320) waveform."""
        if codes.dim() == 2:
            codes = codes[None]
        z = self.rvq.decode(codes.long())
        return self._synth(*self.decoder(z), codes.shape[-1] * self.cfg.frame_hop)


# ---- checkpoints ----------------------------------------------------------------------------------------------
def save_codec(codec: Codec, directory: str | Path, meta: dict[str, Any] | None = None,
               dtype: torch.dtype = torch.float32, inference_only: bool = False) -> Path:
    """directory/model.safetensors + config.json, written under temporary names and renamed. `inference_only`
    drops the RVQ's EMA statistics (what shipping wants: half the codebook bytes)."""
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "codec": codec.cfg.to_dict(), "meta": meta or {},
           "dtype": str(dtype).removeprefix("torch.")}
    state = codec.state_dict()
    if inference_only:
        state = {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in _TRAIN_ONLY}
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).detach().contiguous() for k, v in state.items()}
    return checkpoint_files.write(directory, tensors, doc)


def load_codec(directory: str | Path) -> tuple[Codec, dict[str, Any]]:
    """(Codec in eval mode, float32, meta) from a checkpoint directory; InputError for anything unusable."""
    from safetensors.torch import load_file

    d = Path(directory)
    doc, w_path = checkpoint_files.read_doc(d, FORMAT, "codec")
    try:
        codec = Codec(CodecConfig.from_dict(doc["codec"]))
        state = load_file(str(w_path))
    except Exception as e:
        raise InputError(d, f"cannot load codec weights: {type(e).__name__}: {str(e)[:160]}") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = codec.load_state_dict(state, strict=False)
    missing = [k for k in missing if k.rsplit(".", 1)[-1] not in _TRAIN_ONLY]
    if missing or unexpected:
        raise InputError(w_path, f"weights do not match the config (missing {missing[:3]}, unexpected "
                                 f"{unexpected[:3]})")
    for cb in codec.rvq.codebooks:
        cb.initted.fill_(True)
    return codec.eval(), doc.get("meta", {})
