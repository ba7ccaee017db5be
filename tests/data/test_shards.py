"""ShardWriter / TokenDataset round trip: memory-mapped pieces, metadata, empty splits, missing files."""

from __future__ import annotations

import numpy as np
import pytest

from acemusic.data.shards import ShardWriter, TokenDataset
from acemusic.errors import InputError
from acemusic.tokenizer import Vocab


def _write(root, split, pieces):
    Vocab().save(root / "vocab.json")
    w = ShardWriter(root, split)
    for i, p in enumerate(pieces):
        w.add(np.asarray(p), {"id": f"p{i}", "n_notes": len(p)})
    w.close()


def test_round_trip(tmp_path):
    pieces = [[11, 20, 30], [11], list(range(11, 111))]
    _write(tmp_path, "train", pieces)
    ds = TokenDataset(tmp_path, "train")
    assert len(ds) == 3 and ds.lengths.tolist() == [3, 1, 100]
    for i, p in enumerate(pieces):
        assert ds.piece(i).tolist() == p and ds.meta(i)["id"] == f"p{i}"
    assert ds.piece(-1).tolist() == pieces[-1]
    assert isinstance(ds.piece(0).base, np.memmap) or isinstance(ds.piece(0), np.memmap)  # a view, not a copy
    assert ds.captions is None and len(ds.vocab) == len(Vocab())
    with pytest.raises(IndexError):
        ds.piece(3)
    assert not list(tmp_path.glob("*.tmp*"))


def test_empty_split_and_missing_dir(tmp_path):
    _write(tmp_path, "test", [])
    ds = TokenDataset(tmp_path, "test")
    assert len(ds) == 0 and ds.metas() == []
    with pytest.raises(InputError):
        TokenDataset(tmp_path, "val")
