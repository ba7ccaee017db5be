"""Token shards on disk (docs/TOKENS.md): writer used by the build, `TokenDataset` reader used by training/eval.

    DIR/{split}.bin        uint16 body tokens, pieces concatenated
    DIR/{split}.idx.npy    int64 offsets, n_pieces + 1
    DIR/{split}.meta.jsonl one JSON object per piece (PieceMeta), same order
    DIR/{split}.captions.npy  float16 (n_pieces, K, 384), optional

The writer streams to temporary files and renames them on `close()`, so an interrupted build never leaves a
half-written split that looks complete. Test: `pytest tests/data/test_shards.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from acemusic.errors import InputError
from acemusic.jsonl import read_jsonl
from acemusic.tokenizer.vocab import Vocab

SPLITS = ("train", "val", "test")


class ShardWriter:
    """Append pieces (body tokens + metadata) to one split."""

    def __init__(self, root: str | Path, split: str) -> None:
        self.root, self.split = Path(root), split
        self.root.mkdir(parents=True, exist_ok=True)
        self._bin = open(self._tmp("bin"), "wb")  # noqa: SIM115  closed in close()
        self._meta = open(self._tmp("meta.jsonl"), "w", encoding="utf-8")  # noqa: SIM115
        self.offsets = [0]
        self.n_notes = 0

    def _tmp(self, ext: str) -> Path:
        return self.root / f"{self.split}.{ext}.tmp"

    def add(self, body: np.ndarray, meta: dict) -> None:
        body = np.ascontiguousarray(body, dtype=np.uint16)
        self._bin.write(body.tobytes())
        self._meta.write(json.dumps(meta, ensure_ascii=False) + "\n")
        self.offsets.append(self.offsets[-1] + len(body))
        self.n_notes += int(meta.get("n_notes", 0))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return self.offsets[-1]

    def close(self) -> None:
        self._bin.close()
        self._meta.close()
        np.save(self.root / f"{self.split}.idx.npy.tmp.npy", np.asarray(self.offsets, dtype=np.int64))
        os.replace(self._tmp("bin"), self.root / f"{self.split}.bin")
        os.replace(self._tmp("meta.jsonl"), self.root / f"{self.split}.meta.jsonl")
        os.replace(self.root / f"{self.split}.idx.npy.tmp.npy", self.root / f"{self.split}.idx.npy")


class TokenDataset:
    """Read-only view of one split: `piece(i)` is a memory-mapped slice (no copy), `meta(i)` a dict.

    `captions` is the (n, K, 384) float16 memmap of caption embeddings, or None when the build ran with
    --no-embed. `lengths` gives every piece's token count without touching the tokens.
    """

    def __init__(self, root: str | Path, split: str = "train") -> None:
        self.root, self.split = Path(root), split
        bin_path, idx_path = self.root / f"{split}.bin", self.root / f"{split}.idx.npy"
        for p in (bin_path, idx_path, self.root / "vocab.json"):
            if not p.exists():
                raise InputError(p, "missing: not a dataset directory built by `acemusic data build`")
        self.offsets = np.load(idx_path)
        # np.memmap refuses empty files; an empty split is legal (tiny builds).
        if bin_path.stat().st_size:
            self.tokens = np.memmap(bin_path, dtype=np.uint16, mode="r")
        else:
            self.tokens = np.zeros(0, dtype=np.uint16)
        if len(self.tokens) != self.offsets[-1]:
            raise InputError(bin_path, f"has {len(self.tokens)} tokens but the index says {self.offsets[-1]}")
        cap = self.root / f"{split}.captions.npy"
        self.captions = np.load(cap, mmap_mode="r") if cap.exists() else None
        self.vocab = Vocab.load(self.root / "vocab.json")
        self._meta: list[dict] | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def piece(self, i: int) -> np.ndarray:
        """Body tokens of piece i (uint16 view into the memory map)."""
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return self.tokens[self.offsets[i]: self.offsets[i + 1]]

    def metas(self) -> list[dict]:
        """All metadata, loaded once."""
        if self._meta is None:
            self._meta = read_jsonl(self.root / f"{self.split}.meta.jsonl")
            if len(self._meta) != len(self):
                raise InputError(self.root / f"{self.split}.meta.jsonl", "piece count does not match the index")
        return self._meta

    def meta(self, i: int) -> dict:
        return self.metas()[i]
