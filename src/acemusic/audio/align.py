"""The shared symbolic-audio embedding: a token encoder and a log-mel encoder mapped into one unit-norm space,
trained with InfoNCE on the same bars as tokens and as rendered audio (CLAP / CLIP recipe, Radford et al. 2021).

    model, meta = load_align()                                 # checkpoints/acemusic-align
    a = embed_audio(["x.wav", "y.wav"])                        # (2, d) float32, unit norm; arrays + sr work too
    s = embed_symbolic([tokens_x, tokens_y], model)            # (2, d) from body token ids (a few bars)
    sim = s @ a.T                                              # cosine similarity: retrieval in either direction

Symbolic side: token + position embeddings, a small pre-norm transformer encoder, masked mean pool, projection.
Audio side: log-mel (64 bands, 50 frames/s, per-clip standardised so loudness does not matter), a 1-D conv stack
with two 2x downsamplings, masked mean pool, projection. Both end L2-normalised; a learned temperature scales the
cosine logits. Training: align_train.py. `embed_audio` is the audio embedding the FAD code can use.
Test: `pytest tests/audio/test_align.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from acemusic import checkpoint_files
from acemusic.audio.spectral import log_mel
from acemusic.errors import InputError

FORMAT = "acemusic-align"
FORMAT_VERSION = 1
CHECKPOINT_NAME = "acemusic-align"


@dataclass
class AlignConfig:
    vocab_size: int = 736
    d_sym: int = 128
    sym_layers: int = 2
    sym_heads: int = 4
    max_tokens: int = 256  # longer segments are truncated (4 bars of a chorale are ~200 tokens)
    sr: int = 16000
    n_fft: int = 1024
    hop: int = 320  # 50 mel frames/s
    n_mels: int = 64
    # log floor of the (unnormalised) mel magnitude, ~-88 dB below a full-scale sine (~256): 16-bit quantisation
    # noise and dither sit below it, so they cannot decide the features of quiet passages
    log_floor: float = 1e-2
    audio_channels: int = 96
    audio_layers: int = 4
    max_seconds: float = 10.0
    d_embed: int = 128
    init_temperature: float = 0.07

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AlignConfig:
        return cls(**d)


class SymbolicEncoder(nn.Module):
    """ids (B, T) with PAD = 0 -> (B, d_embed)."""

    def __init__(self, cfg: AlignConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_sym, padding_idx=0)
        self.pos = nn.Embedding(cfg.max_tokens, cfg.d_sym)
        layer = nn.TransformerEncoderLayer(cfg.d_sym, cfg.sym_heads, 4 * cfg.d_sym, dropout=0.1, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, cfg.sym_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_sym)
        self.proj = nn.Linear(cfg.d_sym, cfg.d_embed)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pad = ids == 0  # (B, T)
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))[None]
        h = self.norm(self.encoder(x, src_key_padding_mask=pad))
        keep = (~pad).float()[..., None]
        pooled = (h * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return self.proj(pooled)


class ChannelNorm(nn.Module):
    """LayerNorm over channels of (B, C, F): per frame, so padding frames cannot leak into valid ones."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class AudioEncoder(nn.Module):
    """Standardised log-mel (B, n_mels, F) + valid-frame mask (B, F) -> (B, d_embed). Padding frames are zeroed
    after every layer, so a clip embeds the same alone or padded in a batch."""

    def __init__(self, cfg: AlignConfig) -> None:
        super().__init__()
        c = cfg.audio_channels
        self.inp = nn.Conv1d(cfg.n_mels, c, 5, padding=2)
        # Two stride-2 layers: 50 -> 12.5 frames/s, a beat-scale receptive field.
        self.strides = [2 if i < 2 else 1 for i in range(cfg.audio_layers)]
        self.convs = nn.ModuleList(nn.Conv1d(c, c, 5, stride=s, padding=2) for s in self.strides)
        self.norms = nn.ModuleList(ChannelNorm(c) for _ in self.strides)
        self.proj = nn.Linear(2 * c, cfg.d_embed)

    def forward(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[:, None].float()  # (B, 1, F)
        h = F.gelu(self.inp(mel * m)) * m
        for conv, norm, stride in zip(self.convs, self.norms, self.strides, strict=True):
            if stride > 1:
                m = m[..., ::stride]  # frame j of the output is centred on input frame j * stride
            h = F.gelu(norm(conv(h)))[..., : m.shape[-1]] * m
        mean = h.sum(-1) / m.sum(-1).clamp_min(1.0)
        mx = h.masked_fill(m == 0, -1e4).amax(-1)  # mean for texture, max for salient events
        return self.proj(torch.cat([mean, mx], dim=1))


class AlignModel(nn.Module):
    def __init__(self, cfg: AlignConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or AlignConfig()
        self.symbolic = SymbolicEncoder(self.cfg)
        self.audio = AudioEncoder(self.cfg)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1.0 / self.cfg.init_temperature))))

    def embed_symbolic(self, ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.symbolic(ids), dim=-1)

    def embed_audio(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio(mel, mask), dim=-1)

    def loss(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE over a batch of paired unit embeddings (row i of s belongs with row i of a)."""
        return info_nce(s, a, self.logit_scale.clamp(max=float(np.log(100.0))).exp())


def info_nce(s: torch.Tensor, a: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    logits = scale * s @ a.t()  # (B, B)
    target = torch.arange(len(s), device=s.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def recall_at_k(sim: np.ndarray, k: int) -> float:
    """Fraction of rows whose own column (the diagonal) ranks in the top k of that row."""
    sim = np.asarray(sim)
    own = np.diag(sim)[:, None]
    rank = (sim > own).sum(axis=1)  # strictly better candidates; ties count in the query's favour
    return float((rank < k).mean())


# ---- features -------------------------------------------------------------------------------------------------
def audio_features(wave: np.ndarray | torch.Tensor, cfg: AlignConfig) -> torch.Tensor:
    """Mono wave at cfg.sr -> standardised log-mel (n_mels, frames), cut at cfg.max_seconds."""
    w = torch.as_tensor(np.asarray(wave, dtype=np.float32)).reshape(-1)[: int(cfg.max_seconds * cfg.sr)]
    if len(w) < cfg.n_fft:
        w = F.pad(w, (0, cfg.n_fft - len(w)))
    mel = log_mel(w, cfg.sr, cfg.n_fft, cfg.hop, cfg.n_mels, cfg.log_floor)[0]
    return (mel - mel.mean()) / mel.std().clamp_min(1e-3)


def batch_mels(mels: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (n_mels, F_i) features to (B, n_mels, F_max) with a (B, F_max) validity mask."""
    n = max(m.shape[1] for m in mels)
    out = torch.zeros(len(mels), mels[0].shape[0], n)
    mask = torch.zeros(len(mels), n, dtype=torch.bool)
    for i, m in enumerate(mels):
        out[i, :, : m.shape[1]] = m
        mask[i, : m.shape[1]] = True
    return out, mask


def batch_tokens(seqs: Sequence[Sequence[int]], max_tokens: int) -> torch.Tensor:
    n = min(max_tokens, max(len(s) for s in seqs))
    out = torch.zeros(len(seqs), n, dtype=torch.long)
    for i, s in enumerate(seqs):
        s = list(s)[:n]
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def _read(path: str | Path, sr: int) -> np.ndarray:
    from acemusic.audio.io import load_audio

    return load_audio(path, sr=sr).samples


# ---- public embedding functions -------------------------------------------------------------------------------
def default_align_checkpoint() -> Path:
    here = Path(__file__).resolve().parents[1]
    candidates = [here.parents[1] / "checkpoints" / CHECKPOINT_NAME, here / "checkpoints" / CHECKPOINT_NAME]
    return next((c for c in candidates if (c / checkpoint_files.CONFIG).is_file()), candidates[0])


@torch.no_grad()
def embed_audio(items: Sequence[str | Path | np.ndarray], sr: int | None = None, model: AlignModel | None = None,
                batch_size: int = 32) -> np.ndarray:
    """(n, d) unit-norm audio embeddings of WAV paths or mono arrays (arrays at `sr`, resampled if it differs
    from the model's). Clips longer than cfg.max_seconds are cut there."""
    model = model if model is not None else load_align()[0]
    cfg = model.cfg
    if len(items) == 0:
        raise InputError("audio", "no audio given")
    feats = []
    for it in items:
        if isinstance(it, (str, Path)):
            wave = _read(it, cfg.sr)
        else:
            wave = np.asarray(it, dtype=np.float32).reshape(-1)
            if sr is None:
                raise InputError("sr", "pass the sample rate of the arrays")
            if wave.size == 0 or not np.all(np.isfinite(wave)):
                raise InputError("audio", "empty array or non-finite samples")
            if sr != cfg.sr:
                from acemusic.audio.io import resample

                wave = resample(wave, int(sr), cfg.sr)
        feats.append(audio_features(wave, cfg))
    model.eval()
    out = []
    for i in range(0, len(feats), batch_size):
        mel, mask = batch_mels(feats[i: i + batch_size])
        out.append(model.embed_audio(mel, mask))
    return torch.cat(out).numpy()


@torch.no_grad()
def embed_symbolic(segments: Sequence[Sequence[int]], model: AlignModel | None = None,
                   batch_size: int = 64) -> np.ndarray:
    """(n, d) unit-norm embeddings of body-token segments (a few bars, e.g. Tokenizer.slice_bars output)."""
    model = model if model is not None else load_align()[0]
    if len(segments) == 0 or any(len(s) == 0 for s in segments):
        raise InputError("tokens", "empty token segment")
    hi = max(max(s) for s in segments)
    if hi >= model.cfg.vocab_size or min(min(s) for s in segments) < 0:
        raise InputError("tokens", f"token ids must be in 0..{model.cfg.vocab_size - 1}")
    model.eval()
    out = [model.embed_symbolic(batch_tokens(segments[i: i + batch_size], model.cfg.max_tokens))
           for i in range(0, len(segments), batch_size)]
    return torch.cat(out).numpy()


# ---- checkpoints ----------------------------------------------------------------------------------------------
def save_align(model: AlignModel, directory: str | Path, meta: dict[str, Any] | None = None,
               dtype: torch.dtype = torch.float32) -> Path:
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "align": model.cfg.to_dict(), "meta": meta or {},
           "dtype": str(dtype).removeprefix("torch.")}
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    return checkpoint_files.write(directory, tensors, doc)


def load_align(directory: str | Path | None = None) -> tuple[AlignModel, dict[str, Any]]:
    """(AlignModel in eval mode, float32, meta); default: the shipped checkpoints/acemusic-align."""
    from safetensors.torch import load_file

    d = Path(directory) if directory is not None else default_align_checkpoint()
    doc, w_path = checkpoint_files.read_doc(d, FORMAT, "alignment")
    try:
        model = AlignModel(AlignConfig.from_dict(doc["align"]))
        state = {k: v.float() for k, v in load_file(str(w_path)).items()}
        model.load_state_dict(state)
    except Exception as e:
        raise InputError(d, f"cannot load alignment weights: {type(e).__name__}: {str(e)[:160]}") from None
    return model.eval(), doc.get("meta", {})
