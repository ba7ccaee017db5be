"""Transcription note F1 on held-out renders: basic-pitch (ONNX) on FluidSynth renders of test-split pieces.

Groups (30 s excerpts from the start of each piece, 22.05 kHz, GM SoundFont, -16 LUFS):
  piano-mono     monophonic test pieces (folk tunes), decoded from the token shards, played on piano (program 0)
  piano-poly     polyphonic multi-part test pieces (Bach chorales, Palestrina masses, trecento), decoded from the
                 shards, on piano
  woodwinds      the same polyphonic pieces re-read from the music21 corpus so each voice is its own track, voices
                 (top to bottom) on flute, oboe, clarinet, bassoon, then horn, cello for 5-6 voices
  strings        the same, on violin, violin, viola, cello, contrabass, cello
  choir          the same, as the corpus has them: every voice Choir Aahs (52)
Pieces are drawn at random (seed 0) from the test split (its SHA-1 split never met training). The reference is the
exact MIDI that was rendered (acemusic.audio.batch writes it beside the WAV). Scores: mir_eval note precision /
recall / F1 with a 50 ms onset tolerance, pitch within 50 cents; "with offsets" adds the offset criterion (20% of
the note or 50 ms). Reported per group: the mean over clips, and the micro average (all notes pooled); and, as a
diagnostic only, F1 with a 100 ms onset window (how much of the loss is late onsets of slow attacks).
Threshold headroom: with `--tune-split val` (default) the same groups are built from the validation split, the
decoding thresholds (onset, frame, minimum note length; GRID) are picked per group by mean F1 there, and the test
table gains "tuned F1" with those thresholds (the network runs once per clip; only note decoding is repeated).

    .venv/bin/python benchmarks/transcribe.py --data data/m21 --per-group 20      # ~5-10 min on 2 shared cores

Writes benchmarks/results/transcribe.json (renders are cached in --work, default /tmp/acemusic-bench-transcribe).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

WOODWINDS = (73, 68, 71, 70, 60, 42)
STRINGS = (40, 40, 41, 42, 43, 42)
CHOIR = 52


def voiced_parts(meta: dict, programs: tuple[int, ...] | int):
    """The piece re-read from the music21 corpus, one track per part (top voice first), re-voiced."""
    from music21 import corpus

    from acemusic.data.m21 import fast_parsing, stream_to_score

    with fast_parsing():
        s = corpus.parse(meta["path"])
    score = stream_to_score(s, meta.get("style", "other"))
    tracks = [t for t in score.tracks if not t.is_drum and t.note_num()]
    # Top voice first: by mean pitch, so soprano gets the first program whatever the part order.
    tracks.sort(key=lambda t: -float(np.mean(t.notes.numpy()["pitch"])))
    for i, tr in enumerate(tracks):
        tr.program = programs if isinstance(programs, int) else programs[min(i, len(programs) - 1)]
    return score


# Threshold grid searched per group on the tuning split (basic-pitch's defaults: 0.5, 0.3, 127.7 ms).
GRID = {"onset_threshold": (0.5, 0.6, 0.7, 0.8), "frame_threshold": (0.3, 0.4, 0.5, 0.6),
        "min_note_ms": (127.7, 200.0, 300.0)}


def clip_outputs(rows: list[dict], out: Path, threads: int) -> list[tuple[dict, dict, object, float]]:
    """(row, basic-pitch frame outputs, reference Score, seconds spent) per rendered clip."""
    from symusic import Score

    from acemusic.audio.io import load_audio
    from acemusic.audio.transcribe import SR, model_output

    res = []
    for r in rows:
        if r["status"] == "failed":
            continue
        t = time.perf_counter()
        audio = load_audio(out / r["wav"], sr=SR)
        frames = model_output(audio.samples, threads=threads)
        res.append((r, frames, Score(str(out / r["mid"])), time.perf_counter() - t))
    return res


def tune(outputs: list, grid: dict = GRID) -> tuple[dict, float, int]:
    """The grid point with the best mean note F1 over `outputs` (ties: the first), its F1, points tried."""
    import itertools

    from acemusic.audio.transcribe import TranscribeConfig, decode_notes, note_f1, notes_to_score

    best, best_f1, n = None, -1.0, 0
    for values in itertools.product(*grid.values()):
        cfg = TranscribeConfig(**dict(zip(grid, values, strict=True)))
        f1 = float(np.mean([note_f1(ref, notes_to_score(decode_notes(frames, cfg)))["f1"]
                            for _, frames, ref, _ in outputs]))
        n += 1
        if f1 > best_f1:
            best, best_f1 = dict(zip(grid, values, strict=True)), f1
    return best, best_f1, n


def score_group(outputs: list, tuned: dict | None = None) -> dict:
    from acemusic.audio.transcribe import TranscribeConfig, decode_notes, note_f1, notes_to_score

    clips = []
    t0 = time.perf_counter()
    for r, frames, ref, model_s in outputs:
        est = notes_to_score(decode_notes(frames, TranscribeConfig()))
        f = note_f1(ref, est)
        # Diagnostic: the same match with a 100 ms onset window separates slow attacks from missed notes.
        f["f1_100ms"] = note_f1(ref, est, onset_tolerance=0.1)["f1"]
        if tuned is not None:
            f["f1_tuned"] = note_f1(ref, notes_to_score(decode_notes(frames, TranscribeConfig(**tuned))))["f1"]
        clips.append({"key": r["key"], "seconds": r["seconds"], "model_s": round(model_s, 2), **f})
    wall = time.perf_counter() - t0 + sum(o[3] for o in outputs)

    def micro(suffix: str) -> dict:
        n_ref = sum(c["n_ref"] for c in clips)
        n_est = sum(c["n_est"] for c in clips)
        tp = sum(c["precision" + suffix] * c["n_est"] for c in clips)
        p, r = tp / max(n_est, 1), tp / max(n_ref, 1)
        return {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-12)}

    res = {
        "clips": len(clips), "audio_seconds": round(sum(c["seconds"] for c in clips), 1),
        "ref_notes": sum(c["n_ref"] for c in clips), "est_notes": sum(c["n_est"] for c in clips),
        "mean_f1": float(np.mean([c["f1"] for c in clips])),
        "mean_f1_offset": float(np.mean([c["f1_offset"] for c in clips])),
        "mean_f1_100ms": float(np.mean([c["f1_100ms"] for c in clips])),
        "mean_precision": float(np.mean([c["precision"] for c in clips])),
        "mean_recall": float(np.mean([c["recall"] for c in clips])),
        "micro": micro(""), "micro_offset": micro("_offset"),
        "transcribe_seconds": round(wall, 1),
        "realtime_factor": round(sum(c["seconds"] for c in clips) / max(wall, 1e-9), 1),
        "per_clip": clips,
    }
    if tuned is not None:
        res["tuned_thresholds"] = tuned
        res["mean_f1_tuned"] = float(np.mean([c["f1_tuned"] for c in clips]))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/m21")
    ap.add_argument("--split", default="test")
    ap.add_argument("--per-group", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=2, help="FluidSynth processes")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tune-split", default="val", help="split to pick thresholds on per group ('' = no tuning)")
    ap.add_argument("--tune-per-group", type=int, default=12, help="pieces per group on the tuning split")
    ap.add_argument("--work", default="/tmp/acemusic-bench-transcribe")
    ap.add_argument("--out", default="benchmarks/results/transcribe.json")
    args = ap.parse_args()

    from acemusic.audio.batch import BatchConfig, render_batch
    from acemusic.data.shards import TokenDataset
    from acemusic.tokenizer import Tokenizer

    work = Path(args.work)
    t_start = time.perf_counter()

    def build_groups(split: str, per_group: int):
        """Rendered groups of `split`: {name: BatchResult}, plus the picked piece ids."""
        ds = TokenDataset(args.data, split)
        tok = Tokenizer(ds.vocab.config)
        metas = ds.metas()
        rng = np.random.default_rng(args.seed)
        mono = [i for i, m in enumerate(metas) if m["polyphony"] == "monophonic"]
        # Multi-part scores only (chorales, masses, trecento): an ABC tune with chords has no voices to re-orchestrate.
        poly = [i for i, m in enumerate(metas) if m["polyphony"] != "monophonic" and "#" not in m["id"]]
        pick_mono = sorted(rng.choice(mono, size=min(per_group, len(mono)), replace=False).tolist())
        pick_poly = sorted(rng.choice(poly, size=min(per_group, len(poly)), replace=False).tolist())

        def decoded(idx: list[int]) -> list[tuple[str, object]]:
            return [(metas[i]["id"], tok.decode(ds.piece(i))) for i in idx]

        def reparsed(idx: list[int], programs) -> list[tuple[str, object]]:
            out = []
            for i in idx:
                try:
                    out.append((metas[i]["id"], voiced_parts(metas[i], programs)))
                except Exception as e:  # a corpus file music21 cannot re-read: report, do not stop
                    print(f"skip {metas[i]['id']}: {type(e).__name__}: {e}")
            return out

        groups = {
            "piano-mono": (decoded(pick_mono), 0),
            "piano-poly": (decoded(pick_poly), 0),
            "woodwinds": (reparsed(pick_poly, WOODWINDS), None),
            "strings": (reparsed(pick_poly, STRINGS), None),
            "choir": (reparsed(pick_poly, CHOIR), None),
        }
        rendered = {}
        for name, (items, program) in groups.items():
            cfg = BatchConfig(sr=22050, seconds=args.seconds, program=program)
            t = time.perf_counter()
            folder = work / name if split == args.split else work / split / name
            rendered[name] = (render_batch(items, folder, cfg, workers=args.workers, progress=False), folder,
                              round(time.perf_counter() - t, 1))
        ids = {"mono": [metas[i]["id"] for i in pick_mono], "poly": [metas[i]["id"] for i in pick_poly]}
        return rendered, ids

    tuned: dict[str, dict] = {}
    tuning: dict[str, dict] = {}
    if args.tune_split:
        val_groups, val_ids = build_groups(args.tune_split, args.tune_per_group)
        for name, (batch, folder, _) in val_groups.items():
            best, f1, n = tune(clip_outputs(batch.rows, folder, args.threads))
            tuned[name] = best
            tuning[name] = {"best": best, "mean_f1": f1, "grid_points": n, "clips": batch.rendered + batch.cached}
            print(f"tuned on {args.tune_split} {name:11s} {best} F1 {f1:.3f}", flush=True)
        tuning["pieces"] = val_ids
    groups, ids = build_groups(args.split, args.per_group)
    results = {}
    for name, (batch, folder, render_s) in groups.items():
        res = score_group(clip_outputs(batch.rows, folder, args.threads), tuned.get(name))
        res.update(render_seconds=render_s, rendered=batch.rendered, cached=batch.cached, failed=batch.failed)
        results[name] = res
        extra = f"  tuned F1 {res['mean_f1_tuned']:.3f}" if "mean_f1_tuned" in res else ""
        print(f"{name:11s} clips {res['clips']:3d}  F1 {res['mean_f1']:.3f}  F1+offsets {res['mean_f1_offset']:.3f}"
              f"  micro F1 {res['micro']['f1']:.3f}  F1@100ms {res['mean_f1_100ms']:.3f}{extra}"
              f"  ({res['transcribe_seconds']} s, {res['realtime_factor']}x real time)", flush=True)

    report = {
        "command": "python benchmarks/transcribe.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("work", "out")),
        "model": "basic-pitch ICASSP 2022 (nmp.onnx) on onnxruntime; default thresholds (onset 0.5, frame 0.3, "
                 "min note 127.7 ms)",
        "metric": "mir_eval.transcription.precision_recall_f1_overlap, onset tolerance 50 ms, pitch 50 cents; "
                  "offset variant: offset_ratio 0.2 (min 50 ms)",
        "data": f"{args.data} split {args.split}: {len(ids['mono'])} monophonic + {len(ids['poly'])} polyphonic "
                f"pieces (seed {args.seed}), first {args.seconds:.0f} s of each",
        "pieces_mono": ids["mono"], "pieces_poly": ids["poly"],
        "tuning": {"split": args.tune_split, "grid": GRID, "objective": "mean note F1 (onset 50 ms)", **tuning}
        if args.tune_split else None,
        "programs": {"woodwinds": WOODWINDS, "strings": STRINGS, "choir": CHOIR, "piano": 0},
        "groups": results,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()], "cpu_count": os.cpu_count(),
        "versions": {p: version(p) for p in ("basic-pitch", "onnxruntime", "mir_eval", "librosa")},
        "python": platform.python_version(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out} ({report['wall_seconds']} s)")


if __name__ == "__main__":
    main()
