"""Checkpoints: fp16 save -> load round trip, meta kept, every broken checkpoint is a clear InputError.

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/model/test_checkpoint.py -q
"""

from __future__ import annotations

import json
import socket

import pytest
import torch

from acemusic.errors import InputError
from acemusic.model import MusicTransformer, load, save


@pytest.fixture
def model(tiny):
    torch.manual_seed(0)
    return MusicTransformer(tiny).eval()


def test_fp16_round_trip(model, batch, tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("checkpoint loading touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    meta = {"vocab": {"version": 1}, "train": {"steps": 3}}
    save(model, tmp_path / "ck", meta, dtype=torch.float16)
    assert (tmp_path / "ck" / "model.safetensors").is_file()
    loaded, meta2 = load(tmp_path / "ck", expected_vocab_size=model.cfg.vocab_size)
    assert meta2 == meta and loaded.cfg == model.cfg and not loaded.training
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    b = batch(2, 30)
    with torch.no_grad():
        ref, out = model(**b), loaded(**b)
    assert torch.allclose(ref, out, atol=2e-2)
    # Exactly the original weights rounded to fp16.
    rounded = {k: v.half().float() for k, v in model.state_dict().items()}
    assert all(torch.equal(rounded[k], v) for k, v in loaded.state_dict().items())
    # fp32 save is lossless; loading in bf16 gives bf16 parameters.
    save(model, tmp_path / "f32")
    assert torch.equal(load(tmp_path / "f32")[0](**b), ref)
    assert next(load(tmp_path / "f32", dtype=torch.bfloat16)[0].parameters()).dtype == torch.bfloat16


def test_fp16_small_preset_fits_the_shipping_budget():
    from acemusic.model import ModelConfig, param_count

    assert param_count(ModelConfig.preset("small", 736)) * 2 < 60e6  # bytes in fp16


def test_bad_checkpoints_are_input_errors(model, tmp_path):
    with pytest.raises(InputError, match="no such checkpoint"):
        load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"config\.json"):
        load(tmp_path / "empty")

    ck = save(model, tmp_path / "ck", {})
    with pytest.raises(InputError, match="vocab_size 736 does not match the tokenizer's 800"):
        load(ck, expected_vocab_size=800)

    cfg_path = ck / "config.json"
    doc = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**doc, "model": {**doc["model"], "d_model": 96}}))
    with pytest.raises(InputError, match="do not match"):
        load(ck)
    cfg_path.write_text(json.dumps({**doc, "format_version": 99}))
    with pytest.raises(InputError, match="newer"):
        load(ck)
    cfg_path.write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        load(ck)
    cfg_path.write_text(json.dumps(doc))
    (ck / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(InputError, match="unreadable weights"):
        load(ck)
    (ck / "model.safetensors").unlink()
    with pytest.raises(InputError, match="missing weights"):
        load(ck)
