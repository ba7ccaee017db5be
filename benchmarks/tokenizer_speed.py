"""Tokenizer throughput: acemusic vs MidiTok REMI on the same files, in the same run.

Both sides start from the same already-loaded `symusic.Score` objects (MIDI parsing is not timed) and are timed
separately for encode (Score -> ids) and decode (ids -> Score); each phase runs `--repeats` times over all files,
sides interleaved, and the median is reported. MidiTok is configured to keep the same information as our tokens:
12 positions per quarter, the same duration bins (exact to 4 beats, then 1/4, 1/2, 1 beat steps up to 32 beats),
16 velocities, 40 log-spaced tempos in 30..300 bpm, time signatures up to 8 quarter notes, programs in one stream
(REMI+). Information check: per file, the (onset, pitch, duration, program) note tables after each side's round
trip are compared.

    .venv/bin/python benchmarks/tokenizer_speed.py                    # music21 corpus files, cached as MIDI once
    .venv/bin/python benchmarks/tokenizer_speed.py --midi-dir DIR     # your own MIDI files
    .venv/bin/python benchmarks/tokenizer_speed.py --profile          # add a cProfile of our encode/decode

Writes benchmarks/results/tokenize.json. Corpus MIDI files are cached in ~/.cache/acemusic/bench-tokenize/
(local only: the Essen tunes are licensed for non-commercial use within music21).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import symusic

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "tokenize.json"
DEFAULT_CACHE = Path.home() / ".cache" / "acemusic" / "bench-tokenize"


# ---- input files ---------------------------------------------------------------------------------------------
def corpus_midi(cache: Path, n_chorales: int, n_essen: int, n_classical: int) -> list[Path]:
    """Write music21 corpus pieces to MIDI once (slow: music21 parsing), then reuse the cached files."""
    cache.mkdir(parents=True, exist_ok=True)
    groups = {"chorale": n_chorales, "essen": n_essen, "classical": n_classical}
    done = {g: sorted(cache.glob(f"{g}_*.mid")) for g in groups}
    if all(len(done[g]) >= n for g, n in groups.items()):
        return [p for g, n in groups.items() for p in done[g][:n]]

    from music21 import corpus

    def write(stream, path: Path) -> bool:
        try:
            stream.write("midi", fp=str(path))
            return True
        except Exception as e:  # e.g. bwv277.krn: bad repeats; skip and say so
            print(f"  skip {path.name}: {type(e).__name__}: {str(e)[:80]}", file=sys.stderr)
            return False

    print(f"writing corpus MIDI files to {cache} (once)...", file=sys.stderr)
    if len(done["chorale"]) < n_chorales:
        i = 0
        for score in corpus.chorales.Iterator():
            if i >= n_chorales:
                break
            i += write(score, cache / f"chorale_{i:04d}.mid")
    if len(done["essen"]) < n_essen:
        opus = corpus.parse("essenFolksong/altdeu10")
        i = 0
        for score in opus.scores:
            if i >= n_essen:
                break
            i += write(score, cache / f"essen_{i:04d}.mid")
    if len(done["classical"]) < n_classical:
        paths = [
            p
            for c in ("beethoven", "mozart", "haydn")
            for p in corpus.getComposer(c)
            if p.suffix in (".mxl", ".xml", ".krn")
        ]
        i = 0
        for p in paths:
            if i >= n_classical:
                break
            i += write(corpus.parse(p), cache / f"classical_{i:04d}.mid")
    return [p for g, n in groups.items() for p in sorted(cache.glob(f"{g}_*.mid"))[:n]]


# ---- the two tokenizers ----------------------------------------------------------------------------------------
def make_miditok():
    """MidiTok REMI(+) configured to carry the same information as our vocabulary."""
    import miditok

    config = miditok.TokenizerConfig(
        pitch_range=(0, 127),  # MidiTok's maximum: pitch 127 alone is out of its range
        beat_res={(0, 4): 12, (4, 8): 4, (8, 16): 2, (16, 32): 1},  # = our duration bins; positions at 12/quarter
        num_velocities=16,
        special_tokens=["PAD", "BOS", "EOS"],
        use_velocities=True,
        use_tempos=True,
        num_tempos=40,
        tempo_range=(30, 300),
        log_tempos=True,
        use_time_signatures=True,
        time_signature_range={8: list(range(1, 17)), 4: list(range(1, 9)), 2: list(range(1, 5))},
        use_programs=True,
        one_token_stream_for_programs=True,
        use_chords=False,
        use_rests=False,
        use_sustain_pedals=False,
        use_pitch_bends=False,
        use_control_changes=False,
    )
    return miditok.REMI(config)


def note_set(score: symusic.Score) -> np.ndarray:
    """(n, 4) sorted rows (onset, pitch, duration, program; 128 = drums) of a score at tpq 12."""
    if score.ticks_per_quarter != 12:
        score = score.resample(12, min_dur=1)
    rows = []
    for tr in score.tracks:
        if tr.note_num() == 0:
            continue
        a = tr.notes.numpy()
        prog = np.full(len(a["time"]), 128 if tr.is_drum else tr.program)
        rows.append(np.stack([a["time"], a["pitch"], a["duration"], prog], axis=1).astype(np.int64))
    if not rows:
        return np.zeros((0, 4), np.int64)
    t = np.concatenate(rows)
    return t[np.lexsort(t.T[::-1])]


# ---- timing --------------------------------------------------------------------------------------------------
def time_pass(fn, items) -> tuple[tuple[float, float], list]:
    """((wall seconds, process CPU seconds), outputs). CPU time is the robust number on a shared machine."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = [fn(x) for x in items]
    return (time.perf_counter() - t0, time.process_time() - c0), out


def profile_top(fn, items, n: int = 18) -> str:
    pr = cProfile.Profile()
    pr.enable()
    for x in items:
        fn(x)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(n)
    return s.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--midi-dir", type=Path, help="benchmark these MIDI files instead of the music21 corpus")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--chorales", type=int, default=200)
    ap.add_argument("--essen", type=int, default=100)
    ap.add_argument("--classical", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--profile", action="store_true", help="cProfile our encode/decode into the JSON")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from acemusic.tokenizer import Tokenizer

    if args.midi_dir:
        paths = sorted(p for p in args.midi_dir.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    else:
        paths = corpus_midi(args.cache_dir, args.chorales, args.essen, args.classical)
    if not paths:
        sys.exit("no MIDI files found")

    ours, theirs = Tokenizer(), make_miditok()
    scores, names = [], []
    for p in paths:
        try:
            s = symusic.Score(str(p))
        except Exception as e:
            print(f"  skip {p.name}: {e}", file=sys.stderr)
            continue
        if s.note_num() > 0:
            scores.append(s)
            names.append(p.name)
    n_notes = int(sum(s.note_num() for s in scores))
    print(f"{len(scores)} files, {n_notes:,} notes, {args.repeats} repeats", file=sys.stderr)

    # Encode inputs: the same Score objects for both sides. `encode` adds the conditioning prefix (an analysis
    # pass for density and instruments); `encode_body` is what the dataset builder stores, like MidiTok's output.
    sides = {
        "acemusic_encode": lambda s: ours.encode(s),
        "acemusic_encode_body": lambda s: ours.encode_body(s),
        "miditok_encode": lambda s: theirs.encode(s).ids,
    }
    load0 = os.getloadavg()
    ids = {name: time_pass(fn, scores)[1] for name, fn in sides.items()}  # warm-up, and the decode inputs
    decoders = {
        "acemusic_decode": (lambda x: ours.decode(x), ids["acemusic_encode"]),
        "miditok_decode": (lambda x: theirs.decode(x), ids["miditok_encode"]),
    }
    for fn, items in decoders.values():
        time_pass(fn, items[:20])
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in [*sides, *decoders]}
    for _ in range(args.repeats):  # interleaved, so a noisy neighbour hurts both sides alike
        for name, fn in sides.items():
            times[name].append(time_pass(fn, scores)[0])
        for name, (fn, items) in decoders.items():
            times[name].append(time_pass(fn, items)[0])
    load1 = os.getloadavg()

    timing = {}
    for name, ts in times.items():
        wall, cpu = statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)
        timing[name] = {
            "median_s": round(wall, 4),
            "median_cpu_s": round(cpu, 4),
            "all_s": [round(t[0], 4) for t in ts],
            "notes_per_s": round(n_notes / wall),
            "notes_per_cpu_s": round(n_notes / cpu),
            "files_per_s": round(len(scores) / wall, 1),
        }
    pairs = {
        "encode": ("miditok_encode", "acemusic_encode"),
        "encode_body": ("miditok_encode", "acemusic_encode_body"),
        "decode": ("miditok_decode", "acemusic_decode"),
    }
    ratio = {
        clock: {k: round(timing[a][key] / timing[b][key], 2) for k, (a, b) in pairs.items()}
        for clock, key in (("wall", "median_s"), ("cpu", "median_cpu_s"))
    }

    # Information check: both round trips against each other (and each against the input on the grid).
    match, match_no_dur, diffs = 0, 0, []
    ours_rt = [note_set(ours.decode(x)) for x in ids["acemusic_encode"]]
    theirs_rt = [note_set(theirs.decode(x)) for x in ids["miditok_encode"]]
    for name, score, a, b in zip(names, scores, ours_rt, theirs_rt, strict=True):
        if a.shape == b.shape and (a == b).all():
            match += 1
            match_no_dur += 1
            continue
        no_dur = [0, 1, 3]  # onset, pitch, program
        ka, kb = a[np.lexsort(a[:, no_dur].T[::-1])][:, no_dur], b[np.lexsort(b[:, no_dur].T[::-1])][:, no_dur]
        same_no_dur = ka.shape == kb.shape and bool((ka == kb).all())
        match_no_dur += same_no_dur
        sa, sb = set(map(tuple, a.tolist())), set(map(tuple, b.tolist()))
        diffs.append(
            {
                "file": name,
                "time_signatures": sorted({f"{t.numerator}/{t.denominator}" for t in score.time_signatures}),
                "ours_notes": len(a),
                "miditok_notes": len(b),
                "only_ours": len(sa - sb),
                "only_miditok": len(sb - sa),
                "equal_without_duration": same_no_dur,
                "shortest_differing_duration": min(r[2] for r in (sa ^ sb)),
                "examples_only_ours": sorted(sa - sb)[:3],
                "examples_only_miditok": sorted(sb - sa)[:3],
            }
        )

    result = {
        "what": "tokenizer throughput, acemusic vs MidiTok REMI, same loaded symusic.Score inputs, same run",
        "files": len(scores),
        "source": str(args.midi_dir)
        if args.midi_dir
        else f"music21 corpus: {args.chorales} chorales, {args.essen} Essen tunes, {args.classical} classical works",
        "notes": n_notes,
        "tokens": {
            "acemusic_encode": int(sum(len(x) for x in ids["acemusic_encode"])),
            "acemusic_encode_body": int(sum(len(x) for x in ids["acemusic_encode_body"])),
            "miditok": int(sum(len(x) for x in ids["miditok_encode"])),
        },
        "vocab_size": {"acemusic": len(ours.vocab), "miditok": len(theirs)},
        "repeats": args.repeats,
        "timing": timing,
        "speedup_ours_over_miditok": ratio,
        "goal": ">= 3x MidiTok on encode and decode",
        "round_trip_note_tables_equal": {
            "what": "(onset, pitch, duration, program) at 12 tpq after each side's round trip, compared per file",
            "files": len(scores),
            "files_equal": match,
            "files_equal_without_duration": match_no_dur,
            "mismatches": diffs[:20],
        },
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "niceness": os.nice(0),
            **{pkg: version(pkg) for pkg in ("numpy", "symusic", "miditok")},
            "loadavg_start": [round(x, 2) for x in load0],
            "loadavg_end": [round(x, 2) for x in load1],
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        },
    }
    if args.profile:
        result["profile"] = {
            "acemusic_encode": profile_top(lambda s: ours.encode(s), scores),
            "acemusic_decode": profile_top(lambda x: ours.decode(x), ids["acemusic_encode"]),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"{'':24}{'median s':>10}{'cpu s':>8}{'notes/s':>12}{'notes/cpu s':>13}{'files/s':>10}")
    for name, t in timing.items():
        print(
            f"{name:24}{t['median_s']:>10.3f}{t['median_cpu_s']:>8.3f}{t['notes_per_s']:>12,}"
            f"{t['notes_per_cpu_s']:>13,}{t['files_per_s']:>10,}"
        )
    print(f"speedup ours/miditok: {ratio}   (goal >= 3x)")
    print(
        f"round trips equal on {match}/{len(scores)} files ({match_no_dur} ignoring durations); "
        f"load {load0[0]:.2f} -> {load1[0]:.2f}"
    )
    print(f"wrote {args.out}")
    if args.profile:
        print(result["profile"]["acemusic_encode"])
        print(result["profile"]["acemusic_decode"])


if __name__ == "__main__":
    main()
