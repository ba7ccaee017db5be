"""x real time of `compose` for several checkpoints, one after the other in one process (same samples per seed).

    .venv/bin/python benchmarks/realtime_checkpoints.py [--seeds 8] [--out benchmarks/results/realtime_checkpoints.json]

For each checkpoint (default: the shipped acemusic-mini, the default, and acemusic-small), `compose_realtime` of
benchmarks/generate.py: 16 bars of "melancholic piano, slow, D minor", one candidate, seeds 0..N-1, without and with
guidance 1.5, the default decoder. Writes {checkpoint name: [unguided, guided]}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=Path, nargs="+",
                    default=[ROOT / "checkpoints" / "acemusic-mini", ROOT / "checkpoints" / "acemusic-small"])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "realtime_checkpoints.json")
    args = ap.parse_args()

    import generate as G

    from acemusic.api import load
    from acemusic.generate.tasks.base import TaskContext

    out = {}
    for path in args.checkpoints:
        b = load(path)
        ctx = TaskContext(b.engine, b.embedder)
        G.compose_realtime(ctx, 1.0, 1)  # warm up
        out[path.name] = [G.compose_realtime(ctx, cfg, args.seeds) for cfg in (1.0, 1.5)]
        print(path.name, out[path.name], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
