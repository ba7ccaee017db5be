"""TrainConfig: every training knob in one typed dataclass, saved as JSON beside each checkpoint.

Presets mirror the model presets (`ModelConfig.preset`): 'tiny' runs in seconds for tests, 'small' is the shipped
model trained on 2 CPU cores in about 90 minutes, 'base' and 'large' are for GPUs ('large' uses FSDP).
Test: `pytest tests/train/test_config.py`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

POLYPHONY_CLASSES = ("monophonic", "polyphonic", "multi-instrument")


@dataclass
class CurriculumStage:
    """Sampling weights over polyphony classes, used while training progress (step / max_steps) < `until`.

    A weight multiplies the class's natural share (pieces are sampled in proportion to their length), so all-ones
    weights reproduce the corpus distribution and a weight of 0 leaves a class out.
    """

    until: float
    weights: dict[str, float]

    def to_dict(self) -> dict:
        return {"until": self.until, "weights": dict(self.weights)}

    @classmethod
    def from_dict(cls, d: dict) -> CurriculumStage:
        return cls(until=float(d["until"]), weights={str(k): float(v) for k, v in d["weights"].items()})


def default_curriculum() -> list[CurriculumStage]:
    """Monophonic tunes first, then part writing, then the full mix (the last stage must reach 1.0)."""
    return [
        CurriculumStage(0.15, {"monophonic": 1.0, "polyphonic": 0.25, "multi-instrument": 0.1}),
        CurriculumStage(0.45, {"monophonic": 1.0, "polyphonic": 1.0, "multi-instrument": 0.5}),
        CurriculumStage(1.0, {"monophonic": 1.0, "polyphonic": 1.0, "multi-instrument": 1.0}),
    ]


@dataclass
class TrainConfig:
    """Training run configuration. Sizes are global: with N ranks each processes 1/N of every batch."""

    data: str = ""  # dataset directory built by `acemusic data build`
    out: str = "runs/tiny"
    model_preset: str = "tiny"
    # batches
    seq_len: int = 128  # maximum sequence length: conditioning prefix + window of whole bars + EOS
    tokens_per_batch: int = 1024  # global budget of padded tokens per step (batch_size * padded_len <= this)
    # optimisation
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 10
    max_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    grad_accum: int = 1  # micro-batches per step and rank (same global batch, less activation memory)
    row_multiple: int = 2  # batch rows are a multiple of lcm(this, ranks x grad_accum): with a constant value
    # here, 1 and 2 ranks train on identical global batches
    bf16: bool = True  # autocast: CPU bf16 is ~2x faster than fp32 on this machine (AMX / AVX-512 bf16)
    grad_checkpointing: bool = False
    fsdp: bool = False  # shard parameters and optimizer state across ranks (large configs)
    # data sampling and augmentation
    curriculum: list[CurriculumStage] = field(default_factory=default_curriculum)
    transpose_p: float = 0.5  # chance to transpose a window (untransposed ones keep captions that name the key)
    transpose_max: int = 6  # random transposition in [-6, 6] semitones, narrowed to keep pitches in range
    tempo_shift_bins: int = 2  # tempo bins are ~6% apart: +-2 bins ~ +-12%
    program_remap_p: float = 0.3  # chance to remap the instruments of a window to random GM melodic programs
    # conditioning dropout (classifier-free guidance needs the unconditional case trained)
    text_dropout_p: float = 0.1  # drop the caption embedding (null memory)
    tag_dropout_p: float = 0.1  # replace each tag token (Style, Key, Mode, Density) by its *_none value
    uncond_p: float = 0.05  # drop the caption and every tag at once (the exact CFG unconditional input)
    fim_rate: float = 0.0  # fraction of windows rearranged for bar-level fill-in-the-middle (docs/TOKENS.md)
    # evaluation, checkpoints, logging
    eval_interval: int = 50
    eval_windows: int = 16  # fixed validation windows (no augmentation, first caption, no dropout)
    ckpt_interval: int = 50
    log_interval: int = 1
    seed: int = 1234
    num_threads: int = 0  # torch intra-op threads per rank; 0 = leave torch's default

    # ---- serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["curriculum"] = [s.to_dict() for s in self.curriculum]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(float(b) for b in d["betas"])
        if "curriculum" in d:
            d["curriculum"] = [s if isinstance(s, CurriculumStage) else CurriculumStage.from_dict(s)
                               for s in d["curriculum"]]
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_json(Path(path).read_text())

    def replace(self, **changes: Any) -> TrainConfig:
        cfg = replace(self, **changes)
        cfg.validate()
        return cfg

    # ---- checks ---------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError on inconsistent settings (the CLI turns it into an InputError)."""
        if self.seq_len < 32:
            raise ValueError(f"seq_len {self.seq_len} is too short (the conditioning prefix alone is ~10 tokens)")
        if self.tokens_per_batch < self.seq_len:
            raise ValueError(f"tokens_per_batch {self.tokens_per_batch} < seq_len {self.seq_len}")
        if self.grad_accum < 1 or self.row_multiple < 1:
            raise ValueError("grad_accum and row_multiple must be >= 1")
        if self.max_steps < 1 or self.warmup_steps < 0:
            raise ValueError("max_steps must be >= 1 and warmup_steps >= 0")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 <= min_lr <= lr, got min_lr={self.min_lr} lr={self.lr}")
        if not self.curriculum or self.curriculum[-1].until < 1.0:
            raise ValueError("the last curriculum stage must have until >= 1.0")
        untils = [s.until for s in self.curriculum]
        if untils != sorted(untils):
            raise ValueError(f"curriculum stage boundaries must ascend, got {untils}")
        for s in self.curriculum:
            bad = set(s.weights) - set(POLYPHONY_CLASSES)
            if bad or any(w < 0 for w in s.weights.values()) or sum(s.weights.values()) <= 0:
                raise ValueError(f"bad curriculum weights {s.weights} (classes {POLYPHONY_CLASSES}, >= 0, not all 0)")
        for name in ("transpose_p", "program_remap_p", "text_dropout_p", "tag_dropout_p", "uncond_p", "fim_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        if self.transpose_max < 0 or self.tempo_shift_bins < 0:
            raise ValueError("transpose_max and tempo_shift_bins must be >= 0")

    # ---- presets --------------------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """Named configuration; `overrides` replace single fields (e.g. data=..., out=..., max_steps=...)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        d = {**PRESETS[name], "model_preset": name, **overrides}
        return cls.from_dict({**cls().to_dict(), **d})


# Overrides of the dataclass defaults (which are the tiny preset). 'small' and 'mini' share the schedule both shipped
# checkpoints were trained with (3,000 steps: ~20 minutes for mini, ~80 for small on 2 CPU cores).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},
    "small": {
        "seq_len": 512, "tokens_per_batch": 4096, "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 100,
        "max_steps": 3000, "eval_interval": 250, "eval_windows": 64, "ckpt_interval": 100, "log_interval": 10,
        "fim_rate": 0.1,
    },
    "base": {
        "seq_len": 1024, "tokens_per_batch": 65536, "lr": 6e-4, "min_lr": 6e-5, "warmup_steps": 1000,
        "max_steps": 50000, "eval_interval": 1000, "eval_windows": 512, "ckpt_interval": 1000, "log_interval": 20,
    },
    "large": {
        "seq_len": 2048, "tokens_per_batch": 262144, "lr": 3e-4, "min_lr": 3e-5, "warmup_steps": 2000,
        "max_steps": 200000, "eval_interval": 2000, "eval_windows": 1024, "ckpt_interval": 2000,
        "log_interval": 50, "grad_checkpointing": True, "fsdp": True,
    },
}
PRESETS["mini"] = dict(PRESETS["small"])  # the same schedule: a like-for-like comparison of the two sizes
