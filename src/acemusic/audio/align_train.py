"""Train and evaluate the shared symbolic-audio embedding on paired excerpts (audio/excerpts.py directories).

    cfg = AlignTrainConfig(train=["data/audio/train"], val="data/audio/val", out="runs/align", steps=1500)
    model = train_align(cfg)
    res = evaluate_retrieval(model, "data/audio/test")   # recall@1/@10 both ways, with chance = k / N

Pairs are (the excerpt's body tokens, the log-mel of its render). Features are computed once and kept in memory;
each step draws `batch` pairs (in-batch negatives), with SpecAugment-style time and frequency masks on the audio
side as the only augmentation. The validation split (not the test split) is what the log reports during training;
the test split is scored once at the end. Test: `pytest tests/audio/test_align.py`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from acemusic.audio.align import (
    AlignConfig,
    AlignModel,
    audio_features,
    batch_mels,
    batch_tokens,
    recall_at_k,
    save_align,
)
from acemusic.audio.excerpts import read_index
from acemusic.errors import InputError


@dataclass
class AlignTrainConfig:
    train: list[str] = field(default_factory=list)
    val: str | None = None
    out: str = "runs/align"
    model: AlignConfig = field(default_factory=AlignConfig)
    steps: int = 1500
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.05
    time_masks: int = 2
    time_mask_frac: float = 0.1
    freq_masks: int = 2
    freq_mask_bands: int = 8
    log_every: int = 100
    max_minutes: float | None = None
    seed: int = 0
    threads: int = 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


@dataclass
class Pairs:
    tokens: list[list[int]]
    mels: list[torch.Tensor]  # (n_mels, frames) each
    pieces: list[str]
    programs: list[tuple[int, ...]] = field(default_factory=list)  # the re-drawn GM programs of each excerpt

    def __len__(self) -> int:
        return len(self.tokens)


def load_pairs(dirs: list[str] | str, cfg: AlignConfig) -> Pairs:
    """Every excerpt of `dirs` as (tokens, standardised log-mel)."""
    from acemusic.audio.io import load_audio

    dirs = [dirs] if isinstance(dirs, str) else dirs
    toks, mels, pieces, progs = [], [], [], []
    for d in dirs:
        for row in read_index(d):
            toks.append(row["tokens"])
            progs.append(tuple(row.get("programs", ())))
            mels.append(audio_features(load_audio(Path(d) / row["wav"], sr=cfg.sr).samples, cfg))
            pieces.append(row["piece"])
    if not toks:
        raise InputError(",".join(dirs), "no excerpts")
    return Pairs(toks, mels, pieces, progs)


def spec_augment(mel: torch.Tensor, rng: np.random.Generator, cfg: AlignTrainConfig) -> torch.Tensor:
    """Zero (= the clip mean after standardisation) a few time spans and mel bands of one (n_mels, F) feature."""
    mel = mel.clone()
    n_mels, n = mel.shape
    for _ in range(cfg.time_masks):
        w = int(rng.integers(0, max(1, int(cfg.time_mask_frac * n)) + 1))
        t0 = int(rng.integers(0, max(1, n - w + 1)))
        mel[:, t0: t0 + w] = 0.0
    for _ in range(cfg.freq_masks):
        w = int(rng.integers(0, cfg.freq_mask_bands + 1))
        f0 = int(rng.integers(0, max(1, n_mels - w + 1)))
        mel[f0: f0 + w] = 0.0
    return mel


def lr_at(step: int, cfg: AlignTrainConfig, elapsed_s: float = 0.0) -> float:
    """Warmup, then a cosine over whichever of `steps` / `max_minutes` runs out first (see codec_train.lr_at)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    if cfg.max_minutes:
        t = max(t, elapsed_s / (cfg.max_minutes * 60))
    t = min(1.0, t)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def embed_pairs(model: AlignModel, pairs: Pairs, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(symbolic (N, d), audio (N, d)) unit embeddings."""
    model.eval()
    s, a = [], []
    for i in range(0, len(pairs), batch):
        s.append(model.embed_symbolic(batch_tokens(pairs.tokens[i: i + batch], model.cfg.max_tokens)))
        a.append(model.embed_audio(*batch_mels(pairs.mels[i: i + batch])))
    return torch.cat(s).numpy(), torch.cat(a).numpy()


def retrieval_metrics(s: np.ndarray, a: np.ndarray) -> dict:
    """Recall@1/@10 symbolic->audio and audio->symbolic over N pairs, against chance (k / N)."""
    sim = s @ a.T
    n = len(s)
    return {"n_pairs": n,
            "sym_to_audio": {"r@1": recall_at_k(sim, 1), "r@10": recall_at_k(sim, 10)},
            "audio_to_sym": {"r@1": recall_at_k(sim.T, 1), "r@10": recall_at_k(sim.T, 10)},
            "chance": {"r@1": 1.0 / n, "r@10": min(1.0, 10.0 / n)},
            "median_rank_sym_to_audio": float(np.median((sim > np.diag(sim)[:, None]).sum(1)) + 1)}


def same_group_recall(sim: np.ndarray, groups: list, k: int) -> tuple[float, float, int]:
    """Recall@k when each query's candidates are only the pairs of its own group (e.g. the same instruments), over
    queries whose group has more than k members; returns (recall, chance, number of such queries)."""
    keys = np.array([hash(g) for g in groups])
    hits, chance, n = [], [], 0
    for i in range(len(sim)):
        cand = np.flatnonzero(keys == keys[i])
        if len(cand) <= k:
            continue
        row = sim[i, cand]
        own = row[np.flatnonzero(cand == i)[0]]
        hits.append(float((row > own).sum() < k))
        chance.append(k / len(cand))
        n += 1
    return (float(np.mean(hits)) if n else float("nan")), (float(np.mean(chance)) if n else float("nan")), n


def evaluate_retrieval(model: AlignModel, directory: str) -> dict:
    """retrieval_metrics over all pairs, plus recall@1 among pairs that share the same instruments: timbre alone
    cannot find the answer there, so it measures what the embedding reads of pitch and rhythm."""
    pairs = load_pairs(directory, model.cfg)
    s, a = embed_pairs(model, pairs)
    res = retrieval_metrics(s, a)
    if pairs.programs:
        r1, ch, n = same_group_recall(s @ a.T, pairs.programs, 1)
        res["same_instruments"] = {"sym_to_audio_r@1": r1, "chance_r@1": ch, "n_queries": n}
    return res


def train_align(cfg: AlignTrainConfig, log=print) -> AlignModel:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    train = load_pairs(cfg.train, cfg.model)
    val = load_pairs(cfg.val, cfg.model) if cfg.val else None
    if len(train) < 2:
        raise InputError("train", "need at least two pairs for in-batch negatives")
    model = AlignModel(cfg.model)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    log(f"{len(train)} train pairs, {len(val) if val else 0} val pairs, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    t0, losses = time.time(), []
    bsz = min(cfg.batch, len(train))
    with (out / "log.jsonl").open("a", encoding="utf-8") as logf:
        for step in range(cfg.steps):
            model.train()
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg, time.time() - t0)
            idx = rng.choice(len(train), size=bsz, replace=False)
            ids = batch_tokens([train.tokens[i] for i in idx], cfg.model.max_tokens)
            mel, mask = batch_mels([spec_augment(train.mels[i], rng, cfg) for i in idx])
            loss = model.loss(model.embed_symbolic(ids), model.embed_audio(mel, mask))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            last = step + 1 == cfg.steps
            over = cfg.max_minutes is not None and time.time() - t0 > cfg.max_minutes * 60
            if (step + 1) % cfg.log_every == 0 or last or over:
                rec = {"step": step + 1, "loss": round(float(np.mean(losses)), 4),
                       "temperature": round(float(1.0 / model.logit_scale.detach().exp()), 4),
                       "elapsed_s": round(time.time() - t0, 1)}
                if val is not None:
                    m = retrieval_metrics(*embed_pairs(model, val))
                    rec["val_s2a_r@1"], rec["val_s2a_r@10"] = m["sym_to_audio"]["r@1"], m["sym_to_audio"]["r@10"]
                    rec["val_a2s_r@1"] = m["audio_to_sym"]["r@1"]
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                log(" ".join(f"{k} {v}" for k, v in rec.items()))
                losses = []
            if over:
                log(f"time limit reached at step {step + 1}")
                break
    save_align(model.eval(), out / "final", {"train": cfg.to_dict(), "steps_done": step + 1,
                                             "train_pairs": len(train)})
    return model
