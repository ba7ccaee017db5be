"""Where acemusic keeps files it can rebuild: ~/.cache/acemusic, or $ACEMUSIC_CACHE."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("ACEMUSIC_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "acemusic"


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary name beside `path` and rename it, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
