"""Paired excerpts for the audio models: a few bars of a corpus piece as tokens and as a 16 kHz render of the same
bars, with the instruments re-drawn so the audio is not all one timbre.

    n = make_excerpts(TokenDataset("data/m21", "train"), "data/audio/train", n=600, bars=4, seed=0)
    rows = read_index("data/audio/train")   # [{"id", "piece", "bar", "bars", "programs", "tokens", "wav", ...}]

One excerpt per piece (pieces are drawn without replacement), starting at a random bar; `Tokenizer.slice_bars`
makes the slice self-contained, every melodic `Program` in it is mapped to a program drawn from `PROGRAMS` (drums
stay drums), and the changed tokens are what gets decoded and rendered, so tokens and audio always agree. The render
keeps the release tail cut at `max_seconds`. Each WAV is written once; a rerun adds only what is missing (resume).
Used by codec_train.py (random crops), align_train.py (pairs) and benchmarks/codec.py (held-out renders).
Test: `pytest tests/audio/test_align.py -k excerpt`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from acemusic.jsonl import read_jsonl

INDEX = "index.jsonl"
SR = 16000
# GM programs across families (piano, keys, organ, guitar, bass, strings, ensemble, brass, reed, pipe, synth), so the
# codec and the audio encoder hear varied timbres, not only the corpus' mostly-piano/voice programs.
PROGRAMS = (0, 4, 6, 11, 16, 19, 24, 25, 32, 40, 42, 46, 48, 52, 56, 57, 60, 65, 68, 71, 73, 80, 88)


def remap_programs(tokens: np.ndarray, rng: np.random.Generator, vocab) -> tuple[np.ndarray, list[int]]:
    """Map each distinct melodic Program in `tokens` to a random entry of PROGRAMS (distinct where possible)."""
    from acemusic.tokenizer.vocab import DRUMS, T

    tokens = np.asarray(tokens, np.int64).copy()
    is_prog = vocab.type_of[tokens] == T["Program"]
    progs = sorted({int(p) for p in vocab.value_of[tokens[is_prog]]} - {DRUMS})
    choice = rng.choice(len(PROGRAMS), size=len(progs), replace=len(progs) > len(PROGRAMS))
    mapping = {p: PROGRAMS[int(c)] for p, c in zip(progs, choice, strict=True)}
    first = int(np.flatnonzero(vocab.type_of == T["Program"])[0])
    for i in np.flatnonzero(is_prog):
        p = int(vocab.value_of[tokens[i]])
        if p in mapping:
            tokens[i] = first + mapping[p]
    return tokens, sorted(set(mapping.values()))


def read_index(directory: str | Path) -> list[dict]:
    return read_jsonl(Path(directory) / INDEX,
                      "missing: not an excerpt directory (make one with `acemusic codec excerpts`)")


def make_excerpts(dataset, out: str | Path, n: int, bars: int = 4, seed: int = 0, max_seconds: float = 12.0,
                  min_notes: int = 4, exclude: Sequence[str] = ()) -> int:
    """Render up to `n` excerpts of `bars` bars from `dataset` (a TokenDataset) into `out`. Returns the count
    in the index afterwards. Pieces in `exclude` (ids) are skipped; so are excerpts with fewer than
    `min_notes` notes or a silent render."""
    import soundfile as sf

    from acemusic.audio.render import render
    from acemusic.tokenizer import Tokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer()
    v = tok.vocab
    index_path = out / INDEX
    done = read_index(out) if index_path.is_file() else []
    have = {r["piece"] for r in done}
    skip = set(exclude) | have
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset))
    from acemusic.tokenizer.vocab import T

    with index_path.open("a", encoding="utf-8") as index:
        for i in order.tolist():
            if len(done) >= n:
                break
            meta = dataset.meta(i)
            if meta["id"] in skip:
                continue
            body = np.asarray(dataset.piece(i), np.int64)
            n_bars = len(tok.bar_starts(body))
            prng = np.random.default_rng([seed, i])  # per piece: a resumed run draws the same excerpt
            a = int(prng.integers(0, max(1, n_bars - bars + 1)))
            b = min(n_bars, a + bars)
            seg = tok.slice_bars(body, a, b)
            if int((v.type_of[seg] == T["Pitch"]).sum()) < min_notes:
                continue
            seg, programs = remap_programs(seg, prng, v)
            name = f"{len(done):05d}.wav"
            wav = out / name
            render(tok.decode(seg), wav, sr=SR)
            audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
            audio = audio.mean(axis=1)[: int(max_seconds * sr)]
            if float(np.abs(audio).max(initial=0.0)) < 1e-3:
                wav.unlink()
                continue
            sf.write(str(wav), audio, sr, subtype="PCM_16")
            row = {"id": len(done), "piece": meta["id"], "bar": a, "bars": b - a, "programs": programs,
                   "seconds": round(len(audio) / sr, 3), "wav": name, "tokens": seg.tolist()}
            index.write(json.dumps(row) + "\n")
            index.flush()
            done.append(row)
    return len(done)
