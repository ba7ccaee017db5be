"""Checkpoints: a directory with model.safetensors (weights) and config.json (ModelConfig + free-form meta).

    save(model, "checkpoints/small", {"vocab": vocab.config.to_dict(), "train": {...}}, dtype=torch.float16)
    model, meta = load("checkpoints/small", expected_vocab_size=len(vocab))

Loading reads local files only (never the network) and turns every unusable checkpoint into an InputError that
names the file and the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from acemusic import checkpoint_files
from acemusic.checkpoint_files import CONFIG, WEIGHTS
from acemusic.errors import InputError
from acemusic.model.config import ModelConfig
from acemusic.model.transformer import MusicTransformer

FORMAT = "acemusic-model"
FORMAT_VERSION = 1


def save(model: MusicTransformer, directory: str | Path, meta: dict[str, Any] | None = None,
         dtype: torch.dtype = torch.float32) -> Path:
    """Write directory/model.safetensors (weights cast to `dtype`; float16 for shipping) and directory/config.json.

    Files are written to a temporary name and renamed, so an interrupted save never leaves a half-written checkpoint.
    """
    model = getattr(model, "module", model)  # unwrap DDP / FSDP ...
    model = getattr(model, "_orig_mod", model)  # ... and torch.compile, so the keys stay plain
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model.cfg.to_dict(), "meta": meta or {},
           "dtype": str(dtype).removeprefix("torch.")}
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    return checkpoint_files.write(directory, tensors, doc)


def read_config(directory: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """(ModelConfig, meta) from directory/config.json, without touching the weights."""
    path = Path(directory) / CONFIG
    if not Path(directory).is_dir():
        raise InputError(directory, "no such checkpoint directory")
    if not path.is_file():
        raise InputError(path, "missing: not a checkpoint directory")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(path, f"unreadable checkpoint config ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "model" not in doc:
        raise InputError(path, f"not an {FORMAT} config")
    if doc.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(path, f"format version {doc['format_version']} is newer than this acemusic "
                               f"({FORMAT_VERSION}); upgrade acemusic")
    try:
        cfg = ModelConfig.from_dict(doc["model"])
    except (TypeError, ValueError) as e:
        raise InputError(path, f"invalid model config ({e})") from e
    return cfg, doc.get("meta", {})


def load(directory: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
         expected_vocab_size: int | None = None) -> tuple[MusicTransformer, dict[str, Any]]:
    """Load (model in eval mode, meta). Raises InputError for a missing/corrupt checkpoint or a vocab mismatch."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg, meta = read_config(directory)
    if expected_vocab_size is not None and cfg.vocab_size != expected_vocab_size:
        raise InputError(Path(directory) / CONFIG, f"checkpoint vocab_size {cfg.vocab_size} does not match the "
                                                   f"tokenizer's {expected_vocab_size}")
    wpath = Path(directory) / WEIGHTS
    if not wpath.is_file():
        raise InputError(wpath, "missing weights file")
    try:
        state = load_file(str(wpath), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(wpath, f"unreadable weights ({e})") from e
    # Built on the CPU and overwritten: ~0.15 s of random init for 'small'. Under `torch.device("meta")` the init
    # ops route through Python reference kernels that import torch._dynamo, 1.2 s of every cold start (measured).
    model = MusicTransformer(cfg)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    bad_shape = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or bad_shape:
        raise InputError(wpath, f"weights do not match config.json (missing {missing[:3]}, unexpected "
                                f"{unexpected[:3]}, wrong shape {bad_shape[:3]})")
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, assign=True)
    return model.to(device).eval(), meta
