"""Decoding from a log-linear mixture of the model under several prompts (one KV cache per prompt).

    log p(x_t | x_<t) = sum_r w_r log p(x_t | x_<t, prompt_r) + const

One token is sampled per step for all rows under one grammar state, so the prompts may differ in length and
content (the engine's batched rows must share a length). Weights may be negative: (1 + s) cond - s uncond is
classifier-free guidance in log-probability space. Used by morph (A's context vs B's) and by infill (the
fill-in-the-middle prompt with the right side vs without it, see generate/tasks/infill.py).

Tests: `.venv/bin/python -m pytest tests/generate/test_interpolate.py tests/generate/test_infill.py -q`.
"""

from __future__ import annotations

import numpy as np
import torch

from acemusic.generate.engine import Request
from acemusic.generate.sampling import SamplingConfig, filter_logits, sample_next
from acemusic.generate.tasks.base import TaskContext


def mixture_decode(ctx: TaskContext, reqs: list[Request], offsets: list[int], weights: list[float],
                   state, sampling: SamplingConfig, seed: int, max_new_tokens: int,
                   on_step=None) -> np.ndarray:
    """Sample one sequence from the log-linear mixture of the model under several prompts (one KV cache each,
    prompts of any length). `state` is the shared grammar state; row r sees bar numbers offset by offsets[r].
    Threads as the engine picks them for one row at a time (`Engine.threads`)."""
    with ctx.engine.threads(1):
        return _mixture_decode(ctx, reqs, offsets, weights, state, sampling, seed, max_new_tokens, on_step)


@torch.inference_mode()
def _mixture_decode(ctx: TaskContext, reqs: list[Request], offsets: list[int], weights: list[float],
                    state, sampling: SamplingConfig, seed: int, max_new_tokens: int,
                    on_step=None) -> np.ndarray:
    from acemusic.generate.engine import Step

    eng = ctx.engine
    model, dev = eng.model, eng.device
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    caches, logits = [], []
    for r in reqs:
        ids = torch.as_tensor(np.asarray(r.prompt, np.int64), device=dev)[None]
        bar, pos, glob = (torch.as_tensor(np.asarray(x), device=dev)[None] for x in r.structure)
        cache = model.new_cache(1, max_global=int(np.asarray(r.structure[2]).sum()) + state.c.n_bars + 16,
                                device=dev)
        text, has = None, None
        if r.text_emb is not None:
            dtype = next(model.parameters()).dtype
            text = torch.as_tensor(np.asarray(r.text_emb, np.float32), device=dev)[None].to(dtype)
            has = torch.ones(1, dtype=torch.bool, device=dev)
        logits.append(model.prefill(ids, bar.long(), pos.long(), glob.bool(), text, has, cache)[0])
        caches.append(cache)
    w = np.asarray(weights, np.float32)[:, None]
    out: list[int] = []
    for step in range(max_new_tokens):
        if not state.closing and max_new_tokens - step <= state.c.n_bars - state.bar_index + 8:
            state.closing = True
        lp = torch.stack([torch.log_softmax(x.float(), -1) for x in logits]).cpu().numpy()  # (R, V)
        mixed = (w * lp).sum(0, keepdims=True)
        mask = state.allowed()
        bias = state.bias()
        if bias is not None:
            mixed = mixed + bias[None]
        mixed = filter_logits(np.where(mask[None], mixed, np.float32(-np.inf)), sampling)
        t = int(sample_next(mixed, gen, greedy=sampling.temperature == 0.0)[0])
        if not mask[t]:  # float rounding at the top of the CDF
            t = int(np.flatnonzero(mask)[0])
        state.advance(t)
        out.append(t)
        if on_step is not None:
            on_step(Step(step, np.array([t]), np.array([state.done]), [], [state]))
        if state.done:
            break
        bar, pos, glob = state.structure
        bar -= state.offset  # each row adds its own offset
        logits = [eng.decoder.step([t], [bar + off], [pos], np.array([glob]), cache)[0]
                  for cache, off in zip(caches, offsets, strict=True)]
    return np.asarray(out, np.int64)
