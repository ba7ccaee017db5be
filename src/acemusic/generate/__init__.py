"""Generation: sampling filters, the token grammar and controls, the cached decoding engine, the prompt parser and
the tasks built on them (see generate/tasks/).

Submodules load on first attribute access, so `from acemusic.generate.prompt import parse_prompt` (no torch) stays
cheap for the CLI's input checks.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Engine": "engine", "Request": "engine", "Step": "engine", "Note": "engine",
    "Controls": "constraints", "Grammar": "constraints", "GrammarState": "constraints",
    "SamplingConfig": "sampling", "sample_next": "sampling", "filter_logits": "sampling", "cfg_combine": "sampling",
    "PromptSpec": "prompt", "parse_prompt": "prompt",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"acemusic.generate.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'acemusic.generate' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
