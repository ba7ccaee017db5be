"""Prompt adherence of `compose`: does the music do what the prompt asked?

For each of the 50 prompts in `prompts.jsonl` (shipped beside this file; each row lists what it asks: key, mode, GM
program, a tempo in bpm or a tempo word, sometimes a meter) we compose with a fixed seed and measure the output:
key and mode by music21's default key analysis (`analyze("key")`: Krumhansl-Schmuckler correlation with the
Aarden-Essen weights, not the Krumhansl-Kessler ones our training labels use) over every pitched note,
tempo as the time-weighted mean of the MIDI tempo map, the program of the main track (most notes), the meter from
the first time signature. The report gives the share of asks met per field.

    report = evaluate(bundle, seed=0, bars=16)          # or `acemusic eval adherence --checkpoint DIR --out X.json`

Tempo words map to ranges (very slow < 60, slow 60-76, calm 66-80, moderate 80-108, lively 108-132, fast 132-160,
very fast > 160 bpm); a bpm ask is met within 5% (the tokenizer's tempo bins are 6% apart).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from acemusic.generate.prompt import PITCH_CLASS, tempo_matches
from acemusic.jsonl import read_jsonl

PROMPTS = Path(__file__).with_name("prompts.jsonl")
FIELDS = ("key", "mode", "key_and_mode", "tempo", "program", "meter")


def load_prompts(path: str | Path = PROMPTS) -> list[dict]:
    return read_jsonl(path)


def pitch_class(name: str) -> int:
    """'C#' -> 1, 'Bb' -> 10."""
    return (PITCH_CLASS[name[0].upper()] + {"#": 1, "b": -1, "": 0}[name[1:]]) % 12


def analyze_key(score) -> tuple[int | None, str | None]:
    """(tonic pitch class, 'major'|'minor') by music21's key analysis of the pitched notes; (None, None) if none."""
    from music21 import note, stream

    tpq = score.ticks_per_quarter
    s = stream.Stream()
    for track in score.tracks:
        if track.is_drum:
            continue
        a = track.notes.numpy()
        for t, d, p in zip(a["time"].tolist(), a["duration"].tolist(), a["pitch"].tolist(), strict=True):
            n = note.Note(int(p))
            n.quarterLength = max(d, 1) / tpq
            s.insert(t / tpq, n)
    if not len(s):
        return None, None
    k = s.analyze("key")
    return k.tonic.pitchClass, k.mode


def mean_tempo(score) -> float:
    """Time-weighted mean qpm over the piece (the tempo map's value at each tick, averaged)."""
    tempos = score.tempos.numpy()
    if len(tempos["time"]) == 0:
        return 120.0
    end = max(int(score.end()), 1)
    times = np.clip(tempos["time"].astype(np.int64), 0, end)
    qpm = 6e7 / tempos["mspq"].astype(np.float64)
    spans = np.diff(np.append(times, end))
    if spans.sum() <= 0:
        return float(qpm[0])
    return float((qpm * spans).sum() / spans.sum())


def main_program(score) -> int | None:
    tracks = [t for t in score.tracks if t.note_num() > 0]
    if not tracks:
        return None
    t = max(tracks, key=lambda t: t.note_num())
    return 128 if t.is_drum else int(t.program)


def measure(score) -> dict:
    tonic, mode = analyze_key(score)
    ts = score.time_signatures
    return {"key": tonic, "mode": mode, "tempo": round(mean_tempo(score), 2), "program": main_program(score),
            "meter": f"{ts[0].numerator}/{ts[0].denominator}" if len(ts) else "4/4",
            "notes": int(score.note_num())}


def judge(asks: dict, got: dict) -> dict[str, bool]:
    """Which asks are met (only fields the prompt asks for)."""
    out: dict[str, bool] = {}
    if "key" in asks:
        out["key"] = got["key"] == pitch_class(asks["key"])
    if "mode" in asks:
        out["mode"] = got["mode"] == asks["mode"]
    if "key" in asks and "mode" in asks:
        out["key_and_mode"] = out["key"] and out["mode"]
    if "tempo_word" in asks:
        out["tempo"] = tempo_matches(got["tempo"], word=asks["tempo_word"])
    elif "tempo_bpm" in asks:
        out["tempo"] = tempo_matches(got["tempo"], target=float(asks["tempo_bpm"]))
    if "program" in asks:
        out["program"] = got["program"] == asks["program"]
    if "meter" in asks:
        out["meter"] = got["meter"] == asks["meter"]
    return out


def evaluate(bundle, seed: int = 0, bars: int = 16, prompts: list[dict] | None = None, limit: int | None = None,
             on_prompt: Callable[[int, int], None] | None = None, **compose_kwargs) -> dict:
    """Compose every prompt once (fixed seed) and report the share of asks met per field."""
    rows = (prompts or load_prompts())[:limit]
    per_prompt, met = [], {f: [] for f in FIELDS}
    t0 = time.perf_counter()
    for i, row in enumerate(rows):
        t1 = time.perf_counter()
        score = bundle.compose(row["prompt"], bars=bars, seed=seed, **compose_kwargs)
        got = measure(score)
        ok = judge(row["asks"], got)
        for f, v in ok.items():
            met[f].append(v)
        per_prompt.append({"id": row.get("id", i), "prompt": row["prompt"], "asks": row["asks"], "got": got,
                           "met": ok, "seconds": round(time.perf_counter() - t1, 2)})
        if on_prompt is not None:
            on_prompt(i + 1, len(rows))
    summary = {f: {"asked": len(v), "met": int(sum(v)), "share": round(sum(v) / len(v), 3) if v else None}
               for f, v in met.items()}
    return {"seed": seed, "bars": bars, "n_prompts": len(rows), "settings": {k: v for k, v in compose_kwargs.items()},
            "fields": summary, "seconds": round(time.perf_counter() - t0, 1), "prompts": per_prompt}
