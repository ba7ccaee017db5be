"""A tiny dataset in the `acemusic data build` layout for the evaluation tests: real fixture music (the Bach
chorale bwv66.6, one piece per track, transposed copies) plus seeded tonal melodies, with full metadata and
captions, and a tiny random-weight checkpoint. No corpus build, no network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import symusic

from acemusic.data.shards import ShardWriter
from acemusic.tokenizer import Tokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "midi"
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)


def melody(rng: np.random.Generator, tonic: int, mode: str, bars: int, meter=(4, 4), program: int = 73,
           qpm: float = 100.0) -> symusic.Score:
    """A stepwise tune in a key; the second half repeats the first (so it has motifs and form)."""
    scale = MAJOR if mode == "major" else MINOR
    bar = meter[0] * 48 // meter[1]
    s = symusic.Score(12)
    s.time_signatures.append(symusic.TimeSignature(0, *meter))
    s.tempos.append(symusic.Tempo(0, qpm))
    tr = symusic.Track("m", program, False)
    half = max(1, bars // 2)
    degree, phrase = 7, []
    for b in range(half):
        t = 0
        while t < bar:
            d = int(rng.choice([6, 12, 12, 24]))
            d = min(d, bar - t)
            degree = int(np.clip(degree + rng.choice([-2, -1, 1, 1, 2]), 0, 14))
            phrase.append((b * bar + t, d, 60 + tonic + 12 * (degree // 7) + scale[degree % 7] - 12))
            t += d
    for rep in range(2):
        for on, d, p in phrase:
            tr.notes.append(symusic.Note(on + rep * half * bar, d, p, 80))
    s.tracks.append(tr)
    return s


def build(root: Path, sizes: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write the dataset to `root` and return it."""
    sizes = sizes or {"train": 24, "val": 6, "test": 8}
    tok = Tokenizer()
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    tok.vocab.save(root / "vocab.json")
    bach = tok.load_score(FIXTURES / "bach_bwv66_6.mid")
    for split, n in sizes.items():
        w = ShardWriter(root, split)
        for i in range(n):
            if i % 4 == 0:
                score = bach.copy().shift_pitch(int(rng.integers(-3, 4)))
                style, meter, qpm = "bach", "4/4", 100.0
            else:
                meter3 = (3, 4) if i % 4 == 3 else (4, 4)
                qpm = float(rng.choice([70.0, 100.0, 140.0]))
                score = melody(rng, int(rng.integers(0, 12)), ["major", "minor"][i % 2], int(rng.integers(8, 17)),
                               meter3, qpm=qpm)
                style, meter = "folk_essen", f"{meter3[0]}/{meter3[1]}"
            cond = tok.conditions_of(score)
            body = tok.encode_body(score)
            n_bars = int((body == tok.vocab.bar).sum())
            meta = {"id": f"{split}{i}", "source": "test", "path": f"{split}{i}", "collection": style,
                    "style": style, "key": cond.key, "mode": cond.mode, "tempo": qpm, "meter": meter,
                    "instruments": list(cond.instruments), "n_notes": int(score.note_num()), "n_bars": n_bars,
                    "density": cond.density,
                    "captions": [f"a {cond.mode or 'modal'} {style} piece", f"{style} tune"], "n_full_captions": 1}
            w.add(body.astype(np.uint16), meta)
        w.close()
    return root


def tiny_checkpoint(out: Path) -> Path:
    import torch

    from acemusic.model import ModelConfig, MusicTransformer
    from acemusic.model.checkpoint import save

    tok = Tokenizer()
    torch.manual_seed(0)
    model = MusicTransformer(ModelConfig.preset("tiny", vocab_size=len(tok.vocab))).eval()
    save(model, out, {"vocab": tok.vocab.config.to_dict()})
    return out
