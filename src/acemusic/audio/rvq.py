"""Residual vector quantisation (SoundStream / EnCodec style) with EMA codebooks and dead-code restarts.

    rvq = ResidualVQ(RVQConfig(dim=64, n_levels=12, codebook_size=1024))
    out = rvq(z)                       # z: (B, D, T) -> out.quantized (B, D, T), out.codes (B, L, T), out.commit_loss
    z_hat = rvq.decode(out.codes)      # any number of leading levels: codes[:, :4] decodes at a third of the bitrate

Level l quantises what levels 0..l-1 left over, so the first k levels are a coarser code of the same signal and the
bitrate is chosen at decode time by how many levels are kept (`bitrate_bps`). Codebooks are not trained by the
gradient: each keeps an exponential moving average of the vectors assigned to its codes (the EMA "k-means" update of
van den Oord et al. 2017, appendix; EnCodec, Défossez et al. 2022), is initialised from the first batch, and any code
whose EMA usage falls below `dead_threshold` is restarted on a random vector of the current batch's residual, so no
code stays dead. The encoder is pulled toward its codes by the commitment loss; gradients pass the quantiser
straight through. Quantiser dropout (`n_levels` drawn per step in training) makes every prefix of levels decodable.
Test: `pytest tests/audio/test_rvq.py`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from acemusic.errors import InputError


@dataclass
class RVQConfig:
    dim: int = 64  # vector size of every codebook (the encoder's latent size)
    n_levels: int = 12  # 12 levels x 10 bits x 50 frames/s = 6 kbps
    codebook_size: int = 1024
    decay: float = 0.99  # EMA decay of the codebook statistics
    eps: float = 1e-5  # Laplace smoothing of cluster sizes
    dead_threshold: float = 1.0  # EMA assignments per step below which a code is restarted
    quantizer_dropout: float = 1.0  # fraction of training steps that use a random number of levels

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def bits_per_code(self) -> float:
        return math.log2(self.codebook_size)


def bitrate_bps(n_levels: int, codebook_size: int, frame_rate: float) -> float:
    """Bits per second of a code stream: levels x log2(codebook size) x frames per second (no entropy coding)."""
    return n_levels * math.log2(codebook_size) * frame_rate


@dataclass
class RVQOutput:
    quantized: torch.Tensor  # (B, D, T), straight-through: gradients reach the encoder unchanged
    codes: torch.Tensor  # (B, L, T) int64, L = number of levels used
    commit_loss: torch.Tensor  # scalar: mean over used levels of ||residual - sg(code vector)||^2


class EMACodebook(nn.Module):
    """One codebook of `size` vectors of `dim`, updated by EMA of the assigned vectors, not by gradients."""

    def __init__(self, dim: int, size: int, decay: float, eps: float, dead_threshold: float) -> None:
        super().__init__()
        self.size, self.decay, self.eps, self.dead_threshold = size, decay, eps, dead_threshold
        self.register_buffer("embed", torch.randn(size, dim) * 0.01)  # (K, D)
        self.register_buffer("cluster_size", torch.ones(size))  # EMA count of assignments per code
        self.register_buffer("embed_sum", self.embed.clone())  # EMA sum of assigned vectors
        self.register_buffer("initted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("usage", torch.zeros(size))  # assignments since the last reset_usage() (for reports)

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, D) -> (N,) index of the nearest code (Euclidean)."""
        # ||x - e||^2 = ||x||^2 - 2 x.e + ||e||^2; ||x||^2 is the same for every code, so it is left out.
        d = self.embed.pow(2).sum(1)[None, :] - 2.0 * x @ self.embed.t()  # (N, K)
        return d.argmin(dim=1)

    @torch.no_grad()
    def _init_from(self, x: torch.Tensor) -> None:
        """First batch: codes = a few k-means iterations seeded on random batch vectors (EnCodec's kmeans init)."""
        n = x.shape[0]
        idx = torch.randint(0, n, (self.size,), device=x.device) if n < self.size else torch.randperm(n)[: self.size]
        embed = x[idx].clone()
        for _ in range(10):
            assign = (embed.pow(2).sum(1)[None] - 2.0 * x @ embed.t()).argmin(1)
            counts = torch.bincount(assign, minlength=self.size).float()
            sums = torch.zeros_like(embed).index_add_(0, assign, x)
            filled = counts > 0
            embed[filled] = sums[filled] / counts[filled, None]
        self.embed.copy_(embed)
        self.embed_sum.copy_(embed)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    @torch.no_grad()
    def update(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        """EMA step on the batch (x: (N, D) vectors, idx: (N,) their codes), then restart dead codes."""
        onehot_counts = torch.bincount(idx, minlength=self.size).float()
        sums = torch.zeros_like(self.embed).index_add_(0, idx, x)
        self.cluster_size.mul_(self.decay).add_(onehot_counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.size * self.eps) * total
        self.embed.copy_(self.embed_sum / smoothed[:, None])
        dead = self.cluster_size < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead:
            # Restart on vectors the codebook currently serves worst would be ideal; random batch vectors are
            # what EnCodec does and suffice: the new code sits where data is, so it gets assignments next step.
            pick = x[torch.randint(0, x.shape[0], (n_dead,), device=x.device)]
            self.embed[dead] = pick
            self.embed_sum[dead] = pick
            self.cluster_size[dead] = 1.0

    def forward(self, x: torch.Tensor, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, D) -> (code vectors (N, D), indices (N,)). In training, initialises and updates the codebook."""
        if train and not bool(self.initted):
            self._init_from(x.detach())
        idx = self.nearest(x.detach())
        if train:
            self.update(x.detach(), idx)
        self.usage.index_add_(0, idx, torch.ones_like(idx, dtype=self.usage.dtype))
        return F.embedding(idx, self.embed), idx


class ResidualVQ(nn.Module):
    """A stack of `n_levels` EMA codebooks, each quantising the residual the previous ones left."""

    def __init__(self, cfg: RVQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.codebooks = nn.ModuleList(
            EMACodebook(cfg.dim, cfg.codebook_size, cfg.decay, cfg.eps, cfg.dead_threshold)
            for _ in range(cfg.n_levels)
        )

    def _check_levels(self, n: int | None) -> int:
        n = self.cfg.n_levels if n is None else int(n)
        if not 1 <= n <= self.cfg.n_levels:
            raise InputError("levels", f"number of levels must be 1..{self.cfg.n_levels}, got {n}")
        return n

    def forward(self, z: torch.Tensor, n_levels: int | None = None) -> RVQOutput:
        """z: (B, D, T). In training mode with quantizer dropout, `n_levels` (if not given) is drawn in 1..L."""
        if z.dim() != 3 or z.shape[1] != self.cfg.dim:
            raise InputError("latent", f"expected (batch, {self.cfg.dim}, frames), got {tuple(z.shape)}")
        if n_levels is None and self.training and torch.rand(()) < self.cfg.quantizer_dropout:
            n_levels = int(torch.randint(1, self.cfg.n_levels + 1, ()))
        n = self._check_levels(n_levels)
        b, d, t = z.shape
        x = z.permute(0, 2, 1).reshape(b * t, d)  # (N, D), N = B*T
        residual = x
        total = torch.zeros_like(x)
        codes, commit = [], []
        for cb in self.codebooks[:n]:
            q, idx = cb(residual, self.training)
            commit.append(F.mse_loss(residual, q.detach()))
            total = total + q
            residual = residual - q.detach()  # the next level sees what this one missed
            codes.append(idx)
        # Straight-through: forward value = sum of code vectors, gradient w.r.t. z = identity.
        quant = x + (total - x).detach()
        quant = quant.reshape(b, t, d).permute(0, 2, 1)
        codes_t = torch.stack(codes, 0).reshape(n, b, t).permute(1, 0, 2)  # (B, L, T)
        return RVQOutput(quant, codes_t.contiguous(), torch.stack(commit).mean())

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, L, T) with 1 <= L <= n_levels -> latent (B, D, T): the sum of the first L levels' vectors."""
        if codes.dim() != 3:
            raise InputError("codes", f"expected (batch, levels, frames), got shape {tuple(codes.shape)}")
        self._check_levels(codes.shape[1])
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.cfg.codebook_size):
            raise InputError("codes", f"code values must be in 0..{self.cfg.codebook_size - 1}")
        out = 0
        for lvl in range(codes.shape[1]):
            out = out + F.embedding(codes[:, lvl], self.codebooks[lvl].embed)  # (B, T, D)
        return out.permute(0, 2, 1).contiguous()

    @torch.no_grad()
    def reset_usage(self) -> None:
        for cb in self.codebooks:
            cb.usage.zero_()

    @torch.no_grad()
    def usage_report(self) -> list[dict]:
        """Per level: codes used at least once since reset_usage(), and the perplexity of the usage distribution
        (exp of its entropy: equals codebook_size when every code is used equally)."""
        rows = []
        for lvl, cb in enumerate(self.codebooks):
            u = cb.usage
            n = float(u.sum())
            p = u / n if n else u
            ent = float(-(p[p > 0] * p[p > 0].log()).sum()) if n else 0.0
            rows.append({"level": lvl, "used": int((u > 0).sum()), "size": cb.size, "perplexity": math.exp(ent),
                         "assignments": int(n)})
        return rows
