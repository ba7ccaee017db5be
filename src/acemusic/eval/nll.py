"""Held-out likelihood protocol, shared by the transformer and the baselines so their numbers are comparable.

Each evaluation piece is the sequence `cond_prefix(conditions from its metadata) + body + EOS`. The scored tokens are
the body tokens and the EOS (never the prefix, which is given), every one of them: the n-gram sees the full left
context by construction; the transformer scores long pieces in overlapping windows (`score_windows`) so every token
is predicted once, with as much left context as its window allows.

    seqs, starts = sequences_for_split("data/tokens", "test")
    total, n = ngram_nll(lm, seqs, starts)
    print(summarize(total, n))   # {"nll_per_token": ..., "perplexity": ..., "tokens": n}
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from acemusic.data.shards import TokenDataset
from acemusic.errors import InputError
from acemusic.tokenizer import Conditions, Tokenizer

SPLITS = ("train", "val", "test")


def conditions_from_meta(meta: dict, tok: Tokenizer) -> Conditions:
    """The prefix conditions of a piece, read from its metadata line (data/corpus.py PieceMeta as a dict).

    Density comes from a stored `density` (0..3) or else from `notes_per_bar`; instruments from `instruments`
    (GM programs, 128 = drums). Missing fields give the `*_none` tokens, exactly as at training time without dropout.
    """
    density = meta.get("density")
    if density is None and meta.get("notes_per_bar") is not None:
        density = tok.vocab.density_index(float(meta["notes_per_bar"])) - 1
    mode = meta.get("mode")
    return Conditions(
        style=meta.get("style"),
        key=None if meta.get("key") is None else int(meta["key"]),
        mode=mode if mode in ("major", "minor") else None,
        density=None if density is None else int(density),
        instruments=tuple(int(p) for p in meta.get("instruments") or ()),
    )


def piece_sequence(body: np.ndarray, meta: dict, tok: Tokenizer) -> tuple[np.ndarray, int]:
    """(prefix + body + EOS, index of the first scored token = len(prefix))."""
    prefix = tok.cond_prefix(conditions_from_meta(meta, tok))
    seq = np.concatenate([prefix, np.asarray(body, np.int64), [tok.vocab.eos]]).astype(np.int64)
    return seq, len(prefix)


def sequences_for_split(
    dataset_dir: str | Path, split: str, tok: Tokenizer | None = None
) -> tuple[list[np.ndarray], list[int]]:
    """Evaluation sequences of a split (prefix + body + EOS) and, for each, the index where scoring starts.

    `tok` defaults to a tokenizer with the dataset's own vocabulary (vocab.json).
    """
    if split not in SPLITS:
        raise InputError(split, f"unknown split; expected one of {', '.join(SPLITS)}")
    ds = TokenDataset(dataset_dir, split)
    tok = tok or Tokenizer(ds.vocab.config)
    if len(tok.vocab) != len(ds.vocab):
        raise InputError(dataset_dir, f"dataset vocabulary has {len(ds.vocab)} tokens, the tokenizer {len(tok.vocab)}")
    pairs = [piece_sequence(ds.piece(i), ds.meta(i), tok) for i in range(len(ds))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def n_scored(seqs: list[np.ndarray], starts: list[int]) -> int:
    """How many tokens the protocol scores (body + EOS of every piece)."""
    return int(sum(len(s) - st for s, st in zip(seqs, starts, strict=True)))


def ngram_nll(model, seqs: list[np.ndarray], starts: list[int]) -> tuple[float, int]:
    """Summed natural-log loss over the scored tokens and their count, for a `KneserNeyLM`."""
    losses = model.nll_many(seqs, starts)
    return float(losses.sum()), len(losses)


def score_windows(length: int, start: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows for a model with a bounded context: (lo, hi, first) = feed ids[lo:hi], score targets [first, hi).

    Target i is predicted from ids[:i] (inside the window: from ids[lo:i]). Every target in [start, length) is
    scored exactly once; after the first window each new window scores the last `stride` targets with
    `context - stride` tokens of overlap as extra left context (the usual strided-perplexity recipe).
    """
    if not 0 < stride < context:  # a window of `context` ids predicts at most `context - 1` targets
        raise ValueError(f"need 0 < stride < context, got stride {stride}, context {context}")
    if not 0 < start <= length:
        raise ValueError(f"need 0 < start <= length, got start {start}, length {length}")
    out = []
    hi = min(length, context)
    first = start
    while first < length:
        hi = max(hi, first + 1)
        lo = max(0, hi - context)
        out.append((lo, hi, first))
        first = hi
        hi = min(length, hi + stride)
    return out


def summarize(total_nll: float, n_tokens: int) -> dict:
    """Per-token NLL (nats), perplexity and the token count, for reports."""
    mean = total_nll / n_tokens if n_tokens else float("nan")
    return {"nll_per_token": mean, "perplexity": math.exp(mean) if n_tokens else float("nan"), "tokens": n_tokens}


def evaluate_ngram(
    dataset_dir: str | Path,
    order: int = 5,
    discount: float | None = None,
    splits: tuple[str, ...] = ("val", "test"),
    on_stage=None,
):
    """Fit a `KneserNeyLM` on the train split (same sequences as the model trains on) and score `splits`.

    Returns (model, report dict). `on_stage(name)` is called before each stage, for progress display.
    """
    import time

    from acemusic.eval.baselines import KneserNeyLM

    stage = on_stage or (lambda name: None)
    tok = Tokenizer(TokenDataset(dataset_dir, "train").vocab.config)
    stage("read train")
    train, _ = sequences_for_split(dataset_dir, "train", tok)
    stage("fit")
    t0 = time.perf_counter()
    lm = KneserNeyLM(order, discount).fit(train, vocab_size=len(tok.vocab))
    report: dict = {
        "model": f"kneser-ney-{order}gram",
        "order": order,
        "discount": "modified (Chen & Goodman)" if discount is None else discount,
        "discounts": {str(k + 1): d for k, d in enumerate(lm.discounts.round(4).tolist())},  # (D1, D2, D3+)
        "vocab_size": len(tok.vocab),
        "train_pieces": len(train),
        "train_tokens": int(sum(len(s) for s in train)),
        "fit_seconds": round(time.perf_counter() - t0, 2),
        "ngrams": {str(k): len(keys) for k, keys in zip(range(2, order + 1), lm.keys, strict=True)},
    }
    for split in splits:
        stage(f"score {split}")
        t0 = time.perf_counter()
        seqs, starts = sequences_for_split(dataset_dir, split, tok)
        total, n = ngram_nll(lm, seqs, starts)
        report[split] = {**summarize(total, n), "pieces": len(seqs), "seconds": round(time.perf_counter() - t0, 2)}
    return lm, report
