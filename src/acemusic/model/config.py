"""ModelConfig: every number that decides the shape of a MusicTransformer, saved beside its weights.

Named presets (`ModelConfig.preset("small", vocab_size)`) are the sizes we train and ship; `param_count(cfg)` counts
parameters without allocating them (meta device), `preset_param_counts(vocab_size)` lists them all.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

MLP_KINDS = ("swiglu", "gelu")
NORM_KINDS = ("layernorm", "rmsnorm")


@dataclass
class ModelConfig:
    vocab_size: int = 736
    d_model: int = 384
    n_layer: int = 8
    n_head: int = 6
    n_kv_head: int = 2  # grouped-query attention: n_head // n_kv_head query heads share one key/value head
    d_ff: int = 1024  # hidden width of the MLP (SwiGLU: 8/3 * d_model keeps the parameter count of a 4x GELU MLP)
    mlp: str = "swiglu"  # "swiglu" | "gelu"
    # Block norms. RMSNorm is the usual choice, but torch 2.13 on CPU has no fused RMSNorm backward: fwd+bwd costs
    # ~2.5x a LayerNorm (weight only, fused kernel), measured with benchmarks/model_speed.py. CPU presets use LN.
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    max_bars: int = 512  # size of the bar-index embedding; larger bar indices are clamped to the last row
    max_position: int = 96  # positions inside a bar (ticks; TOKENS.md MAX_BAR_TICKS)
    window: int = 256  # sliding local window: token i attends j when i - j < window ...
    global_tokens: bool = True  # ... or when key j is global (prefix and Bar tokens); False = plain sliding window
    rope_base: float = 10000.0
    d_text: int = 384  # sentence embedding width (all-MiniLM-L6-v2)
    n_memory: int = 4  # memory vectors projected from the text embedding, attended by cross-attention
    cross_attn_every: int = 2  # cross-attention in blocks 0, k, 2k, ... (0 = no cross-attention)
    # Cross-attention heads (of head_dim); 0 = n_head. A few memory vectors need few heads, and narrow q/out
    # projections make cross-attention ~3x cheaper. Configs saved before this field existed load as 0 (full width).
    n_cross_head: int = 0
    dropout: float = 0.0
    tie_embeddings: bool = True
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_head {self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head {self.n_head} is not a multiple of n_kv_head {self.n_kv_head}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")
        if self.mlp not in MLP_KINDS:
            raise ValueError(f"mlp must be one of {MLP_KINDS}, not {self.mlp!r}")
        if self.norm not in NORM_KINDS:
            raise ValueError(f"norm must be one of {NORM_KINDS}, not {self.norm!r}")
        if self.n_cross_head < 0:
            raise ValueError("n_cross_head must be >= 0 (0 = n_head)")
        if self.window < 1 or self.vocab_size < 1 or self.n_layer < 1:
            raise ValueError("window, vocab_size and n_layer must be positive")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def cross_heads(self) -> int:
        return self.n_cross_head or self.n_head

    def has_cross(self, layer: int) -> bool:
        """Whether block `layer` has cross-attention to the condition memory."""
        return self.cross_attn_every > 0 and layer % self.cross_attn_every == 0

    # ---- serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a dict; unknown keys are an error (a checkpoint from a newer format must not half-load)."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    # ---- presets ----------------------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, vocab_size: int, **overrides: Any) -> ModelConfig:
        """A named size: 'tiny' (tests), 'mini' (~4M, the shipped default), 'small' (~16M, shipped too), 'base' (~85M),
        'large' (~300M, GPU)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return replace(cls(vocab_size=vocab_size, **PRESETS[name]), **overrides)


PRESETS: dict[str, dict[str, Any]] = {
    # Tests: runs a forward in milliseconds; the window is short so test sequences cross it.
    "tiny": dict(d_model=64, n_layer=2, n_head=4, n_kv_head=2, d_ff=160, window=16, max_bars=64, n_memory=2,
                 cross_attn_every=1),
    # Trained on 2 CPU cores for ~80 minutes, shipped in fp16 (~30 MB) as the alternative to 'mini'. Shape chosen by
    # measured throughput (benchmarks/model_speed.py): head_dim 64, 3:1 GQA, cross-attention in every other block.
    # n_cross_head=6: the shipped checkpoint was trained with full-width cross-attention; the preset must rebuild
    # exactly that model (2 heads is ~12% faster per step, for the next retraining).
    "small": dict(d_model=384, n_layer=8, n_head=6, n_kv_head=2, d_ff=1024, window=256, n_cross_head=6),
    # The shipped default: a quarter of 'small', trained on the same 10.4M tokens to a lower held-out NLL, ~2x its
    # decoding speed (a forward in ~half the time on CPU, better drafts).
    "mini": dict(d_model=256, n_layer=4, n_head=4, n_kv_head=2, d_ff=640, window=256, n_cross_head=4),
    "base": dict(d_model=768, n_layer=12, n_head=12, n_kv_head=4, d_ff=2048, window=512, n_cross_head=4),
    "large": dict(d_model=1024, n_layer=24, n_head=16, n_kv_head=4, d_ff=3072, window=1024, max_bars=1024,
                  n_cross_head=4),
}


def param_count(cfg: ModelConfig) -> int:
    """Number of parameters of a MusicTransformer built from `cfg` (counted on the meta device: no memory used)."""
    import torch

    from acemusic.model.transformer import MusicTransformer

    with torch.device("meta"):
        model = MusicTransformer(cfg)
    return sum(p.numel() for p in model.parameters())


def preset_param_counts(vocab_size: int) -> dict[str, int]:
    """Parameter count of every preset for a vocabulary size, e.g. {'tiny': 1.2e5, 'small': 1.6e7, ...}."""
    return {name: param_count(ModelConfig.preset(name, vocab_size)) for name in PRESETS}
