"""Morph A -> B on held-out pieces: do the pitch-class and rhythm statistics move from A to B step by step?

Pairs of test-split pieces (at least `--bars` + 2 bars each, spread evenly over the split, piece i paired with
piece i + n/2, so pairs mix collections, keys and meters). For each pair, `morph(A, B, bars, steps)` gives A's
opening, steps-2 mixtures with weight k/(steps-1) on B, and B's opening; `morph_stats` scores every step:
pitch-class / rhythm histogram overlap with A and with B, and progress = dA / (dA + dB) (0 = A, 1 = B).
A control on the same pairs: every intermediate step sampled with w = 0.5 (no schedule), which tells how much of
the movement comes from the weight schedule rather than from the endpoints.

    nohup nice -n 10 .venv/bin/python benchmarks/morph.py --data data/m21 --pairs 20 \\
        --out benchmarks/results/morph.json > /tmp/morph.log 2>&1 &
"""

from __future__ import annotations

import time

import numpy as np
from heldout import Run, held_out_piece, spread, task_parser


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    r = spearmanr(x, y).statistic
    return float(r) if np.isfinite(r) else 0.0


def main() -> None:
    ap = task_parser(__doc__, "morph.json")
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--bars", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--no-control", action="store_true", help="skip the constant-weight control")
    args = ap.parse_args()
    run = Run(args)

    from acemusic.data.shards import TokenDataset
    from acemusic.generate.tasks import interpolate as interp

    bundle, tok = run.bundle, run.tok
    ds = TokenDataset(args.data, args.split)
    chosen = spread(ds, 2 * args.pairs, args.bars + 2)
    half = len(chosen) // 2
    pairs = list(zip(chosen[:half], chosen[half:2 * half], strict=True))

    def piece(i: int):
        return held_out_piece(tok, ds, i)

    rows = []
    for k, (ia, ib) in enumerate(pairs):
        a, b = piece(ia), piece(ib)
        t0 = time.time()
        steps = interp.morph(bundle.ctx, a, b, bars=args.bars, steps=args.steps, seed=args.seed)
        row = {"a": a.name, "b": b.name, "stats": interp.morph_stats(steps), "seconds": time.time() - t0}
        if not args.no_control:  # same pair, every intermediate step at w = 0.5
            ctl = [steps[0]]
            for j in range(1, args.steps - 1):
                ctl.append(interp.morph(bundle.ctx, a, b, bars=args.bars, steps=3, seed=args.seed + j)[1])
            ctl.append(steps[-1])
            row["control_stats"] = interp.morph_stats(ctl)
        rows.append(row)
        print(f"pair {k + 1}/{len(pairs)} {a.name} -> {b.name}: progress "
              f"{[round(s['progress'], 2) for s in row['stats']]} ({row['seconds']:.0f}s)", flush=True)

    mid = range(1, args.steps - 1)

    def per_step(key: str, which: str = "stats") -> list[float]:
        return [float(np.mean([r[which][s][key] for r in rows])) for s in range(args.steps)]

    def rho(which: str) -> float:
        vals = [spearman(np.array(list(mid), float), np.array([r[which][s]["progress"] for s in mid]))
                for r in rows]
        return float(np.mean(vals))

    def monotone(which: str) -> float:
        return float(np.mean([all(r[which][s]["progress"] <= r[which][s + 1]["progress"] for s in range(
            args.steps - 1)) for r in rows]))

    summary = {
        "pairs": len(rows), "bars": args.bars, "steps": args.steps,
        "progress_per_step": per_step("progress"),
        "pitch_class_overlap_a_per_step": per_step("pitch_class_overlap_a"),
        "pitch_class_overlap_b_per_step": per_step("pitch_class_overlap_b"),
        "rhythm_overlap_a_per_step": per_step("rhythm_overlap_a"),
        "rhythm_overlap_b_per_step": per_step("rhythm_overlap_b"),
        "spearman_step_vs_progress_mean": rho("stats"),
        "monotone_pairs": monotone("stats"),
    }
    if not args.no_control:
        summary["control_w05"] = {"progress_per_step": per_step("progress", "control_stats"),
                                  "spearman_step_vs_progress_mean": rho("control_stats"),
                                  "monotone_pairs": monotone("control_stats")}
    run.write({"summary": summary, "rows": rows}, summary)


if __name__ == "__main__":
    main()
