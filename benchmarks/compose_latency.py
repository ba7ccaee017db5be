"""Compose latency: cold start of `acemusic compose` and the cost of best-of-N key reranking, same run.

    .venv/bin/python benchmarks/compose_latency.py [--repeats 3] [--bars 16]

Two measurements, interleaved so load changes hit every setting alike:
1. In one process (model loaded once): `Bundle.compose` of the same prompt with `candidates=1` (plain sampling),
   `4` (one batch of four rows, the best key fit kept) and `8` (the default: a second batch of four only when no
   candidate of the first meets the key), guidance 1.5, int8 decoding. Reported: median seconds and ratios to 1.
2. Cold start: a fresh `acemusic compose` process to a written 16-bar MIDI with each `--candidates` setting
   (imports, model and MiniLM load, generation, writing).
Writes benchmarks/results/compose_latency.json with the load average and thread count (2 shared cores: noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "melancholic piano, slow, D minor"


def cold_start(candidates: int, bars: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "song.mid"
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", "from acemusic.cli import main; main()", "compose", PROMPT,
                            "-o", str(out), "--bars", str(bars), "--candidates", str(candidates)],
                           capture_output=True, text=True, timeout=600)
        dt = time.perf_counter() - t0
        if r.returncode != 0 or not out.is_file():
            raise SystemExit(f"compose failed: {r.stderr}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bars", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compose_latency.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    import acemusic

    bundle = acemusic.load()
    bundle.compose(PROMPT, bars=2, seed=0)  # warm up kernels and the prompt-embedding cache
    settings = (1, 4, 8)
    warm: dict[int, list[float]] = {n: [] for n in settings}
    cold: dict[int, list[float]] = {n: [] for n in settings}
    notes: dict[int, list[int]] = {n: [] for n in settings}
    for r in range(args.repeats):
        for n in settings:
            t0 = time.perf_counter()
            score = bundle.compose(PROMPT, bars=args.bars, seed=r, candidates=n)
            warm[n].append(time.perf_counter() - t0)
            notes[n].append(score.note_num())
        for n in reversed(settings):
            cold[n].append(cold_start(n, args.bars))
    med = {f"compose_candidates_{n}": round(statistics.median(v), 2) for n, v in warm.items()}
    med_cold = {f"cold_start_candidates_{n}": round(statistics.median(v), 2) for n, v in cold.items()}
    report = {
        "prompt": PROMPT, "bars": args.bars, "repeats": args.repeats, "cfg": 1.5, "decoding": "int8",
        "seconds_median": {**med, **med_cold},
        "runs": {"compose": {str(k): [round(x, 2) for x in v] for k, v in warm.items()},
                 "cold_start": {str(k): [round(x, 2) for x in v] for k, v in cold.items()}},
        "notes": {str(k): v for k, v in notes.items()},
        **{f"ratio_candidates_{n}_vs_1": round(med[f"compose_candidates_{n}"] / med["compose_candidates_1"], 2)
           for n in settings[1:]},
        **{f"ratio_cold_{n}_vs_1": round(med_cold[f"cold_start_candidates_{n}"] / med_cold["cold_start_candidates_1"],
                                         2) for n in settings[1:]},
        "torch_threads": torch.get_num_threads(), "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(), "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
