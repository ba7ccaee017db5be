"""Training throughput: our MusicTransformer vs transformers.GPT2LMHeadModel of the same width, depth, heads and
vocabulary, on the same batch, bf16 autocast for both, interleaved in one run. Also times our batch building.

    nice -n 10 .venv/bin/python benchmarks/train.py --preset small --batch 8 --seq 512 --data data/m21

Run by hand on an idle machine (check `uptime`: another busy process makes 2-thread torch crawl); the result file
records torch.get_num_threads() and the load average next to the numbers. Writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def real_batch(data: str, preset: str, batch: int, seq: int):
    """A training batch from the dataset (windows of `seq` tokens, padded), plus the ms it took to build one."""
    from acemusic.data.shards import TokenDataset
    from acemusic.tokenizer import Tokenizer
    from acemusic.train.batching import BatchStream
    from acemusic.train.config import TrainConfig

    ds = TokenDataset(data, "train")
    tok = Tokenizer(ds.vocab.config)
    cfg = TrainConfig.preset(preset, data=data, seq_len=seq, tokens_per_batch=batch * seq)
    stream = BatchStream(ds, tok, cfg)
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < 3.0 or n < 16:  # several pools: amortised cost per batch
        b = stream.next(n)
        n += 1
    ms = 1e3 * (time.perf_counter() - t0) / n
    # the longest batch of a pool, cut or padded to exactly (batch, seq) so both models see the same shape
    b = max((stream.next(n + k) for k in range(8)), key=lambda x: x.ids.shape[1])
    take = lambda a: np.resize(a, (batch, seq)) if a.shape != (batch, seq) else a
    arrays = {k: torch.from_numpy(take(getattr(b, k))) for k in ("ids", "targets", "bar_idx", "pos", "is_global")}
    arrays["loss_mask"] = torch.ones(batch, seq, dtype=torch.bool)
    arrays["text_emb"] = torch.from_numpy(np.resize(b.text_emb, (batch, b.text_emb.shape[1])))
    arrays["cond_mask"] = torch.ones(batch, dtype=torch.bool)
    return arrays, ms, len(tok.vocab)


def synthetic_batch(batch: int, seq: int, vocab: int):
    """Random tokens with a Bar every 32 tokens (so the window+global mask path runs as in training)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(20, vocab, (batch, seq + 1), generator=g)
    is_bar = torch.zeros(batch, seq + 1, dtype=torch.bool)
    is_bar[:, 6::32] = True
    bar_idx = is_bar.long().cumsum(1)
    return {
        "ids": ids[:, :-1], "targets": ids[:, 1:], "bar_idx": bar_idx[:, :-1],
        "pos": torch.randint(0, 96, (batch, seq), generator=g),
        "is_global": (is_bar | (bar_idx == 0))[:, :-1], "loss_mask": torch.ones(batch, seq, dtype=torch.bool),
        "text_emb": torch.nn.functional.normalize(torch.randn(batch, 384, generator=g), dim=-1),
        "cond_mask": torch.ones(batch, dtype=torch.bool),
    }


def time_steps(step_fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step_fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per model per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (ours, gpt2, ours, ...)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--data", default=None, help="dataset dir: time on a real batch and time batch building")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = ap.parse_args()

    from transformers import GPT2Config, GPT2LMHeadModel

    from acemusic.model import ModelConfig, MusicTransformer
    from acemusic.tokenizer.vocab import Vocab
    from acemusic.train.losses import next_token_loss

    load_before = os.getloadavg()
    data_ms = None
    if args.data:
        batch, data_ms, vocab_size = real_batch(args.data, args.preset, args.batch, args.seq)
    else:
        vocab_size = len(Vocab())
        batch = synthetic_batch(args.batch, args.seq, vocab_size)
    mcfg = ModelConfig.preset(args.preset, vocab_size=vocab_size)
    torch.manual_seed(0)
    ours = MusicTransformer(mcfg)
    gcfg = GPT2Config(vocab_size=vocab_size, n_positions=args.seq, n_embd=mcfg.d_model, n_layer=mcfg.n_layer,
                      n_head=mcfg.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1,
                      eos_token_id=2)
    gpt2 = GPT2LMHeadModel(gcfg)
    gpt2.config.use_cache = False
    bf16 = not args.no_bf16
    n_tok = args.batch * args.seq

    def make_step(model, forward):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
        model.train()

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = forward()
            next_token_loss(logits, batch["targets"], batch["loss_mask"], n_tok).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        return step

    b = batch
    steps = {
        "ours": make_step(ours, lambda: ours(b["ids"], b["bar_idx"], b["pos"], b["is_global"], b["text_emb"],
                                             b["cond_mask"])),
        "gpt2": make_step(gpt2, lambda: gpt2(input_ids=b["ids"]).logits),
    }
    for fn in steps.values():
        time_steps(fn, args.warmup)
    rates: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            rates[name].append(n_tok * args.steps / time_steps(fn, args.steps))
    med = {k: statistics.median(v) for k, v in rates.items()}
    result = {
        "what": "training tokens/s (forward + backward + AdamW), same batch, interleaved rounds, median",
        "preset": args.preset, "batch": [args.batch, args.seq], "bf16_autocast": bf16,
        "batch_source": "dataset" if args.data else "synthetic",
        "ours_tokens_per_s": round(med["ours"], 1), "gpt2_tokens_per_s": round(med["gpt2"], 1),
        "ratio_ours_over_gpt2": round(med["ours"] / med["gpt2"], 3),
        "rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "params": {"ours": sum(p.numel() for p in ours.parameters()),
                   "gpt2": sum(p.numel() for p in gpt2.parameters())},
        "model": {"d_model": mcfg.d_model, "n_layer": mcfg.n_layer, "n_head": mcfg.n_head,
                  "n_kv_head": mcfg.n_kv_head, "d_ff": mcfg.d_ff, "window": mcfg.window, "vocab": vocab_size},
        "batch_build_ms": None if data_ms is None else round(data_ms, 2),
        "torch_threads": torch.get_num_threads(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
