"""A small LSTM language model on the same token sequences: the neural baseline without attention or text.

Trained on the train split's `prefix + body + EOS` sequences (the ones the n-gram and the transformer see),
concatenated into one stream and cut into random windows (truncated backpropagation through time), with AdamW,
warmup and a time budget (the run stops after `minutes`, the learning rate decays linearly over that budget).
Scoring runs every held-out sequence from a zero state over its whole length (a recurrent model needs no windows),
under the shared protocol of `eval/nll.py` (prefix given, body + EOS scored). `LSTMSession` steps the hidden state
one token at a time for `sample_constrained`, so the baseline writes MIDI through the same grammar and decoder.

    cfg = LSTMConfig(vocab_size=len(tok.vocab))
    model, log = train_lstm(train_seqs, cfg, LSTMTrainConfig(minutes=25), val=(val_seqs, val_starts))
    save_lstm(model, "runs/lstm")             # lstm.safetensors + config.json, outside git
    total, n = lstm_nll(model, test_seqs, test_starts)

Tests (tiny config, seconds): `.venv/bin/python -m pytest tests/eval/test_lstm.py -q`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass
class LSTMConfig:
    vocab_size: int
    d_model: int = 256  # embedding = hidden size, so the output layer can share the embedding (tied)
    n_layers: int = 2
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LSTMConfig:
        return cls(**d)


@dataclass
class LSTMTrainConfig:
    seq_len: int = 256  # truncated BPTT window
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 50
    minutes: float | None = 25.0  # wall-time budget; None = none (then max_steps is the budget)
    max_steps: int | None = None  # stop after this many steps (or earlier, when the time budget runs out)
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 25


class LSTMLM(nn.Module):
    """Embedding -> n-layer LSTM -> tied output projection."""

    def __init__(self, cfg: LSTMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.lstm = nn.LSTM(cfg.d_model, cfg.d_model, cfg.n_layers, batch_first=True,
                            dropout=cfg.dropout if cfg.n_layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        # Keep nn.Embedding's N(0, 1) init: with a small init (std 0.05 was tried) the LSTM input and the tied
        # logits are tiny and training sat at the unigram loss (3.8 nats) for 150+ steps; with N(0, 1) the same
        # run reached 1.5 nats in 120 steps.

    def forward(self, ids: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        """ids (B, T) -> logits (B, T, V), new (h, c) each (n_layers, B, d)."""
        x = self.drop(self.emb(ids))
        y, state = self.lstm(x, state)
        return self.drop(y) @ self.emb.weight.T, state


# ---- training ------------------------------------------------------------------------------------------------


def _stream(seqs: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(s, np.int64) for s in seqs])


def lr_at(step: int, frac: float, cfg: LSTMTrainConfig) -> float:
    """Linear warmup over `warmup` steps, then linear decay to 10% as `frac` (time or steps used) goes to 1."""
    warm = min(1.0, (step + 1) / max(cfg.warmup, 1))
    return cfg.lr * warm * max(0.1, 1.0 - frac)


def train_lstm(
    train: Sequence[np.ndarray],
    cfg: LSTMConfig,
    tcfg: LSTMTrainConfig,
    val: tuple[Sequence[np.ndarray], Sequence[int]] | None = None,
    on_log: Callable[[dict], None] | None = None,
) -> tuple[LSTMLM, list[dict]]:
    """Train on random windows of the concatenated train sequences until the time or step budget is spent."""
    torch.manual_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    data = torch.from_numpy(_stream(train))
    if len(data) < tcfg.seq_len + 2:
        raise ValueError(f"need more than {tcfg.seq_len + 1} training tokens, got {len(data)}")
    if tcfg.minutes is None and tcfg.max_steps is None:
        raise ValueError("give a time budget (minutes), a step budget (max_steps) or both")
    model = LSTMLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    budget = None if tcfg.minutes is None else tcfg.minutes * 60.0
    t0 = time.perf_counter()
    log: list[dict] = []
    step = 0
    offsets = torch.arange(tcfg.seq_len + 1)
    while True:
        elapsed = time.perf_counter() - t0
        frac = 0.0 if budget is None else elapsed / budget if budget > 0 else 1.0
        if tcfg.max_steps is not None:
            frac = max(frac, step / tcfg.max_steps)
        if frac >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, frac, tcfg)
        starts = torch.from_numpy(rng.integers(0, len(data) - tcfg.seq_len - 1, tcfg.batch_size))
        batch = data[starts[:, None] + offsets[None, :]]  # (B, T + 1)
        model.train()
        logits, _ = model(batch[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
        opt.step()
        step += 1
        if step % tcfg.log_every == 0 or step == 1:
            row = {"step": step, "loss": round(loss.item(), 4), "lr": opt.param_groups[0]["lr"],
                   "seconds": round(time.perf_counter() - t0, 1), "tokens": step * tcfg.batch_size * tcfg.seq_len}
            log.append(row)
            if on_log is not None:
                on_log(row)
    final = {"step": step, "seconds": round(time.perf_counter() - t0, 1),
             "tokens": step * tcfg.batch_size * tcfg.seq_len, "final": True}
    if val is not None:
        total, n = lstm_nll(model, *val)
        final["val_nll_per_token"] = total / n if n else math.nan
    log.append(final)
    if on_log is not None:
        on_log(final)
    return model.eval(), log


# ---- scoring -------------------------------------------------------------------------------------------------


@torch.inference_mode()
def lstm_nll(model: LSTMLM, seqs: Sequence[np.ndarray], starts: Sequence[int],
             max_batch_tokens: int = 32768) -> tuple[float, int]:
    """(summed NLL in nats, tokens scored) of targets seq[start:] of every sequence, from a zero state.

    Sequences are sorted by length and batched with right padding (padding never influences earlier positions)."""
    model.eval()
    order = np.argsort([len(s) for s in seqs])
    total, n = 0.0, 0
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and (j - i + 1) * len(seqs[order[j]]) <= max_batch_tokens:
            j += 1
        idx = order[i:j]
        longest = max(len(seqs[k]) for k in idx)
        ids = np.zeros((len(idx), longest), np.int64)
        for r, k in enumerate(idx):
            ids[r, : len(seqs[k])] = seqs[k]
        logp = torch.log_softmax(model(torch.from_numpy(ids[:, :-1]))[0].float(), dim=-1)
        tgt = torch.from_numpy(ids[:, 1:])
        lp = logp.gather(-1, tgt[..., None])[..., 0].numpy()  # (B, T-1): log P(ids[t+1] | ids[:t+1])
        for r, k in enumerate(idx):
            lo, hi = max(int(starts[k]), 1) - 1, len(seqs[k]) - 1
            total -= float(lp[r, lo:hi].sum())
            n += hi - lo
        i = j
    return total, n


class LSTMSession:
    """One sequence being sampled: the hidden state after the prompt, stepped per token."""

    def __init__(self, model: LSTMLM) -> None:
        self.model = model.eval()
        self.state = None
        self.logits: torch.Tensor | None = None

    @torch.inference_mode()
    def start(self, prompt: np.ndarray) -> None:
        logits, self.state = self.model(torch.as_tensor(np.asarray(prompt, np.int64))[None])
        self.logits = logits[0, -1]

    def probs(self) -> np.ndarray:
        return torch.softmax(self.logits.double(), -1).numpy()

    @torch.inference_mode()
    def push(self, token: int) -> None:
        logits, self.state = self.model(torch.tensor([[int(token)]]), self.state)
        self.logits = logits[0, -1]


# ---- persistence ---------------------------------------------------------------------------------------------


def save_lstm(model: LSTMLM, out_dir: str | Path, extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "lstm.safetensors"))
    (out / "config.json").write_text(json.dumps({"model": model.cfg.to_dict(), **(extra or {})}, indent=1) + "\n")
    return out


def load_lstm(path: str | Path) -> LSTMLM:
    from safetensors.torch import load_file

    from acemusic.errors import InputError

    p = Path(path)
    if not (p / "lstm.safetensors").is_file() or not (p / "config.json").is_file():
        raise InputError(p, "not an LSTM baseline directory (lstm.safetensors + config.json)")
    model = LSTMLM(LSTMConfig.from_dict(json.loads((p / "config.json").read_text())["model"]))
    model.load_state_dict(load_file(str(p / "lstm.safetensors")))
    return model.eval()
