"""Variations on held-out pieces: is the motif kept (motif similarity) while the variations differ from each other?

For `--pieces` test-split pieces (at least 6 bars, spread evenly over the split), `vary(n, strength)` writes
n variations (opening bar kept, a share `strength` of the other bars regenerated from both sides). Measured per
piece (generate/tasks/vary.py): motif similarity of each variation to the input (share of the input's 4-note
top-voice motifs, transposition-invariant, that occur in the variation), difference from the input and between
every pair of variations (1 - Jaccard of (onset, pitch, program) note sets). References on the same pieces:
the motif similarity of an unrelated piece (the next chosen piece) to the input, i.e. what "not recognisable"
scores, and of a variation regenerating every bar but the first (strength 1).

    nohup nice -n 10 .venv/bin/python benchmarks/vary.py --data data/m21 --pieces 30 \\
        --out benchmarks/results/vary.json > /tmp/vary.log 2>&1 &
"""

from __future__ import annotations

import time

import numpy as np
from heldout import Run, held_out_piece, spread, task_parser


def main() -> None:
    ap = task_parser(__doc__, "vary.json")
    ap.add_argument("--pieces", type=int, default=30)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--strength", type=float, default=0.5)
    ap.add_argument("--max-bars", type=int, default=16, help="vary the first N bars of longer pieces")
    args = ap.parse_args()
    run = Run(args)

    from acemusic.data.shards import TokenDataset
    from acemusic.generate.sampling import SamplingConfig
    from acemusic.generate.tasks.vary import motif_similarity, variation_stats, vary

    bundle, tok = run.bundle, run.tok
    ds = TokenDataset(args.data, args.split)
    chosen = spread(ds, args.pieces, 6)
    sampling = SamplingConfig(temperature=1.0, top_p=0.95, cfg=1.5)  # the Bundle defaults
    pieces = [held_out_piece(tok, ds, i, args.max_bars) for i in chosen]
    rows = []
    for k, p in enumerate(pieces):
        t0 = time.time()
        vs = [s for s, _ in vary(bundle.ctx, p, n=args.n, strength=args.strength, seed=args.seed,
                                 sampling=sampling)]
        st = variation_stats(p.score, vs)
        full = vary(bundle.ctx, p, n=1, strength=1.0, seed=args.seed + 1, sampling=sampling)[0][0]
        other = pieces[(k + 1) % len(pieces)]
        row = {"id": p.name, "bars": p.n_bars, "seconds": time.time() - t0, **st,
               "motif_similarity_strength1": motif_similarity(p.score, full),
               "motif_similarity_unrelated": motif_similarity(p.score, other.score)}
        rows.append(row)
        print(f"{k + 1}/{len(pieces)} {p.name}: motif {np.mean(st['motif_similarity']):.2f} "
              f"pairwise diff {st['mean_pairwise_difference']:.2f} ({row['seconds']:.0f}s)", flush=True)

    def mean(key: str) -> float:
        return float(np.mean([np.mean(r[key]) for r in rows]))

    summary = {
        "pieces": len(rows), "n": args.n, "strength": args.strength,
        "motif_similarity": mean("motif_similarity"),
        "motif_similarity_strength1": mean("motif_similarity_strength1"),
        "motif_similarity_unrelated": mean("motif_similarity_unrelated"),
        "difference_from_original": mean("difference_from_original"),
        "pairwise_difference": mean("pairwise_difference"),
        "min_pairwise_difference": float(min(min(r["pairwise_difference"]) for r in rows)),
        "pieces_where_motif_beats_unrelated": float(np.mean([np.mean(r["motif_similarity"])
                                                             > r["motif_similarity_unrelated"] for r in rows])),
    }
    run.write({"sampling": vars(sampling), "summary": summary, "rows": rows}, summary)


if __name__ == "__main__":
    main()
