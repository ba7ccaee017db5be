"""Training attention, forward + backward: our chunked matmuls (`model.attention._chunked_attention`, what the
trainer runs on CPU) against torch's `scaled_dot_product_attention` (the CPU flash kernel), bf16 autocast, the
window+global mask of a real model (window 256, a global key every ~32 tokens), the same tokens per batch at every
length, interleaved rounds.

    .venv/bin/python benchmarks/train_attention.py [--preset mini] [--tokens 4096]

Run by hand on an idle machine. Writes benchmarks/results/train_attention.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def measure(T: int, B: int, cfg, rounds: int, g: torch.Generator) -> dict:
    """Median ms of forward + backward for both implementations at length T, batch B."""
    from acemusic.model.attention import AttnContext, _chunked_attention, build_mask

    H, G, D = cfg.n_head, cfg.n_kv_head, cfg.head_dim
    is_global = torch.zeros(B, T, dtype=torch.bool)
    is_global[:, ::32] = True
    mask = build_mask(T, cfg.window, is_global)
    x = torch.randn(B, T, H + 2 * G, D, generator=g, requires_grad=True)
    grad = torch.randn(B, H, T, D, generator=g)

    def ours(q, k, v):
        ctx = AttnContext(torch.empty(0), torch.empty(0), mask, is_causal=mask is None)
        return _chunked_attention(q, k, v, ctx.bias(T, q.dtype, q.device), 0.0)

    def sdpa(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=G != H)

    def step(fn) -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            q, k, v = x.to(torch.bfloat16).transpose(1, 2).split((H, G, G), dim=1)
            y = fn(q, k, v)
        y.backward(grad)
        return time.perf_counter() - t0

    fns = {"ours": ours, "sdpa": sdpa}
    for fn in fns.values():
        step(fn)
    ms: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            ms[name].append(1e3 * step(fn))
    med = {k: statistics.median(v) for k, v in ms.items()}
    row = {"length": T, "batch": B, "masked": mask is not None, "ours_ms": round(med["ours"], 2),
           "sdpa_ms": round(med["sdpa"], 2), "speedup": round(med["sdpa"] / med["ours"], 2)}
    print(row)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mini")
    ap.add_argument("--tokens", type=int, default=4096, help="batch x length, the same at every length")
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 384, 512, 1024])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_attention.json"))
    args = ap.parse_args()

    from acemusic.model import ModelConfig

    cfg = ModelConfig.preset(args.preset, vocab_size=736)
    H, G, D = cfg.n_head, cfg.n_kv_head, cfg.head_dim
    g = torch.Generator().manual_seed(0)
    rows = [measure(T, max(1, args.tokens // T), cfg, args.rounds, g) for T in args.lengths]
    result = {
        "what": "attention forward + backward, bf16 autocast, ms per call (median of interleaved rounds)",
        "preset": args.preset, "heads": [H, G], "head_dim": D, "window": cfg.window, "tokens": args.tokens,
        "rows": rows, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "loadavg": os.getloadavg(),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
