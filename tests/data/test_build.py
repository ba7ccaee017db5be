"""End-to-end dataset build on a small slice of the music21 corpus plus the MIDI fixtures (with bad files)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from acemusic.cli.app import app
from acemusic.data.build import BuildConfig, build, split_of
from acemusic.data.shards import SPLITS, TokenDataset
from acemusic.tokenizer import Tokenizer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "midi"
ONLY = "bach/bwv66.6.mxl,essenFolksong/teste.abc,josquin/milleRegrets.abc"
N_MUSIC21 = 1 + 8 + 1  # a chorale, an 8-tune opus file, a 4-voice Josquin piece (one piece)


@pytest.fixture(scope="module")
def built(tmp_path_factory, monkeypatch_module):
    """One real CLI build (2 worker processes, captions embedded)."""
    out = tmp_path_factory.mktemp("ds")
    monkeypatch_module.setenv("ACEMUSIC_CACHE", str(out / "textcache"))
    r = CliRunner().invoke(app, ["data", "build", "--out", str(out), "--midi-dir", str(FIXTURES), "--only", ONLY,
                                 "--workers", "2"])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _all(out: Path) -> list[tuple[str, np.ndarray, dict]]:
    rows = []
    for s in SPLITS:
        ds = TokenDataset(out, s)
        rows += [(s, ds.piece(i), ds.meta(i)) for i in range(len(ds))]
    return rows


def test_build_outputs_and_skips(built):
    stats = json.loads((built / "stats.json").read_text())
    rows = _all(built)
    ids = [m["id"] for _, _, m in rows]
    assert len(ids) == len(set(ids))
    music21_ids = [i for i in ids if i.startswith("music21:")]
    assert len(music21_ids) == N_MUSIC21
    assert {"midi:band.mid", "midi:nested/folk_melody.midi"} <= set(ids)
    assert sum(v["pieces"] for v in stats["splits"].values()) == len(rows)
    assert sum(v["tokens"] for v in stats["splits"].values()) == sum(len(b) for _, b, _ in rows)
    # bad files are skipped with a reason each, never a crash
    log = [json.loads(line) for line in (built / "build_log.jsonl").read_text().splitlines()]
    reasons = {r["path"]: r["reason"] for r in log if r["reason"] != "duplicate"}
    assert reasons == {
        "corrupt.mid": reasons["corrupt.mid"], "empty.mid": "empty file (0 bytes)",
        "not_midi.mid": "not a MIDI file (no MThd header)", "no_notes.mid": "MIDI file has no notes",
    }
    assert reasons["corrupt.mid"].startswith("corrupt MIDI")
    assert stats["skips"] == {"corrupt MIDI": 1, "empty file": 1, "not a MIDI file": 1, "MIDI file has no notes": 1}
    # the MIDI copy of bwv66.6 and the MIDI export of the same chorale are exact duplicates of the music21 piece
    dups = [r for r in log if r["reason"] == "duplicate"]
    assert stats["duplicates"] == len(dups) == 2
    assert {d["of"] for d in dups} == {"music21:bach/bwv66.6.mxl"}


def test_no_duplicate_bodies_and_stable_splits(built):
    rows = _all(built)
    digests = Counter(hashlib.sha1(np.asarray(b).tobytes()).hexdigest() for _, b, _ in rows)
    assert max(digests.values()) == 1
    for split, _, meta in rows:
        assert split_of(meta["id"]) == split
    # the split is a pure function of the id, identical in a fresh interpreter (no salted hash())
    ids = [m["id"] for _, _, m in rows]
    code = ("import sys, json; from acemusic.data.build import split_of; "
            "print(json.dumps([split_of(i) for i in json.loads(sys.argv[1])]))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(ids)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [split_of(i) for i in ids]


def test_split_fractions():
    c = Counter(split_of(f"music21:x/{i}.abc#1") for i in range(20000))
    assert abs(c["train"] / 20000 - 0.94) < 0.01 and abs(c["val"] / 20000 - 0.03) < 0.006


def test_metadata_and_tokens(built):
    tok = Tokenizer()
    for _, body, m in _all(built):
        assert body.dtype == np.uint16 and body[0] == tok.vocab.bar
        assert m["n_tokens"] == len(body) and m["n_bars"] == int((body == tok.vocab.bar).sum())
        assert m["polyphony"] in ("monophonic", "polyphonic", "multi-instrument")
        assert len(m["captions"]) == 4 and m["n_full_captions"] == 2
        assert m["instruments"] == sorted(set(m["instruments"]))
    metas = {m["id"]: m for _, _, m in _all(built)}
    band = metas["midi:band.mid"]
    assert band["instruments"] == [0, 33, 128] and band["polyphony"] == "multi-instrument"
    assert band["tempo"] == 120.0 and band["meter"] == "4/4" and band["n_bars"] == 4
    assert (band["key"], band["mode"]) == (0, "major") and band["style"] == "other"
    bach = metas["music21:bach/bwv66.6.mxl"]
    assert (bach["key"], bach["mode"], bach["style"]) == (6, "minor", "bach")
    assert bach["composer"] == "Johann Sebastian Bach" and bach["polyphony"] == "polyphonic"
    assert metas["music21:josquin/milleRegrets.abc"]["title"] == "Mille regrets"
    assert metas["midi:nested/folk_melody.midi"]["polyphony"] == "monophonic"


def test_caption_embeddings(built):
    from acemusic.text import TextEmbedder

    ds = TokenDataset(built, "train")
    assert ds.captions is not None and ds.captions.shape == (len(ds), 4, 384)
    assert ds.captions.dtype == np.float16
    norms = np.linalg.norm(ds.captions.astype(np.float32), axis=-1)
    assert np.allclose(norms, 1.0, atol=1e-2)
    ref = TextEmbedder(cache=built / "textcache").encode(ds.meta(0)["captions"])
    assert np.allclose(ds.captions[0].astype(np.float32), ref, atol=2e-3)


def test_resume_does_no_work_and_reconverts_only_what_is_missing(built):
    cfg = BuildConfig(out=built, midi_dir=FIXTURES, only=ONLY, workers=1, embed=False)
    before = (built / "train.bin").read_bytes()
    stats = build(cfg)
    assert stats.cache_hits == stats.tasks == 3 + 8 and stats.converted == 0
    assert (built / "train.bin").read_bytes() == before
    assert not (built / "train.captions.npy").exists()  # --no-embed: no embeddings rather than zeros
    # an interrupted build: one cache entry missing -> exactly one task converted
    victim = next((built / "cache").glob("*/*.pkl"))  # a conversion entry (not the embedding cache)
    victim.unlink()
    stats = build(cfg)
    assert stats.converted == 1 and stats.cache_hits == stats.tasks - 1
    assert (built / "train.bin").read_bytes() == before


def test_limit_takes_first_files(tmp_path):
    stats = build(BuildConfig(out=tmp_path, music21=False, midi_dir=FIXTURES, limit=2, workers=1, embed=False))
    assert stats.tasks == 2  # bach_bwv66_6.mid and band.mid, in sorted order
    assert sum(s["pieces"] for s in stats.splits.values()) == 2


def test_cli_rejects_bad_arguments(tmp_path):
    r = CliRunner().invoke(app, ["data", "build", "--out", str(tmp_path), "--no-music21"])
    assert r.exit_code == 1 and "nothing to build" in r.output
    r = CliRunner().invoke(app, ["data", "build", "--out", str(tmp_path), "--midi-dir", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "not a folder" in r.output


def test_rerun_embeds_from_the_build_cache(built):
    class Boom:
        dim = 384

        def encode(self, texts, use_cache=True):
            raise AssertionError("every caption was embedded by the first build")

    cfg = BuildConfig(out=built, midi_dir=FIXTURES, only=ONLY, workers=1, embed=True)
    build(cfg, embedder=Boom())
    ds = TokenDataset(built, "train")
    assert ds.captions is not None and ds.captions.shape == (len(ds), 4, 384)
    assert np.allclose(np.linalg.norm(ds.captions.astype(np.float32), axis=-1), 1.0, atol=1e-2)
