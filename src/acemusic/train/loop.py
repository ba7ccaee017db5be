"""train(cfg): the training loop. No framework: build, step, log, evaluate, checkpoint, resume, export.

    from acemusic.train import TrainConfig, train
    train(TrainConfig.preset("tiny", data="data/m21", out="runs/tiny"))

Files in cfg.out (only rank 0 writes):
    train_config.json    the TrainConfig of the run
    log.jsonl            one JSON object per logged step ({"step", "loss", "lr", "grad_norm", "tokens_per_s", ...})
                         and per evaluation ({"step", "val_loss"})
    checkpoint/state.pt  model + optimizer + data stream + RNG + step: `--resume` continues exactly from it
    model/               shipping checkpoint (acemusic.model.checkpoint.save, fp16) with meta: vocab, train config,
                         steps, tokens seen, val loss; written at the end and when stopped by SIGTERM/SIGINT

Exactness: the batch of step s depends only on (seed, s) through the stream state saved in the checkpoint, the
optimizer state is saved whole and the lr is a pure function of the step, so a resumed run reproduces the losses of
an uninterrupted one (tests/train/test_loop.py). Test: `pytest tests/train/test_loop.py`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from acemusic.errors import InputError
from acemusic.train import distributed as D
from acemusic.train.batching import Batch, BatchStream, val_batches
from acemusic.train.config import TrainConfig
from acemusic.train.losses import next_token_loss
from acemusic.train.optim import build_optimizer, lr_at, set_lr

STATE = "checkpoint/state.pt"
LOG = "log.jsonl"
CONFIG = "train_config.json"
EXPORT = "model"
OUR_FILES = (STATE, LOG, CONFIG, EXPORT, "checkpoint")


@dataclass
class TrainResult:
    step: int
    tokens_seen: int
    losses: dict[int, float] = field(default_factory=dict)  # step -> global training loss (this process's run)
    val_loss: float | None = None
    stopped: bool = False  # True when a signal ended the run before max_steps


# ---- output directory -----------------------------------------------------------------------------------------
def check_out_dir(out: Path, resume: bool, force: bool) -> None:
    """Refuse to train into a non-empty directory unless resuming (which needs a checkpoint) or forced."""
    if resume:
        if not (out / STATE).is_file():
            raise InputError(out, f"nothing to resume: {out / STATE} does not exist")
        return
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError(out, "output directory is not empty; pass --resume to continue or --force to start over")


def _clear_ours(out: Path) -> None:
    """--force: remove the files a previous run wrote (and nothing else the user keeps there)."""
    for name in OUR_FILES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


# ---- signals ----------------------------------------------------------------------------------------------------
class StopFlag:
    """SIGTERM/SIGINT set a flag; the loop finishes its step, checkpoints and exits. A second SIGINT aborts."""

    def __init__(self) -> None:
        self.set = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.set and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.set = True

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


# ---- helpers ----------------------------------------------------------------------------------------------------
def _tensors(b: Batch, device: str) -> dict[str, torch.Tensor]:
    t = {k: torch.from_numpy(getattr(b, k)).to(device) for k in
         ("ids", "targets", "loss_mask", "bar_idx", "pos", "is_global", "pad_mask", "text_emb", "cond_mask")}
    return t


def _forward(model: torch.nn.Module, t: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(t["ids"], t["bar_idx"], t["pos"], t["is_global"], t["text_emb"], t["cond_mask"], t["pad_mask"])


def _autocast(cfg: TrainConfig, device: str):
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=cfg.bf16)


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list[Batch], cfg: TrainConfig, info: D.DistInfo) -> float | None:
    """Mean next-token loss over the fixed validation batches (rows split across ranks, sums all-reduced)."""
    if not batches:
        return None
    model.eval()
    total, count = 0.0, 0.0
    for b in batches:
        t = _tensors(b.shard(info.rank, info.world_size), info.device)
        with _autocast(cfg, info.device):
            logits = _forward(model, t)
        total += float(next_token_loss(logits, t["targets"], t["loss_mask"], 1))
        count += float(t["loss_mask"].sum())
    model.train()
    total, count = D.all_reduce_sum([total, count])
    return total / max(count, 1.0)


def _write_log(out: Path, record: dict) -> None:
    with (out / LOG).open("a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_log(out: Path, step: int) -> None:
    """On resume, drop log records of steps after the checkpoint (a killed run logged them, the resumed run
    will log them again)."""
    path = out / LOG
    if path.is_file():
        keep = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
        path.write_text("".join(line + "\n" for line in keep))


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load_data(cfg: TrainConfig):
    from acemusic.data.shards import TokenDataset
    from acemusic.tokenizer import Tokenizer

    if not cfg.data or not Path(cfg.data).is_dir():
        raise InputError(cfg.data or "--data", "dataset directory does not exist (build one with acemusic data build)")
    ds = TokenDataset(cfg.data, "train")
    val = TokenDataset(cfg.data, "val")
    tok = Tokenizer(ds.vocab.config)
    if tok.vocab.tokens != ds.vocab.tokens:
        raise InputError(cfg.data, "dataset vocabulary does not match this tokenizer; rebuild the dataset")
    if len(ds) == 0:
        raise InputError(cfg.data, "the train split has no pieces")
    return ds, val, tok


# ---- the loop ---------------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, resume: bool = False, force: bool = False, quiet: bool = False,
          stop_at: int | None = None) -> TrainResult:
    """Train (or continue training) the model described by `cfg`; see the module docstring. `stop_at` ends the
    run after that step as a signal would (checkpoint, export, exit): the resume test uses it."""
    from acemusic.model import ModelConfig, MusicTransformer
    from acemusic.model.checkpoint import save as save_export

    cfg.validate()
    info = D.setup()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.out)
    check_out_dir(out, resume, force)  # every rank checks before rank 0 writes anything
    D.barrier()
    if info.is_main:
        if force and not resume:
            _clear_ours(out)
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / CONFIG)
    ds, val_ds, tok = _load_data(cfg)

    mcfg = ModelConfig.preset(cfg.model_preset, vocab_size=len(tok.vocab), grad_checkpointing=cfg.grad_checkpointing)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = MusicTransformer(mcfg).to(info.device)
    model = D.wrap(model, info, cfg.fsdp)
    optimizer = build_optimizer(model, cfg)
    accum, world = cfg.grad_accum, info.world_size
    stream = BatchStream(ds, tok, cfg, n_shards=math.lcm(cfg.row_multiple, world * accum))
    val = val_batches(val_ds, tok, cfg, n_shards=math.lcm(cfg.row_multiple, world))

    step, tokens_seen, val_loss = 0, 0, None
    if resume:
        state = torch.load(out / STATE, map_location="cpu", weights_only=False)
        D.load_states(model, optimizer, state["model"], state["optimizer"], cfg.fsdp)
        stream.load_state_dict(state["stream"])
        step, tokens_seen, val_loss = state["step"], state["tokens_seen"], state.get("val_loss")
        rng = state.get("rng") or []
        if len(rng) == world:
            torch.set_rng_state(rng[info.rank])
        if info.is_main:
            _truncate_log(out, step)
    else:
        torch.manual_seed(D.rank_seed(cfg.seed, info.rank))  # dropout noise differs across ranks

    def checkpoint() -> None:
        msd = D.model_state(model, cfg.fsdp)
        osd = D.optimizer_state(model, optimizer, cfg.fsdp)
        rngs = [torch.get_rng_state()]
        if info.enabled:
            rngs = [None] * world
            torch.distributed.all_gather_object(rngs, torch.get_rng_state())
        if info.is_main:
            _atomic_save({"step": step, "tokens_seen": tokens_seen, "val_loss": val_loss, "model": msd,
                          "optimizer": osd, "stream": stream.state_dict(), "rng": rngs,
                          "train_config": cfg.to_dict(), "model_config": mcfg.to_dict()}, out / STATE)
        D.barrier()

    def export(completed: bool) -> None:
        msd = D.model_state(model, cfg.fsdp)
        if info.is_main:
            m = MusicTransformer(mcfg)
            m.load_state_dict(msd)
            meta = {"vocab": tok.vocab.config.to_dict(), "train": cfg.to_dict(), "steps": step,
                    "tokens_seen": tokens_seen, "val_loss": val_loss, "completed": completed,
                    "data": str(cfg.data), "n_train_pieces": len(ds)}
            save_export(m, out / EXPORT, meta, dtype=torch.float16)
        D.barrier()

    console = _Console(quiet or not info.is_main)
    console.header(cfg, mcfg, info, sum(p.numel() for p in D.unwrap(model).parameters()), len(ds), step)
    result = TrainResult(step, tokens_seen, val_loss=val_loss)
    model.train()
    last_log = step
    window_tokens, window_time, window_data = 0, 0.0, 0.0
    with StopFlag() as stop:
        while step < cfg.max_steps:
            t0 = time.perf_counter()
            lr = lr_at(step, cfg)
            set_lr(optimizer, lr)
            batch = stream.next(step)
            t_data = time.perf_counter() - t0
            n_global = batch.n_tokens
            optimizer.zero_grad(set_to_none=True)
            local_loss, local_tokens = 0.0, 0
            for m in range(accum):
                t = _tensors(batch.shard(m * world + info.rank, world * accum), info.device)
                local_tokens += int((~t["pad_mask"]).sum())
                sync = contextlib.nullcontext()
                if m < accum - 1 and isinstance(model, torch.nn.parallel.DistributedDataParallel):
                    sync = model.no_sync()
                with sync:
                    with _autocast(cfg, info.device):
                        logits = _forward(model, t)
                    # Gradient reductions average over ranks, so scale by the world size: the sum over ranks of
                    # these losses is the mean over the global batch.
                    loss = next_token_loss(logits, t["targets"], t["loss_mask"], n_global) * world
                    loss.backward()
                local_loss += float(loss.detach()) / world
            clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            optimizer.step()
            step += 1
            stopping = stop.set or (stop_at is not None and step >= stop_at)
            g_loss, g_tokens, g_stop = D.all_reduce_sum([local_loss, float(local_tokens), float(stopping)])
            tokens_seen += int(g_tokens)
            dt = time.perf_counter() - t0
            window_tokens, window_time = window_tokens + int(g_tokens), window_time + dt
            window_data += t_data
            result.losses[step] = g_loss
            if step % cfg.log_interval == 0 or step == cfg.max_steps:
                n_logged = step - last_log
                rec = {"step": step, "loss": g_loss, "lr": lr, "grad_norm": round(grad_norm, 4),
                       "tokens_per_s": round(window_tokens / max(window_time, 1e-9), 1),
                       "tokens_seen": tokens_seen, "batch": list(batch.ids.shape),
                       "data_ms": round(1e3 * window_data / n_logged, 2),
                       "time": round(time.time(), 1)}
                window_tokens, window_time, window_data, last_log = 0, 0.0, 0.0, step
                if info.is_main:
                    _write_log(out, rec)
                console.step(rec, cfg)
            if step % cfg.eval_interval == 0 or step == cfg.max_steps:
                val_loss = evaluate(model, val, cfg, info)
                if val_loss is not None:
                    if info.is_main:
                        _write_log(out, {"step": step, "val_loss": round(val_loss, 5)})
                    console.val(step, val_loss)
            if step % cfg.ckpt_interval == 0 or step == cfg.max_steps or g_stop > 0:
                result.step, result.tokens_seen = step, tokens_seen
                checkpoint()
            if g_stop > 0:
                result.stopped = True
                console.note(f"stopped at step {step}: checkpoint saved, continue with --resume")
                break
    export(completed=not result.stopped)
    result.step, result.tokens_seen, result.val_loss = step, tokens_seen, val_loss
    shown = "n/a" if val_loss is None else f"{val_loss:.4f}"
    console.note(f"done: step {step}, {tokens_seen:,} tokens, val loss {shown}; model in {out / EXPORT}")
    return result


class _Console:
    """Rank-0 console output with rich; silent on other ranks and with quiet=True."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        if not quiet:
            from rich.console import Console

            self.c = Console(highlight=False, soft_wrap=True)
        self.t0 = time.time()
        self.first_step: int | None = None

    def header(self, cfg: TrainConfig, mcfg, info: D.DistInfo, n_params: int, n_pieces: int, step: int) -> None:
        self.first_step, self.t0 = step, time.time()
        if self.quiet:
            return
        self.c.print(f"[bold]acemusic train[/] preset {cfg.model_preset}: {n_params / 1e6:.2f}M params, "
                     f"d_model {mcfg.d_model}, {mcfg.n_layer} layers | {n_pieces:,} pieces | seq_len {cfg.seq_len}, "
                     f"{cfg.tokens_per_batch:,} tokens/batch | {info.world_size} rank(s) x "
                     f"{torch.get_num_threads()} thread(s) | bf16 {cfg.bf16} | steps {step}->{cfg.max_steps}")

    def step(self, rec: dict, cfg: TrainConfig) -> None:
        if self.quiet:
            return
        done = max(rec["step"] - (self.first_step or 0), 1)
        eta = (time.time() - self.t0) / done * (cfg.max_steps - rec["step"])
        self.c.print(f"step {rec['step']:>6}/{cfg.max_steps}  loss {rec['loss']:.4f}  lr {rec['lr']:.2e}  "
                     f"gnorm {rec['grad_norm']:.3f}  {rec['tokens_per_s']:,.0f} tok/s  "
                     f"batch {rec['batch'][0]}x{rec['batch'][1]}  data {rec['data_ms']:.1f} ms  "
                     f"[dim]eta {_hms(eta)}[/]")

    def val(self, step: int, val_loss: float) -> None:
        if not self.quiet:
            self.c.print(f"[bold cyan]step {step:>6}  val loss {val_loss:.4f}[/]")

    def note(self, msg: str) -> None:
        if not self.quiet:
            self.c.print(msg)


def _hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
