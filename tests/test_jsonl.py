"""The shared JSON Lines reader: rows, blank lines, a missing file, a broken line."""

from __future__ import annotations

import pytest

from acemusic.errors import InputError
from acemusic.jsonl import read_jsonl


def test_read_jsonl(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}]
    with pytest.raises(InputError, match="not a render folder"):
        read_jsonl(tmp_path / "none.jsonl", "missing: not a render folder")
    p.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(InputError, match="line 2 is not JSON"):
        read_jsonl(p)
