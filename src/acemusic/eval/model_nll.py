"""Held-out NLL of a MusicTransformer on exactly the targets the n-gram is scored on (protocol: eval/nll.py).

A piece is `prefix + body + EOS` (`nll.sequences_for_split`); the targets are the body tokens and the EOS, each
scored once. The n-gram sees every target's full left context. The transformer was trained on windows of at most
`seq_len` ids, so long pieces are scored in windows shaped like its training windows (train/batching.py):

    prefix  slice_bars(body, a, ...)  [EOS]      structure = tok.structure(window): bar index restarts at 1

- The targets are partitioned by `nll.score_windows` as if the prefix were re-fed with every window: the first
  window scores up to `budget` body tokens, each later one the next `stride` targets with `budget - stride` tokens
  of left context, where budget = context - len(prefix) - 4 leaves room for the state `slice_bars` injects.
- Each window's left edge moves forward to the first bar line at or after it, and the window is the prefix plus
  the self-contained slice from that bar (TimeSig/Tempo/Program/Velocity state injected, as in training), cut
  after its last target. Injected tokens are context only; they are never scored.
- When no bar line lies between the left edge and the first target (one bar longer than budget - stride tokens;
  the m21 corpus has none), the window starts mid-bar: prefix, Bar, the running TimeSig/Tempo/Program/Velocity,
  then the body tokens with their positions taken from the whole piece. Such windows are counted (`mid_bar`).

Every injected token is a function of the tokens before the window, so each factor is still a distribution over
the next token given its true history: the sum is a proper log-likelihood of the same tokens the n-gram scores.

Text condition: `text_emb[i]` (e.g. `first_captions(ds)`, what validation uses) with cond_mask True; None (or
`text_emb=None`) means the learned null memory, i.e. the unconditional model with the prefix tags kept.

    seqs, starts = sequences_for_split("data/m21", "test", tok)
    total, n = model_nll(model, tok, seqs, starts, 512, 256, text_emb=first_captions(ds))
    report = evaluate_perplexity("runs/small/model", "data/m21", "test")   # model vs 5-gram, for the CLI

Tests: tests/eval/test_model_nll.py. CLI: `acemusic eval nll` (cli/eval.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acemusic.eval.nll import score_windows
from acemusic.tokenizer import Tokenizer

STATE_RESERVE = 4  # slice_bars injects at most TimeSig, Tempo, Program, Velocity (train/batching SLICE_RESERVE)
STATE_TYPES = ("TimeSig", "Tempo", "Program", "Velocity")
GOAL_REDUCTION = 0.30  # GitHub issue "The model": at least 30% lower test NLL per token than the 5-gram


@dataclass
class Window:
    """One model input: `ids` (prefix + window tokens) with its structure; targets are `ids[score_at]`, each
    predicted from the logits at `score_at - 1`."""

    piece: int
    ids: np.ndarray
    bar_idx: np.ndarray
    pos: np.ndarray
    is_global: np.ndarray
    score_at: np.ndarray
    first_bar: int = 0  # bar of the piece the window starts in (at its bar line unless mid_bar)
    body_start: int = 0  # body index of the first body token in the window
    mid_bar: bool = False


@dataclass
class ModelScore:
    """Summed NLL (nats) over the scored tokens and how they were scored."""

    total_nll: float
    n_tokens: int
    pieces: int
    windows: int
    mid_bar_windows: int
    fed_tokens: int  # ids through the model, overlaps and re-fed prefixes included
    seconds: float
    cpu_seconds: float  # process CPU time: on a shared machine wall time says little


def first_captions(ds) -> list[np.ndarray | None]:
    """Caption 0 of every piece of a TokenDataset as float32 (None when it has no caption or no embeddings):
    the text validation uses (train/batching.py WindowMaker._caption with rng=None)."""
    out: list[np.ndarray | None] = []
    for i in range(len(ds)):
        n_caps = 0 if ds.captions is None else min(len(ds.meta(i).get("captions") or []), ds.captions.shape[1])
        out.append(np.asarray(ds.captions[i, 0], np.float32) if n_caps else None)
    return out


def _align(sl: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Index into `seg` of every token of `sl` (-1 for injected ones), where `sl` is `seg` with tokens inserted.

    Greedy matching is exact here: every token slice_bars injects differs in type from the original token after it.
    """
    out = np.full(len(sl), -1, np.int64)
    j = k = 0
    while len(sl) - k > len(seg) - j:  # insertions left
        if j < len(seg) and sl[k] == seg[j]:
            out[k] = j
            j += 1
        k += 1
    if not np.array_equal(sl[k:], seg[j:]):
        raise RuntimeError("slice_bars output is not the bar tokens with state inserted; update model_nll._align")
    out[k:] = np.arange(j, len(seg))
    return out


def _state_tokens(tok: Tokenizer, before: np.ndarray) -> list[int]:
    """The last TimeSig, Tempo, Program and Velocity token of `before` (those that occur), in that order."""
    ty = tok.vocab.type_of[before]
    out = []
    for name in STATE_TYPES:
        hits = np.flatnonzero(ty == tok.vocab.type_of[tok.vocab.id(name)])
        if len(hits):
            out.append(int(before[hits[-1]]))
    return out


def piece_windows(tok: Tokenizer, seq: np.ndarray, start: int, context: int, stride: int,
                  piece: int = 0) -> list[Window]:
    """The windows that score targets seq[start:] of one sequence (see the module docstring); each has at most
    `context` ids, of which the model is fed all but the last."""
    v = tok.vocab
    seq = np.asarray(seq, np.int64)
    prefix = seq[:start]
    n = len(seq) - start  # targets: body (+ EOS)
    has_eos = n > 0 and seq[-1] == v.eos
    body = seq[start:len(seq) - int(has_eos)]
    budget = context - start - STATE_RESERVE
    if not 0 < stride < budget:
        raise ValueError(f"need 0 < stride < context - prefix - {STATE_RESERVE} = {budget}, got stride {stride}")
    bars = tok.bar_starts(body)
    full_pos = None
    out = []
    for _, hi, first in score_windows(start + n, start, start + budget, stride):
        hi_b, first_b = hi - start, first - start  # body coordinates; index len(body) is the EOS
        lo_b = max(0, hi_b - budget)
        end = min(hi_b, len(body))  # body tokens [.., end) go in; the EOS is appended when hi_b > len(body)
        a = int(np.searchsorted(bars, lo_b))
        mid_bar = False
        if lo_b == 0:
            a, toks, orig = 0, body[:end], np.arange(end)
        elif a < len(bars) and bars[a] <= first_b:
            b = int(np.searchsorted(bars, end - 1, side="right"))
            seg_end = bars[b] if b < len(bars) else len(body)
            sl = tok.slice_bars(body, a, b)
            at = _align(sl, body[bars[a]:seg_end])
            orig = np.where(at >= 0, at + bars[a], -1)
            cut = int(np.flatnonzero(orig == end - 1)[0]) + 1
            toks, orig = sl[:cut], orig[:cut]
        else:  # a bar longer than budget - stride: start mid-bar, one token later to fit the Bar in the header
            mid_bar, lo_b = True, lo_b + 1
            a = int(np.searchsorted(bars, lo_b, side="right")) - 1
            head = [v.bar, *_state_tokens(tok, body[:lo_b])]
            toks = np.concatenate([head, body[lo_b:end]]).astype(np.int64)
            orig = np.concatenate([np.full(len(head), -1), np.arange(lo_b, end)])
        if hi_b > len(body):
            toks, orig = np.append(toks, v.eos), np.append(orig, len(body))
        ids = np.concatenate([prefix, toks]).astype(np.int64)
        orig = np.concatenate([np.full(start, -1), orig])
        bar_idx, pos, is_global = tok.structure(ids)
        if mid_bar:  # positions of the body tokens as in the whole piece (the window starts inside a bar)
            full_pos = tok.structure(body)[1] if full_pos is None else full_pos
            body_at = (orig >= 0) & (orig < len(body))
            pos[body_at] = full_pos[orig[body_at]]
        score_at = np.flatnonzero((orig >= first_b) & (orig < hi_b))
        assert len(ids) <= context and len(score_at) == hi_b - first_b
        lo_tok = int(orig[orig >= 0][0])
        out.append(Window(piece, ids, bar_idx, pos, is_global, score_at, a, lo_tok, mid_bar))
    return out


def _score_batch(model, windows: list[Window], texts: list[np.ndarray | None], d_text: int) -> np.ndarray:
    """Summed NLL of each window's targets in one right-padded forward pass (padding needs no mask: causal)."""
    import torch

    B, T = len(windows), max(len(w.ids) for w in windows) - 1
    ids = np.zeros((B, T), np.int64)  # PAD = 0
    bar_idx, pos = np.zeros((B, T), np.int64), np.zeros((B, T), np.int64)
    is_global, pad = np.zeros((B, T), bool), np.ones((B, T), bool)
    for r, w in enumerate(windows):
        t = len(w.ids) - 1
        ids[r, :t], bar_idx[r, :t], pos[r, :t] = w.ids[:-1], w.bar_idx[:-1], w.pos[:-1]
        is_global[r, :t], pad[r, :t] = w.is_global[:-1], False
    cond = np.array([x is not None for x in texts])
    text = None
    if cond.any():
        text = np.zeros((B, d_text), np.float32)
        text[cond] = np.stack([x for x in texts if x is not None])
    rows = np.concatenate([np.full(len(w.score_at), r) for r, w in enumerate(windows)])
    cols = np.concatenate([w.score_at - 1 for w in windows])
    targets = np.concatenate([w.ids[w.score_at] for w in windows])
    with torch.inference_mode():
        logits = model(torch.from_numpy(ids), torch.from_numpy(bar_idx), torch.from_numpy(pos),
                       torch.from_numpy(is_global), None if text is None else torch.from_numpy(text),
                       None if text is None else torch.from_numpy(cond), torch.from_numpy(pad))
        picked = logits[torch.from_numpy(rows), torch.from_numpy(cols)].double()  # (n_targets, V)
        nll = torch.logsumexp(picked, -1) - picked.gather(1, torch.from_numpy(targets)[:, None])[:, 0]
    return np.bincount(rows, weights=nll.numpy(), minlength=B)


def score_model(
    model,
    tok: Tokenizer,
    seqs: Sequence[np.ndarray],
    starts: Sequence[int],
    context: int = 512,
    stride: int = 256,
    text_emb: Sequence[np.ndarray | None] | np.ndarray | None = None,
    batch_size: int = 8,
    on_pieces: Callable[[int], None] | None = None,
) -> ModelScore:
    """Score every target of every sequence once (windows of `context` ids, `stride` new targets per window).

    Pieces are taken in groups of about 4 batches of windows, sorted by length inside a group so padding stays
    small; `on_pieces(k)` is called after each group with the number of pieces it finished.
    """
    if len(seqs) != len(starts) or (text_emb is not None and len(text_emb) != len(seqs)):
        raise ValueError("need one start (and one text embedding, if given) per sequence")
    t0, c0 = time.perf_counter(), time.process_time()
    d_text = model.cfg.d_text
    total, n_tok, n_win, n_mid, fed = 0.0, 0, 0, 0, 0
    pending: list[Window] = []
    done = 0

    def flush(upto: int) -> None:
        nonlocal total, pending, done
        order = sorted(pending, key=lambda w: len(w.ids))
        for i in range(0, len(order), batch_size):
            batch = order[i:i + batch_size]
            texts = [None if text_emb is None else text_emb[w.piece] for w in batch]
            texts = [None if x is None else np.asarray(x, np.float32) for x in texts]
            total += float(_score_batch(model, batch, texts, d_text).sum())
        pending = []
        if on_pieces is not None:
            on_pieces(upto - done)
        done = upto

    for i, (seq, st) in enumerate(zip(seqs, starts, strict=True)):
        ws = piece_windows(tok, seq, st, context, stride, piece=i)
        pending.extend(ws)
        n_win += len(ws)
        n_mid += sum(w.mid_bar for w in ws)
        n_tok += sum(len(w.score_at) for w in ws)
        fed += sum(len(w.ids) - 1 for w in ws)
        if len(pending) >= 4 * batch_size:
            flush(i + 1)
    if pending:
        flush(len(seqs))
    return ModelScore(total, n_tok, len(seqs), n_win, n_mid, fed, round(time.perf_counter() - t0, 2),
                      round(time.process_time() - c0, 2))


def model_nll(
    model,
    tok: Tokenizer,
    seqs: Sequence[np.ndarray],
    starts: Sequence[int],
    context: int = 512,
    stride: int = 256,
    text_emb: Sequence[np.ndarray | None] | np.ndarray | None = None,
    batch_size: int = 8,
) -> tuple[float, int]:
    """(summed NLL in nats, number of scored tokens) of the model over targets seq[start:] of every sequence."""
    r = score_model(model, tok, seqs, starts, context, stride, text_emb, batch_size)
    return r.total_nll, r.n_tokens


def evaluate_perplexity(
    checkpoint: str | Path,
    data: str | Path,
    split: str = "test",
    order: int = 5,
    context: int = 512,
    stride: int = 256,
    limit: int | None = None,
    batch_size: int = 8,
    uncond: bool = True,
    on_stage: Callable[[str, int | None], None] | None = None,
    on_advance: Callable[[int], None] | None = None,
) -> dict:
    """Model (with caption 0, and with the null text) against a Kneser-Ney n-gram fit on train, on the same
    targets of `split` (its first `limit` pieces). Returns the report dict the CLI prints and saves."""
    import torch

    from acemusic.data.shards import TokenDataset
    from acemusic.errors import InputError
    from acemusic.eval.baselines import KneserNeyLM
    from acemusic.eval.nll import ngram_nll, sequences_for_split, summarize
    from acemusic.model.checkpoint import load

    stage = on_stage or (lambda name, total: None)
    ds = TokenDataset(data, split)
    tok = Tokenizer(ds.vocab.config)
    model, meta = load(checkpoint, expected_vocab_size=len(tok.vocab))
    if "vocab" in meta and meta["vocab"] != tok.vocab.config.to_dict():
        raise InputError(checkpoint, f"checkpoint vocabulary differs from the dataset's ({Path(data) / 'vocab.json'})")
    seqs, starts = sequences_for_split(data, split, tok)
    texts = first_captions(ds)
    if limit is not None:
        seqs, starts, texts = seqs[:limit], starts[:limit], texts[:limit]

    stage(f"fit {order}-gram on train", None)
    t0 = time.perf_counter()
    train, _ = sequences_for_split(data, "train", tok)
    lm = KneserNeyLM(order).fit(train, vocab_size=len(tok.vocab))
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    total, n = ngram_nll(lm, seqs, starts)
    ngram = {**summarize(total, n), "order": order, "train_tokens": int(sum(len(s) for s in train)),
             "fit_seconds": round(fit_s, 2), "seconds": round(time.perf_counter() - t0, 2)}
    del train, lm

    runs = {"conditional": texts} if any(t is not None for t in texts) else {}
    if uncond or not runs:
        runs["unconditional"] = None
    results = {}
    for name, text in runs.items():
        stage(f"model, {'caption 0' if text is not None else 'null text'}", len(seqs))
        r = score_model(model, tok, seqs, starts, context, stride, text, batch_size, on_advance)
        if r.n_tokens != ngram["tokens"]:  # the whole comparison rests on this
            raise RuntimeError(f"model scored {r.n_tokens} tokens, the n-gram {ngram['tokens']}")
        results[name] = {**summarize(r.total_nll, r.n_tokens), "reduction_vs_ngram": None, "windows": r.windows,
                         "mid_bar_windows": r.mid_bar_windows, "fed_tokens": r.fed_tokens, "seconds": r.seconds,
                         "cpu_seconds": r.cpu_seconds}
        results[name]["reduction_vs_ngram"] = 1.0 - results[name]["nll_per_token"] / ngram["nll_per_token"]

    headline = next(iter(results))  # the conditional score when the split has captions: how the model is used
    train_cfg = meta.get("train") if isinstance(meta.get("train"), dict) else {}
    stats_path = Path(data) / "stats.json"
    return {
        "split": split,
        "pieces": len(seqs),
        "limit": limit,
        "protocol": {"context": context, "stride": stride, "batch_size": batch_size,
                     "text": "caption 0 of each piece (conditional); learned null memory, tags kept (unconditional)",
                     "windows": "prefix + slice_bars from a bar line, structure restarting per window (see "
                                "acemusic.eval.model_nll)"},
        "checkpoint": {"path": str(checkpoint), "steps": meta.get("steps"), "tokens_seen": meta.get("tokens_seen"),
                       "val_loss": meta.get("val_loss"), "completed": meta.get("completed"),
                       "train_seq_len": train_cfg.get("seq_len"), "model": model.cfg.to_dict(),
                       "parameters": sum(p.numel() for p in model.parameters())},
        "dataset": {"path": str(data), "n_captioned": sum(t is not None for t in texts),
                    "stats": json.loads(stats_path.read_text()) if stats_path.is_file() else None},
        "ngram": ngram,
        "model": results,
        "goal": {"nll_reduction": GOAL_REDUCTION, "measured_on": headline,
                 "met": results[headline]["reduction_vs_ngram"] >= GOAL_REDUCTION},
        "torch": {"version": torch.__version__, "threads": torch.get_num_threads()},
    }
