"""What the held-out task benchmarks (continue_, vary, morph, infill) share: the common options, loading the
shipped model, held-out pieces as task inputs, and the JSON report with its machine record.

    ap = task_parser(__doc__, "vary.json"); ap.add_argument(...); args = ap.parse_args()
    run = Run(args)                      # threads, offline, timers, the Bundle (int8 engine, text off)
    piece = held_out_piece(run.tok, ds, i, max_bars=16)
    run.write({"summary": summary, "rows": rows}, summary)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def task_parser(doc: str, out_name: str) -> argparse.ArgumentParser:
    """--checkpoint, --data, --split, --seed, --threads and --out (benchmarks/results/<out_name>)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "acemusic-mini"))
    ap.add_argument("--data", default=str(ROOT / "data" / "m21"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / out_name))
    return ap


class Run:
    """One benchmark run: torch threads and offline mode set, timers started, the shipped Bundle loaded."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        torch.set_num_threads(args.threads)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from acemusic.api import load

        self.args = args
        self.t0, self.cpu0, self.load0 = time.time(), time.process_time(), os.getloadavg()[0]
        self.bundle = load(args.checkpoint, text=False)  # int8 engine for generation (the product default)
        self.bundle.engine.decode_threads = args.threads
        self.tok = self.bundle.tokenizer

    def elapsed(self) -> float:
        return time.time() - self.t0

    def machine(self) -> dict:
        import torch

        return {"platform": platform.platform(), "threads": torch.get_num_threads(), "loadavg_start": self.load0,
                "loadavg_end": os.getloadavg()[0], "wall_seconds": self.elapsed(),
                "cpu_seconds": time.process_time() - self.cpu0}

    def command(self) -> str:
        flags = " ".join(f"--{k.replace('_', '-')} {v}" if not isinstance(v, bool) else f"--{k.replace('_', '-')}"
                         for k, v in vars(self.args).items() if v is not False)
        return f"python benchmarks/{Path(sys.argv[0]).name} {flags}"

    def write(self, result: dict, summary: dict) -> None:
        """Write {"command", **result, "machine"} to --out and print the summary."""
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"command": self.command(), **result, "machine": self.machine()}, indent=1,
                                  default=float))
        print(json.dumps(summary, indent=1, default=float))
        print(f"wrote {out}")


def spread(ds, n: int, min_bars: int) -> list[int]:
    """Up to n piece indices of `ds` with at least `min_bars` bars, spread evenly over the split."""
    ok = [i for i in range(len(ds)) if int(ds.meta(i).get("n_bars") or 0) >= min_bars]
    return [ok[j] for j in np.unique(np.linspace(0, len(ok) - 1, n).round().astype(int))]


def held_out_piece(tok, ds, i: int, max_bars: int | None = None):
    """Piece i of the split as a task input (its first `max_bars` bars; instruments from its metadata)."""
    from acemusic.generate.tasks.io import load_piece
    from acemusic.tokenizer import Conditions

    meta = ds.meta(i)
    body = np.asarray(ds.piece(i), np.int64)
    if max_bars is not None:
        body = tok.slice_bars(body, 0, min(len(tok.bar_starts(body)), max_bars))
    insts = tuple(sorted({int(p) for p in meta.get("instruments") or []})) or (0,)
    score = tok.decode(np.concatenate([tok.cond_prefix(Conditions(instruments=insts)), body, [tok.vocab.eos]]))
    return load_piece(tok, score, name=meta.get("id"))
