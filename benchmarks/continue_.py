"""Continuation on held-out pieces: does the continuation stay in the piece's key (meter and instruments are held
by construction, checked here too)?

For `--pieces` test-split pieces spread over the split (their first `--max-bars` bars as the input), continue by
`--bars` bars with the Bundle defaults (seed 0). Measured on the new notes: the share of pitched notes in the
input's scale (Krumhansl-Schmuckler key of the input, `constraints.scale_mask`; duration weighted, and the
input's own share for reference), whether the key estimated from
the new notes alone equals the input's, the pitch-class histogram overlap with the input; the input note table is
compared with the output's (kept note for note). Chance reference: the same measures of piece i's continuation
against piece i+1's key and histogram (a continuation that ignored its input would score like this).

    nohup nice -n 10 .venv/bin/python benchmarks/continue_.py --data data/m21 --pieces 40 \\
        --out benchmarks/results/continue.json > /tmp/continue.log 2>&1 &
"""

from __future__ import annotations

import time

import numpy as np
from heldout import Run, held_out_piece, spread, task_parser


def main() -> None:
    ap = task_parser(__doc__, "continue.json")
    ap.add_argument("--pieces", type=int, default=40)
    ap.add_argument("--bars", type=int, default=4)
    ap.add_argument("--max-bars", type=int, default=8)
    args = ap.parse_args()
    run = Run(args)

    from acemusic.data.analysis import estimate_key
    from acemusic.data.shards import TokenDataset
    from acemusic.eval.metrics import histogram_overlap
    from acemusic.generate.constraints import scale_mask
    from acemusic.generate.sampling import SamplingConfig
    from acemusic.generate.tasks.base import run_task
    from acemusic.generate.tasks.continuation import ContinueTask
    from acemusic.generate.tasks.io import note_table

    bundle, tok = run.bundle, run.tok
    ds = TokenDataset(args.data, args.split)
    chosen = spread(ds, args.pieces, 4)
    sampling = SamplingConfig(temperature=1.0, top_p=0.95, cfg=1.5)  # the Bundle defaults

    def pc(t: np.ndarray) -> np.ndarray:
        t = t[t[:, 4] != 128]
        return np.bincount(t[:, 2] % 12, weights=t[:, 1], minlength=12).astype(float)

    rows = []
    for k, i in enumerate(chosen):
        piece = held_out_piece(tok, ds, i, args.max_bars)
        score = piece.score
        t0 = time.time()
        out = run_task(ContinueTask(piece, bars=args.bars), bundle.ctx, sampling, seed=args.seed)
        secs = time.time() - t0
        end = piece.end_tick(tok)
        t = note_table(out)
        old, new = t[t[:, 0] < end], t[t[:, 0] >= end]
        new_p = new[new[:, 4] != 128]
        rows.append({
            "id": piece.name, "key": piece.cond.key, "mode": piece.cond.mode, "seconds": secs,
            "kept_note_for_note": bool(np.array_equal(old, note_table(score))),
            "meter_kept": out.time_signatures == score.time_signatures,
            "instruments_kept": set(new[:, 4].tolist()) <= set(piece.programs),
            "new_notes": len(new), "new_hist": pc(new).tolist(), "input_hist": pc(old).tolist(),
            "new_key": estimate_key(new_p[:, 2], new_p[:, 1])[:2] if len(new_p) else (None, None),
        })
        print(f"{k + 1}/{len(chosen)} {piece.name}: {len(new)} new notes ({secs:.0f}s)", flush=True)

    def in_scale(hist: list[float], ref: dict) -> float:
        """Duration-weighted share of the notes in `ref`'s scale."""
        h = np.asarray(hist)
        if ref["key"] is None or h.sum() == 0:
            return float("nan")
        return float(h[scale_mask(ref["key"], ref["mode"])[:12]].sum() / h.sum())

    def measures(r: dict, ref: dict) -> dict:
        return {"in_scale": in_scale(r["new_hist"], ref),
                "key_match": float(tuple(r["new_key"]) == (ref["key"], ref["mode"])),
                "pc_overlap": histogram_overlap(np.asarray(r["new_hist"]), np.asarray(ref["input_hist"]))}

    own = [measures(r, r) for r in rows]
    chance = [measures(r, rows[(j + 1) % len(rows)]) for j, r in enumerate(rows)]
    input_in_scale = [in_scale(r["input_hist"], r) for r in rows]

    def avg(ms: list[dict], key: str) -> float:
        return float(np.nanmean([m[key] for m in ms]))

    summary = {
        "pieces": len(rows), "bars": args.bars,
        "kept_note_for_note": all(r["kept_note_for_note"] for r in rows),
        "meter_kept": all(r["meter_kept"] for r in rows),
        "instruments_kept": all(r["instruments_kept"] for r in rows),
        "in_scale": avg(own, "in_scale"), "key_match": avg(own, "key_match"), "pc_overlap": avg(own, "pc_overlap"),
        "chance_in_scale": avg(chance, "in_scale"), "chance_key_match": avg(chance, "key_match"),
        "chance_pc_overlap": avg(chance, "pc_overlap"),
        "input_in_scale": float(np.nanmean(input_in_scale)),
    }
    run.write({"sampling": vars(sampling), "summary": summary, "rows": rows}, summary)


if __name__ == "__main__":
    main()
