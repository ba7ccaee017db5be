"""Training windows and length-bucketed dynamic batches, deterministic from (seed, refill counter).

A training example is: a piece drawn by curriculum weights -> a window of whole bars (`Tokenizer.slice_bars`, so it
is self-contained) -> augmentation (transpose, tempo, instruments) -> the conditioning prefix built from the
AUGMENTED metadata, with tag dropout -> EOS if the window reaches the piece end; optionally rearranged for
bar-level fill-in-the-middle. Examples are drawn in pools, sorted by length and packed so that
rows * padded_len <= tokens_per_batch, which keeps padding small without biasing which windows are seen.

Every rank builds the same GLOBAL batch and keeps its own rows (`Batch.shard`), so the data of a step does not
depend on the number of ranks: two processes see exactly the rows one process would, split in two. The sampler's
state is three integers (pool counter, the step that pool was drawn at, batches consumed), so resume is exact.

Fill in the middle (docs/TOKENS.md), with the structure convention the infill task must reuse:
    prefix  bars[:a]  FillStart  bars[b:]  Sep  bars[a:b]  FillEnd
every segment keeps its true bar numbers (the suffix counts from b, the middle from a); the three sentinels are
global tokens at position 0 with the bar count of the bars before them in time (a, a, b). FillStart and Sep are
not predicted (they are given at inference); FillEnd is (the model says where the middle ends).
Test: `pytest tests/train/test_batching.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acemusic.data import augment
from acemusic.tokenizer import Conditions, Tokenizer
from acemusic.train.config import POLYPHONY_CLASSES, TrainConfig

POOL_BATCHES = 8  # batches per pool: enough windows to form similar-length groups
FIM_RESERVE = 11  # FillStart + Sep + FillEnd + state injected by two more slices (<= 4 each)
SLICE_RESERVE = 4  # slice_bars injects at most TimeSig, Tempo, Program, Velocity


@dataclass
class Example:
    """One sequence: `ids` = prefix + body (+ EOS). Positions in `no_loss` are not predicted."""

    ids: np.ndarray
    n_prefix: int
    bar_idx: np.ndarray
    pos: np.ndarray
    is_global: np.ndarray
    text: np.ndarray | None  # (d_text,) float32, None = no caption (null memory)
    no_loss: tuple[int, ...] = ()
    piece: int = -1


@dataclass
class Batch:
    """Right-padded arrays (B, T) with inputs = ids[:-1] and targets = ids[1:]; numpy, converted by the loop."""

    ids: np.ndarray  # int64
    targets: np.ndarray  # int64
    loss_mask: np.ndarray  # bool: body targets only (no prefix, no PAD, no given sentinels)
    bar_idx: np.ndarray
    pos: np.ndarray
    is_global: np.ndarray
    pad_mask: np.ndarray  # bool, True at PAD
    text_emb: np.ndarray  # (B, d_text) float32, zeros where cond_mask is False
    cond_mask: np.ndarray  # (B,) bool

    @property
    def n_tokens(self) -> int:
        return int(self.loss_mask.sum())

    def shard(self, index: int, n_shards: int) -> Batch:
        """Rows index::n_shards (rows are sorted by length, so shards get similar lengths), trimmed to their own
        longest row."""
        rows = slice(index, None, n_shards)
        keep = ~self.pad_mask[rows]
        t = int(keep.sum(1).max()) if keep.size else 0
        return Batch(*(a[rows, :t] for a in (self.ids, self.targets, self.loss_mask, self.bar_idx, self.pos,
                                              self.is_global, self.pad_mask)),
                     self.text_emb[rows], self.cond_mask[rows])


def collate(examples: list[Example], pad_id: int, d_text: int = 384) -> Batch:
    """Pad to the longest example; the loss mask covers targets past the prefix that are not in `no_loss`."""
    B = len(examples)
    T_ = max(len(e.ids) for e in examples) - 1
    ids = np.full((B, T_ + 1), pad_id, np.int64)
    bar_idx = np.zeros((B, T_ + 1), np.int64)
    pos = np.zeros((B, T_ + 1), np.int64)
    is_global = np.zeros((B, T_ + 1), bool)
    predict = np.zeros((B, T_ + 1), bool)  # True where the token at that index is a training target
    text = np.zeros((B, d_text), np.float32)
    cond = np.zeros(B, bool)
    for r, e in enumerate(examples):
        n = len(e.ids)
        ids[r, :n], bar_idx[r, :n], pos[r, :n], is_global[r, :n] = e.ids, e.bar_idx, e.pos, e.is_global
        predict[r, e.n_prefix:n] = True
        if e.no_loss:
            predict[r, list(e.no_loss)] = False
        if e.text is not None:
            text[r], cond[r] = e.text, True
    pad = ids[:, :-1] == pad_id
    return Batch(ids[:, :-1], ids[:, 1:], predict[:, 1:], bar_idx[:, :-1], pos[:, :-1], is_global[:, :-1], pad,
                 text, cond)


def pack(lengths: np.ndarray, tokens_per_batch: int, multiple: int = 1) -> list[np.ndarray]:
    """Group indices by length (longest first) so that rows * max_len <= tokens_per_batch; row counts are
    multiples of `multiple` (ranks x micro-batches; at least `multiple` even past the budget). A last group too
    small to give every shard a row is dropped."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    groups, i = [], 0
    while i < len(order):
        k = max(multiple, (tokens_per_batch // int(lengths[order[i]])) // multiple * multiple)
        g = order[i:i + k]
        g = g[: len(g) // multiple * multiple]
        if len(g) == 0:
            break
        groups.append(g)
        i += k
    return groups


class WindowMaker:
    """Builds `Example`s from a TokenDataset: window choice, augmentation, prefix, dropout, caption, FIM."""

    def __init__(self, ds, tok: Tokenizer, cfg: TrainConfig) -> None:
        self.ds, self.tok, self.cfg, self.v = ds, tok, cfg, tok.vocab
        self.metas = [ds.meta(i) for i in range(len(ds))]
        self.captions = ds.captions  # (n, K, d_text) float16 or None
        self.d_text = 384 if self.captions is None else int(self.captions.shape[-1])
        self._fill = (self.v.id("FillStart"), self.v.id("Sep"), self.v.id("FillEnd"))

    # ---- pieces -------------------------------------------------------------------------------------------
    def body(self, i: int) -> np.ndarray:
        return np.asarray(self.ds.piece(i), dtype=np.int64)

    def window_bounds(self, starts: np.ndarray, n: int, budget: int,
                      rng: np.random.Generator | None) -> tuple[int, int]:
        """Bars [a, b) of at most `budget` tokens (after slice_bars injection). The start is uniform over the bars
        whose window is full, plus the first start whose window reaches the end (so endings and EOS are seen);
        `rng=None` takes the window at bar 0 (validation)."""
        nb = len(starts)
        ends = np.append(starts[1:], n)  # token index where each bar ends
        # Tail windows: smallest a such that bars a.. fit (a > 0 pays the injection reserve).
        need = n - starts + np.where(np.arange(nb) > 0, SLICE_RESERVE, 0)
        fits = np.flatnonzero(need <= budget)
        a_last = int(fits[0]) if len(fits) else nb - 1
        a = 0 if rng is None or a_last == 0 else int(rng.integers(0, a_last + 1))
        room = budget - (SLICE_RESERVE if a > 0 else 0)
        b = int(np.searchsorted(ends, starts[a] + room, side="right"))
        return a, max(b, a + 1)

    # ---- one example --------------------------------------------------------------------------------------
    def example(self, i: int, rng: np.random.Generator | None) -> Example:
        """Training example from piece i (`rng=None`: validation, i.e. no augmentation, dropout or FIM, window at
        bar 0, first caption)."""
        cfg, v, tok, meta = self.cfg, self.v, self.tok, self.metas[i]
        train = rng is not None
        insts = sorted({int(p) for p in meta.get("instruments") or []})
        n_prefix = 5 + max(1, len(insts))
        fim = train and cfg.fim_rate > 0 and rng.random() < cfg.fim_rate
        budget = cfg.seq_len - n_prefix - (FIM_RESERVE if fim else 1)
        body = self.body(i)
        starts = tok.bar_starts(body)
        a, b = self.window_bounds(starts, len(body), budget, rng)
        w = tok.slice_bars(body, a, b)
        at_end = b == len(starts)
        if len(w) > budget:  # one bar longer than the budget: cut it (rare: very dense bars, tiny seq_len)
            w, at_end = w[:budget], False

        key, changed = meta.get("key"), False
        if train:
            if cfg.transpose_max > 0 and rng.random() < cfg.transpose_p:
                lo, hi = augment.transpose_range(v, body=w)
                s = augment.random_transpose(lo, hi, cfg.transpose_max, rng)
                if s:
                    w = augment.transpose(w, s, v)
                    key, changed = (None if key is None else (key + s) % 12), True
            if cfg.tempo_shift_bins > 0:
                w = augment.shift_tempo(w, int(rng.integers(-cfg.tempo_shift_bins, cfg.tempo_shift_bins + 1)), v)
            if cfg.program_remap_p > 0 and rng.random() < cfg.program_remap_p:
                mapping = augment.random_program_mapping(sorted(set(insts) | set(augment.programs_in(w, v))), rng)
                w = augment.remap_programs(w, mapping, v)
                insts = sorted(mapping.get(p, p) for p in insts)
                changed = True
        missing = set(augment.programs_in(w, v)) - set(insts)
        if missing:  # metadata that misses a program of the body: the prefix must name every program
            insts = sorted(set(insts) | missing)

        style, mode, density = meta.get("style"), meta.get("mode"), meta.get("density")
        text = self._caption(i, changed, rng)
        if train:
            if rng.random() < cfg.uncond_p:
                text, style, key, mode, density = None, None, None, None, None
            else:
                if rng.random() < cfg.text_dropout_p:
                    text = None
                drop = rng.random(4) < cfg.tag_dropout_p
                tags = (style, key, mode, density)
                style, key, mode, density = (None if d else x for d, x in zip(drop, tags, strict=True))
        prefix = tok.cond_prefix(Conditions(style=style, key=key, mode=mode, density=density,
                                            instruments=tuple(insts)))
        room = cfg.seq_len - len(prefix) - (0 if fim else int(at_end))
        if len(w) > room:  # only when the prefix grew past the reserve (metadata without the body's programs)
            w, at_end = w[:room], False
        if fim and len(starts) > 0 and int((w == v.bar).sum()) >= 2:
            return self._fim(prefix, w, text, rng, i)
        ids = np.concatenate([prefix, w, [v.eos] if at_end else []]).astype(np.int64)
        bar_idx, pos, is_global = tok.structure(ids)
        return Example(ids, len(prefix), bar_idx, pos, is_global, text, piece=i)

    def _caption(self, i: int, changed: bool, rng: np.random.Generator | None) -> np.ndarray | None:
        """A caption embedding: any caption, or only the core ones (no key, no instruments named) when the window
        was transposed or re-orchestrated. Validation uses caption 0."""
        if self.captions is None:
            return None
        meta = self.metas[i]
        n_caps = min(len(meta.get("captions") or []), self.captions.shape[1])
        lo = int(meta.get("n_full_captions", 0)) if changed else 0
        if n_caps <= lo:
            return None
        k = lo if rng is None else int(rng.integers(lo, n_caps))
        return np.asarray(self.captions[i, k], dtype=np.float32)

    def _fim(self, prefix: np.ndarray, w: np.ndarray, text, rng: np.random.Generator, i: int) -> Example:
        """Rearrange window `w` for fill-in-the-middle: a random middle [a, b) that leaves some context."""
        nbw = len(self.tok.bar_starts(w))
        a = int(rng.integers(0, nbw))
        b = int(rng.integers(a + 1, nbw + 1)) if a > 0 else int(rng.integers(1, nbw))  # keep some context
        ids, bar_idx, pos, is_global, no_loss = fim_sequence(self.tok, prefix, w, a, b)
        return Example(ids, len(prefix), bar_idx, pos, is_global, text, no_loss, piece=i)


def fim_sequence(tok: Tokenizer, prefix: np.ndarray, body: np.ndarray, a: int, b: int, with_middle: bool = True
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """`prefix bars[:a] FillStart bars[b:] Sep bars[a:b] FillEnd` with its structure (see the module docstring):
    (ids, bar_idx, pos, is_global, (index of FillStart, index of Sep)).

    `with_middle=False` stops after Sep: the infill prompt. Generated middle tokens then take bar indices
    a + (Bar tokens generated so far) and positions as usual, which is what training saw."""
    v = tok.vocab
    fs, sep, fe = v.id("FillStart"), v.id("Sep"), v.id("FillEnd")
    n = len(tok.bar_starts(body))

    def seg(x: int, y: int) -> np.ndarray:
        return tok.slice_bars(body, x, y) if y > x else np.zeros(0, np.int64)

    pre, suf = seg(0, a), seg(b, n)
    mid = seg(a, b) if with_middle else np.zeros(0, np.int64)
    head = np.concatenate([prefix, pre]).astype(np.int64)
    sentinel = lambda bars: (np.array([bars]), np.zeros(1, np.int64), np.ones(1, bool))
    parts = [tok.structure(head)]
    for bars_before, seg_ids, offset in ((a, suf, b), (a, mid, a)):  # FillStart + suffix, Sep + middle
        parts.append(sentinel(bars_before))
        bi, p, _ = tok.structure(seg_ids)
        parts.append((bi + offset, p, seg_ids == v.bar))
    if with_middle:
        parts.append(sentinel(b))
    ids = np.concatenate([head, [fs], suf, [sep], mid, [fe] if with_middle else []]).astype(np.int64)
    bar_idx, pos, is_global = (np.concatenate([p[k] for p in parts]) for k in range(3))
    no_loss = (len(head), len(head) + 1 + len(suf))  # FillStart and Sep are given, not predicted
    return ids, bar_idx.astype(np.int64), pos.astype(np.int64), is_global.astype(bool), no_loss


class CurriculumSampler:
    """Pieces weighted by length (windows they hold) times the current stage's class weight."""

    def __init__(self, maker: WindowMaker, cfg: TrainConfig) -> None:
        self.cfg = cfg
        classes = [m.get("polyphony", "polyphonic") for m in maker.metas]
        self.cls = np.array([POLYPHONY_CLASSES.index(c) if c in POLYPHONY_CLASSES else 1 for c in classes])
        n_tok = np.array([int(m.get("n_tokens") or 0) for m in maker.metas], np.float64)
        self.n_windows = np.maximum(1.0, np.ceil(n_tok / max(1, cfg.seq_len - 16)))
        self._cdf: dict[int, np.ndarray] = {}

    def stage(self, progress: float) -> int:
        for s, st in enumerate(self.cfg.curriculum):
            if progress < st.until:
                return s
        return len(self.cfg.curriculum) - 1

    def cdf(self, stage: int) -> np.ndarray:
        if stage not in self._cdf:
            w = self.cfg.curriculum[stage].weights
            per_class = np.array([w.get(c, 0.0) for c in POLYPHONY_CLASSES])
            p = per_class[self.cls] * self.n_windows
            if p.sum() <= 0:  # the stage names only classes this dataset lacks: fall back to the natural mix
                p = self.n_windows.copy()
            c = np.cumsum(p)
            self._cdf[stage] = c / c[-1]
        return self._cdf[stage]

    def draw(self, progress: float, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cdf(self.stage(progress)), rng.random(n), side="right"),
                          len(self.cls) - 1)


class BatchStream:
    """Global batches for training. `next(step)` returns the batch of that step; `state_dict()` is exact resume."""

    def __init__(self, ds, tok: Tokenizer, cfg: TrainConfig, n_shards: int = 1) -> None:
        if len(ds) == 0:
            raise ValueError("the training split is empty")
        self.cfg, self.tok, self.n_shards = cfg, tok, n_shards
        self.maker = WindowMaker(ds, tok, cfg)
        self.sampler = CurriculumSampler(self.maker, cfg)
        self.pool_index, self.pool_step, self.consumed = -1, 0, 0
        self._pool: list[Batch] = []

    def _build_pool(self, index: int, step: int) -> list[Batch]:
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, index])
        progress = step / cfg.max_steps
        examples: list[Example] = []
        target = POOL_BATCHES * cfg.tokens_per_batch
        total = 0
        while total < target:
            for i in self.sampler.draw(progress, 16, rng):
                e = self.maker.example(int(i), rng)
                examples.append(e)
                total += len(e.ids)
        groups = pack(np.array([len(e.ids) - 1 for e in examples]), cfg.tokens_per_batch, self.n_shards)
        batches = [collate([examples[j] for j in g], self.tok.vocab.pad, self.maker.d_text) for g in groups]
        return [batches[j] for j in rng.permutation(len(batches))]

    def next(self, step: int) -> Batch:
        if self.pool_index < 0 or self.consumed >= len(self._pool):
            self.pool_index += 1
            self.pool_step, self.consumed = step, 0
            self._pool = self._build_pool(self.pool_index, step)
        batch = self._pool[self.consumed]
        self.consumed += 1
        return batch

    def state_dict(self) -> dict:
        return {"pool_index": self.pool_index, "pool_step": self.pool_step, "consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.pool_index, self.pool_step, self.consumed = (int(state[k]) for k in ("pool_index", "pool_step",
                                                                                  "consumed"))
        self._pool = self._build_pool(self.pool_index, self.pool_step) if self.pool_index >= 0 else []


def val_batches(ds, tok: Tokenizer, cfg: TrainConfig, n_shards: int = 1) -> list[Batch]:
    """Fixed validation batches: `eval_windows` pieces spread evenly over the split, window at bar 0, no
    augmentation or dropout, first caption. Same every call, every run."""
    if len(ds) == 0:
        return []
    maker = WindowMaker(ds, tok, cfg)
    n = min(cfg.eval_windows, len(ds))
    pieces = np.unique(np.linspace(0, len(ds) - 1, n).round().astype(int))
    examples = [maker.example(int(i), None) for i in pieces]
    if len(examples) < n_shards:
        return []
    groups = pack(np.array([len(e.ids) - 1 for e in examples]), cfg.tokens_per_batch, n_shards)
    return [collate([examples[j] for j in g], tok.vocab.pad, maker.d_text) for g in groups]
