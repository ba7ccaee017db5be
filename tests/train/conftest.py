"""A tiny real dataset for the trainer tests, built once per session from the music21 corpus.

Pieces: Bach chorales (polyphonic), Essen folk tunes (monophonic) and one synthesized band piece with drums
(multi-instrument), converted by the data pipeline's own functions and written with ShardWriter. Caption
embeddings are random unit vectors: the trainer only moves them around, their meaning does not matter here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CHORALES = ("bach/bwv66.6.mxl", "bach/bwv1.6.mxl", "bach/bwv10.7.mxl", "bach/bwv101.7.mxl", "bach/bwv102.7.mxl")
FOLK = ("essenFolksong/altdeu10.abc", 0, 10)  # file, first tune, stop


def band_score():
    """Eight 4/4 bars of piano chords, bass and drums at 120 qpm (tpq 12)."""
    from symusic import Note, Score, Tempo, TimeSignature, Track

    s = Score(12)
    piano, bass, drums = Track("piano", 0, False), Track("bass", 33, False), Track("drums", 0, True)
    for bar in range(8):
        t0 = bar * 48
        for k, p in enumerate((60, 64, 67)):
            piano.notes.append(Note(t0, 24, p + (bar % 4) * 2, 80 + k))
        bass.notes.append(Note(t0, 48, 36 + (bar % 4) * 2, 90))
        for beat in range(4):
            drums.notes.append(Note(t0 + beat * 12, 3, 36 if beat % 2 == 0 else 38, 100))
    s.tracks.extend([piano, bass, drums])
    s.time_signatures.append(TimeSignature(0, 4, 4))
    s.tempos.append(Tempo(0, 120.0))
    return s


def _pieces(tok) -> list[tuple[np.ndarray, dict]]:
    from acemusic.data.captions import make_captions
    from acemusic.data.corpus import Task, convert_task, music21_root, piece_meta

    root = music21_root()
    out: list[tuple[np.ndarray, dict]] = []
    tasks = [Task("m21", str(root / rel), rel, "bach", "bach") for rel in CHORALES]
    rel, a, b = FOLK
    tasks.append(Task("abc", str(root / rel), rel, "essenFolksong", "folk_essen", a, b))
    for task in tasks:
        pieces, _ = convert_task(task, tok)
        out.extend(pieces)
    score = band_score()
    body = tok.encode_body(score)
    base = dict(id="test:band", source="midi", path="band.mid", collection="test", style="pop")
    out.insert(0, (body.astype(np.uint16), piece_meta(score, body, tok, base).to_dict()))  # first: in train
    for _, meta in out:
        meta["captions"], meta["n_full_captions"] = make_captions(meta)
    return out


def write_dataset(root: Path, pieces: list[tuple[np.ndarray, dict]], val_every: int, tok) -> Path:
    from acemusic.data.shards import ShardWriter

    rng = np.random.default_rng(0)
    writers = {s: ShardWriter(root, s) for s in ("train", "val", "test")}
    caps: dict[str, list[np.ndarray]] = {s: [] for s in writers}
    for j, (body, meta) in enumerate(pieces):
        split = "val" if j % val_every == val_every - 1 else "train"
        writers[split].add(body, meta)
        e = rng.standard_normal((4, 384)).astype(np.float32)
        caps[split].append((e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float16))
    for s, w in writers.items():
        w.close()
        arr = np.stack(caps[s]) if caps[s] else np.zeros((0, 4, 384), np.float16)
        np.save(root / f"{s}.captions.npy", arr)
    tok.vocab.save(root / "vocab.json")
    return root


@pytest.fixture(scope="session")
def tok():
    from acemusic.tokenizer import Tokenizer

    return Tokenizer()


@pytest.fixture(scope="session")
def pieces(tok) -> list[tuple[np.ndarray, dict]]:
    return _pieces(tok)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, pieces, tok) -> Path:
    """Dataset directory: every 4th piece goes to val, the rest to train."""
    return write_dataset(tmp_path_factory.mktemp("tinydata"), pieces, 4, tok)
