"""TrainConfig: JSON round trip, presets, validation. Run: pytest tests/train/test_config.py"""

from __future__ import annotations

import pytest

from acemusic.model.config import PRESETS as MODEL_PRESETS
from acemusic.train.config import PRESETS, CurriculumStage, TrainConfig


def test_json_round_trip(tmp_path):
    cfg = TrainConfig.preset("small", data="d", out="o", max_steps=77, betas=(0.8, 0.99))
    path = tmp_path / "c.json"
    cfg.save(path)
    back = TrainConfig.load(path)
    assert back == cfg
    assert isinstance(back.betas, tuple) and isinstance(back.curriculum[0], CurriculumStage)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_presets_match_model_presets():
    assert set(PRESETS) == set(MODEL_PRESETS)
    for name in PRESETS:
        cfg = TrainConfig.preset(name)
        assert cfg.model_preset == name
        assert cfg.tokens_per_batch >= cfg.seq_len
    assert TrainConfig.preset("small").seq_len == 512
    assert TrainConfig.preset("large").fsdp and not TrainConfig.preset("small").fsdp


@pytest.mark.parametrize("bad", [
    {"seq_len": 8}, {"tokens_per_batch": 10}, {"min_lr": 1.0, "lr": 0.1}, {"fim_rate": 1.5},
    {"curriculum": [{"until": 0.5, "weights": {"monophonic": 1.0}}]},
    {"curriculum": [{"until": 1.0, "weights": {"choir": 1.0}}]},
    {"grad_accum": 0},
])
def test_validation_rejects(bad):
    with pytest.raises(ValueError):
        TrainConfig.from_dict({**TrainConfig().to_dict(), **bad})


def test_unknown_field_and_preset():
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig.preset("huge")
