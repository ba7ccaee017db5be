"""The files every acemusic checkpoint shares: directory/model.safetensors (weights) + directory/config.json.

Writing is atomic (temporary names, then renames), so an interrupted save never leaves a half-written checkpoint.
Reading turns a missing directory or file, an unreadable config or a foreign format into an InputError that names
the file. model/checkpoint.py (the music model), audio/codec.py and audio/align.py each keep their own format name
and config on top of these two functions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from acemusic.errors import InputError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def write(directory: str | Path, tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> Path:
    """Write `tensors` and the config `doc` (which names its "format") to `directory`; returns the directory."""
    from safetensors.torch import save_file

    text = json.dumps(doc, indent=2) + "\n"  # before any file is touched: unserialisable meta fails cleanly
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tmp_w, tmp_c = out / (WEIGHTS + ".tmp"), out / (CONFIG + ".tmp")
    save_file(tensors, str(tmp_w), metadata={"format": doc["format"]})
    tmp_c.write_text(text)
    os.replace(tmp_w, out / WEIGHTS)
    os.replace(tmp_c, out / CONFIG)
    return out


def read_doc(directory: str | Path, fmt: str, kind: str) -> tuple[dict[str, Any], Path]:
    """(config document, weights path) of a checkpoint of format `fmt`; `kind` names it in errors ("codec",
    "alignment")."""
    d = Path(directory)
    if not d.is_dir():
        raise InputError(d, f"no such {kind} checkpoint directory")
    cfg_path, w_path = d / CONFIG, d / WEIGHTS
    article = "an" if kind[:1] in "aeiou" else "a"
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise InputError(p, f"missing: not {article} {kind} checkpoint directory")
    try:
        doc = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(cfg_path, f"unreadable config: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise InputError(cfg_path, f"not an acemusic {kind} checkpoint (format {found!r})")
    return doc, w_path
