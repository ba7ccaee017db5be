"""Training: TrainConfig presets, the loop, AdamW + schedule, batching, torchrun support. See loop.py.

    from acemusic.train import TrainConfig, train
    train(TrainConfig.preset("mini", data="data/m21", out="runs/mini"))

`train` and `TrainResult` load torch lazily, so importing the config stays cheap for the CLI.
"""

from __future__ import annotations

from typing import Any

from acemusic.train.config import PRESETS, CurriculumStage, TrainConfig
from acemusic.train.optim import lr_at

__all__ = ["PRESETS", "CurriculumStage", "TrainConfig", "TrainResult", "lr_at", "train"]


def __getattr__(name: str) -> Any:
    if name in ("train", "TrainResult"):
        from acemusic.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'acemusic.train' has no attribute {name!r}")
