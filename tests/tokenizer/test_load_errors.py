"""Bad MIDI input gives one clear InputError naming the file. Run: pytest tests/tokenizer -q"""

from __future__ import annotations

import pytest
from symusic import Score, Track

from acemusic.errors import InputError
from acemusic.tokenizer import Tokenizer

tok = Tokenizer()


def test_missing(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        tok.load_score(tmp_path / "nope.mid")


def test_empty(tmp_path):
    p = tmp_path / "empty.mid"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        tok.load_score(p)


def test_not_midi(tmp_path):
    p = tmp_path / "notes.mid"
    p.write_text("this is a text file")
    with pytest.raises(InputError, match="not a MIDI file"):
        tok.load_score(p)


def test_corrupt(tmp_path):
    p = tmp_path / "corrupt.mid"
    p.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\xff\xff garbage")
    with pytest.raises(InputError, match="corrupt MIDI"):
        tok.load_score(p)


def test_no_notes(tmp_path):
    s = Score(480)
    s.tracks.append(Track("empty", 0, False))
    p = tmp_path / "silent.mid"
    s.dump_midi(str(p))
    with pytest.raises(InputError, match="no notes"):
        tok.load_score(p)


def test_directory(tmp_path):
    with pytest.raises(InputError, match="directory"):
        tok.load_score(tmp_path)
