"""JSON Lines: the one reader behind every `*.jsonl` index acemusic writes (render manifests, excerpt indexes,
dataset metadata, prompt sets)."""

from __future__ import annotations

import json
from pathlib import Path

from acemusic.errors import InputError


def read_jsonl(path: str | Path, missing: str = "missing") -> list[dict]:
    """One object per non-empty line. A missing file is an InputError with `missing` as the reason; a line that
    is not JSON is an InputError naming its line number."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, missing)
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise InputError(path, f"line {n} is not JSON ({e.msg})") from e
    return rows
