"""Training-step throughput of MusicTransformer vs Hugging Face GPT-2 of the same width, depth, heads and vocab.

One step = forward + loss + backward + AdamW step on a (batch x seq) batch, under bf16 autocast on CPU by default.
The two models alternate step by step so background load hits both alike; the median step time is reported.

    nice -n 10 .venv/bin/python benchmarks/model_speed.py                  # small preset, 8 x 512, bf16
    .venv/bin/python benchmarks/model_speed.py --preset tiny --steps 3 --seq 128
    .venv/bin/python benchmarks/model_speed.py --set n_head=3 --set n_kv_head=1 --out /tmp/speed.json
    .venv/bin/python benchmarks/model_speed.py --decode 4096 --no-train   # cached decoding: cost per token vs length

--cpu-time measures process CPU time instead of wall time: steadier when other jobs share the cores (use with
--threads 1, where CPU time is the work done).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import nullcontext
from dataclasses import replace

import torch
import torch.nn.functional as F


def music_batch(B: int, T: int, V: int, d_text: int, bar_every: int, g: torch.Generator) -> dict:
    """Random ids with a realistic structure: a Bar (global) token every `bar_every` tokens, a 9-token prefix."""
    t = torch.arange(T)
    is_bar = (t % bar_every) == 9
    is_global = (is_bar | (t < 9))[None].expand(B, T).clone()
    return dict(
        ids=torch.randint(1, V, (B, T), generator=g),
        bar_idx=torch.cumsum(is_bar.long(), 0)[None].expand(B, T).clone(),
        pos=torch.randint(0, 96, (B, T), generator=g),
        is_global=is_global,
        text_emb=torch.randn(B, d_text, generator=g),
        cond_mask=torch.rand(B, generator=g) > 0.1,
    )


def time_decode(model: torch.nn.Module, n: int, clock, seg: int = 512) -> list[dict]:
    """Prefill a 9-token prefix, then decode n tokens (batch 1, fp32, a Bar every 24 tokens); tokens/s per segment."""
    model.eval()
    g = torch.Generator().manual_seed(1)
    b = music_batch(1, n + 9, model.cfg.vocab_size, model.cfg.d_text, bar_every=24, g=g)
    cache = model.new_cache(1, max_global=n // 8 + 64)
    sl = slice(0, 9)
    model.prefill(b["ids"][:, sl], b["bar_idx"][:, sl], b["pos"][:, sl], b["is_global"][:, sl], b["text_emb"],
                  b["cond_mask"], cache)
    out, t0 = [], clock()
    with torch.inference_mode():
        for t in range(9, n + 9):
            model.decode_step(b["ids"][:, t], b["bar_idx"][:, t], b["pos"][:, t], b["is_global"][:, t], cache)
            if (t - 8) % seg == 0:
                dt = clock() - t0
                out.append({"upto": t - 8, "tokens_per_s": seg / dt})
                print(f"decode tokens {t - 8 - seg:5d}..{t - 8:5d}: {seg / dt:6.0f} tokens/s")
                t0 = clock()
    model.train()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small", help="ModelConfig preset")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16", help="autocast dtype")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a ModelConfig field, e.g. --set window=512 --set n_head=3 (repeatable)")
    ap.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing on")
    ap.add_argument("--gpt2-dropout", type=float, default=None,
                    help="GPT-2 dropout (default: the same as ours; HF's own default is 0.1)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-gpt2", action="store_true")
    ap.add_argument("--cpu-time", action="store_true", help="time with process CPU time, not wall time")
    ap.add_argument("--decode", type=int, default=0, help="also time cached decoding of this many tokens (batch 1)")
    ap.add_argument("--no-train", action="store_true", help="skip the training-step comparison")
    ap.add_argument("--out", default=None, help="write results as JSON here")
    args = ap.parse_args()

    from acemusic.model import ModelConfig, MusicTransformer, loss

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    V = 736  # acemusic vocabulary size (src/acemusic/tokenizer/vocab.py)
    cfg = ModelConfig.preset(args.preset, V)
    over = {}
    for item in args.set:
        key, _, value = item.partition("=")
        kind = type(getattr(cfg, key))
        over[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    cfg = replace(cfg, grad_checkpointing=args.grad_ckpt, **over)
    B, T = args.batch, args.seq
    g = torch.Generator().manual_seed(0)
    batch = music_batch(B, T, V, cfg.d_text, bar_every=24, g=g)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if args.dtype == "bf16" else nullcontext()

    ours = MusicTransformer(cfg).train()
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=True)  # fused: ~1 kernel, not ~10 per tensor

    def step_ours() -> None:
        with amp:
            logits = ours(**batch)
        loss(logits[:, :-1], batch["ids"][:, 1:]).backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    models = {"acemusic": (ours, step_ours)}
    if not args.no_gpt2:
        from transformers import GPT2Config, GPT2LMHeadModel

        p = cfg.dropout if args.gpt2_dropout is None else args.gpt2_dropout
        gcfg = GPT2Config(vocab_size=V, n_positions=T, n_embd=cfg.d_model, n_layer=cfg.n_layer, n_head=cfg.n_head,
                          resid_pdrop=p, embd_pdrop=p, attn_pdrop=p,
                          bos_token_id=1, eos_token_id=2)
        gpt2 = GPT2LMHeadModel(gcfg).train()
        if args.grad_ckpt:
            gpt2.gradient_checkpointing_enable()
        opt_gpt2 = torch.optim.AdamW(gpt2.parameters(), lr=1e-4, fused=True)

        def step_gpt2() -> None:
            with amp:
                logits = gpt2(input_ids=batch["ids"]).logits
            F.cross_entropy(logits[:, :-1].float().flatten(0, 1), batch["ids"][:, 1:].flatten()).backward()
            opt_gpt2.step()
            opt_gpt2.zero_grad(set_to_none=True)

        models["gpt2"] = (gpt2, step_gpt2)

    clock = time.process_time if args.cpu_time else time.perf_counter
    result = {
        "preset": args.preset, "config": cfg.to_dict(), "batch": B, "seq": T, "dtype": args.dtype,
        "threads": torch.get_num_threads(), "clock": "cpu" if args.cpu_time else "wall",
        "loadavg_1min": os.getloadavg()[0], "torch": torch.__version__, "models": {},
    }
    if args.decode:
        result["decode"] = time_decode(ours, args.decode, clock)
    if args.no_train:
        models = {}
    times: dict[str, list[float]] = {k: [] for k in models}
    for i in range(args.warmup + args.steps):
        for name, (_, step) in models.items():
            t0 = clock()
            step()
            if i >= args.warmup:
                times[name].append(clock() - t0)

    for name, (model, _) in models.items():
        med = statistics.median(times[name])
        n_params = sum(p.numel() for p in model.parameters())
        result["models"][name] = {"params": n_params, "step_s": med, "tokens_per_s": B * T / med}
        print(f"{name:9s} {n_params / 1e6:6.2f}M params  step {med * 1000:7.1f} ms  {B * T / med:8.0f} tokens/s")
    if "gpt2" in result["models"]:
        ratio = result["models"]["acemusic"]["tokens_per_s"] / result["models"]["gpt2"]["tokens_per_s"]
        result["ratio"] = ratio
        print(f"ratio acemusic / gpt2 = {ratio:.2f}x   (threads {result['threads']}, "
              f"load {result['loadavg_1min']:.2f}, window {cfg.window}, {args.dtype})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
