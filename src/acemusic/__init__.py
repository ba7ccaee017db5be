"""acemusic: an open music foundation model (tokenizer, hierarchical decoder, tasks, evaluation).

    import acemusic
    bundle = acemusic.load()                                  # the shipped checkpoint, CPU, no network
    score = bundle.compose("melancholic piano, slow, D minor", bars=16, seed=0)
    bundle.save_midi(score, "song.mid")

Names are imported lazily so `import acemusic` (and `acemusic --help`) does not pay for torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load": "acemusic.api",
    "compose": "acemusic.api",
    "Bundle": "acemusic.api",
    "Tokenizer": "acemusic.tokenizer",
    "Conditions": "acemusic.tokenizer",
    "AcemusicError": "acemusic.errors",
    "InputError": "acemusic.errors",
}

__all__ = ["AcemusicError", "Bundle", "Conditions", "InputError", "Tokenizer", "__version__", "compose", "load"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'acemusic' has no attribute {name!r}")
