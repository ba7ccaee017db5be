"""Train the codec on rendered excerpts: multi-scale mel L1 + waveform L1 + commitment, AdamW, cosine schedule.

    cfg = CodecTrainConfig(data=["data/audio/train"], out="runs/codec", steps=4000, max_minutes=45)
    train_codec(cfg)                        # resumable: out/last.pt holds model, optimiser, step and RNG state

Every step draws `batch` random crops of `seconds` from the excerpt WAVs (held in memory as int16), applies a random
gain, and trains with a random number of RVQ levels (quantizer dropout, in rvq.py), so every bitrate decodes. The
log (out/log.jsonl) has the loss terms and, every `log_every` steps, the codebook usage of that window (codes used per
level, usage perplexity). `acemusic codec train` is the CLI. Test: `pytest tests/audio/test_codec.py -k train`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from acemusic.audio.codec import Codec, CodecConfig, save_codec
from acemusic.audio.excerpts import read_index
from acemusic.audio.spectral import multiscale_mel_loss
from acemusic.errors import InputError


@dataclass
class CodecTrainConfig:
    data: list[str] = field(default_factory=list)  # excerpt directories (index.jsonl + WAVs at the codec's rate)
    out: str = "runs/codec"
    codec: CodecConfig = field(default_factory=CodecConfig)
    steps: int = 4000
    batch: int = 16
    seconds: float = 2.0
    lr: float = 1e-3
    warmup: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    w_mel: float = 1.0
    w_wave: float = 1.0  # waveform L1 keeps the decoder's phase honest (mel alone ignores it)
    w_commit: float = 1.0
    grad_clip: float = 1.0
    log_every: int = 50
    ckpt_every: int = 50
    max_minutes: float | None = None  # stop (and save) after this much wall time
    seed: int = 0
    threads: int = 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["codec"] = self.codec.to_dict()
        return d


class CropSampler:
    """All excerpt audio in memory (int16); `batch(rng, n, length)` -> (n, length) float crops."""

    def __init__(self, dirs: list[str], sr: int) -> None:
        import soundfile as sf

        self.clips: list[np.ndarray] = []
        for d in dirs:
            for row in read_index(d):
                audio, file_sr = sf.read(str(Path(d) / row["wav"]), dtype="int16")
                if file_sr != sr:
                    raise InputError(Path(d) / row["wav"], f"sample rate {file_sr}, the codec wants {sr}")
                if audio.ndim > 1:
                    audio = audio.mean(axis=1).astype(np.int16)
                self.clips.append(audio)
        if not self.clips:
            raise InputError(",".join(dirs), "no excerpts to train on")
        self.lengths = np.array([len(c) for c in self.clips])

    def batch(self, rng: np.random.Generator, n: int, length: int) -> torch.Tensor:
        out = np.zeros((n, length), np.float32)
        p = self.lengths / self.lengths.sum()  # long clips are sampled more: every second equally likely
        for j, i in enumerate(rng.choice(len(self.clips), size=n, p=p)):
            c = self.clips[int(i)]
            start = int(rng.integers(0, max(1, len(c) - length + 1)))
            seg = c[start: start + length].astype(np.float32) / 32768.0
            out[j, : len(seg)] = seg
        gain = 10.0 ** (rng.uniform(-12.0, 3.0, size=(n, 1)) / 20.0)  # level robustness: -12..+3 dB
        return torch.from_numpy(np.clip(out * gain, -1.0, 1.0).astype(np.float32))


def lr_at(step: int, cfg: CodecTrainConfig, elapsed_s: float = 0.0) -> float:
    """Linear warmup, then a cosine over whichever budget runs out first: `steps`, or `max_minutes` of wall time.
    On a shared CPU the step rate is unknown in advance; the time-based progress still anneals the rate before
    the run is cut off (at the price of exact reproducibility when the time limit is what binds)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    if cfg.max_minutes:
        t = max(t, elapsed_s / (cfg.max_minutes * 60))
    t = min(1.0, t)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def codec_loss(codec: Codec, wave: torch.Tensor, cfg: CodecTrainConfig, n_levels: int | None = None):
    """(total loss, dict of float terms). `n_levels` None = quantizer dropout decides."""
    recon, q = codec(wave, n_levels)
    ref = torch.nn.functional.pad(wave, (0, recon.shape[1] - wave.shape[1]))
    mel = multiscale_mel_loss(ref, recon, codec.cfg.sr)
    wav = (ref - recon).abs().mean()
    total = cfg.w_mel * mel + cfg.w_wave * wav + cfg.w_commit * q.commit_loss
    terms = {"loss": total, "mel": mel, "wave": wav, "commit": q.commit_loss}
    return total, {**{k: float(v.detach()) for k, v in terms.items()}, "levels": int(q.codes.shape[1])}


def _save_state(path: Path, codec: Codec, opt: torch.optim.Optimizer, step: int, rng: np.random.Generator,
                cfg: CodecTrainConfig, elapsed_s: float) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": codec.state_dict(), "opt": opt.state_dict(), "step": step, "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "config": cfg.to_dict(), "elapsed_s": elapsed_s}, tmp)
    tmp.replace(path)


def train_codec(cfg: CodecTrainConfig, resume: bool = False, log=print) -> Path:
    """Train; returns the directory of the final checkpoint (out/final, fp32, with EMA state)."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "last.pt"
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    codec = Codec(cfg.codec)
    opt = torch.optim.AdamW(codec.parameters(), lr=cfg.lr, betas=(0.8, 0.99), weight_decay=cfg.weight_decay)
    step, elapsed0 = 0, 0.0
    if resume and state_path.is_file():
        st = torch.load(state_path, weights_only=False)
        codec.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step = int(st["step"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        elapsed0 = float(st.get("elapsed_s", 0.0))
        log(f"resumed at step {step}")
    elif not resume:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    sampler = CropSampler(cfg.data, cfg.codec.sr)
    length = round(cfg.seconds * cfg.codec.sr / cfg.codec.frame_hop) * cfg.codec.frame_hop
    log(f"{len(sampler.clips)} clips, {sampler.lengths.sum() / cfg.codec.sr / 60:.1f} min of audio; "
        f"{sum(p.numel() for p in codec.parameters()) / 1e6:.2f}M trainable parameters")
    t0, window = time.time(), []
    codec.train()
    codec.rvq.reset_usage()
    with (out / "log.jsonl").open("a", encoding="utf-8") as logf:
        while step < cfg.steps:
            elapsed = elapsed0 + time.time() - t0  # wall time over all sessions of this run
            lr = lr_at(step, cfg, elapsed)
            for g in opt.param_groups:
                g["lr"] = lr
            wave = sampler.batch(rng, cfg.batch, length)
            loss, terms = codec_loss(codec, wave, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(codec.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            window.append(terms)
            if step % cfg.log_every == 0 or step == cfg.steps:
                usage = codec.rvq.usage_report()
                rec = {"step": step, "lr": lr, "elapsed_s": round(elapsed0 + time.time() - t0, 1)}
                for k in ("loss", "mel", "wave", "commit"):
                    rec[k] = round(float(np.mean([w[k] for w in window])), 5)
                rec["codes_used"] = [u["used"] for u in usage]
                rec["perplexity"] = [round(u["perplexity"], 1) for u in usage]
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                log(f"step {step} loss {rec['loss']:.4f} mel {rec['mel']:.4f} wave {rec['wave']:.4f} "
                    f"commit {rec['commit']:.4f} used {min(rec['codes_used'])}-{max(rec['codes_used'])}")
                window = []
                codec.rvq.reset_usage()
            elapsed = elapsed0 + time.time() - t0
            over = cfg.max_minutes is not None and elapsed > cfg.max_minutes * 60
            if step % cfg.ckpt_every == 0 or step == cfg.steps or over:
                _save_state(state_path, codec, opt, step, rng, cfg, elapsed)
            if over:
                log(f"time limit reached at step {step}")
                break
    final = save_codec(codec, out / "final", {"train": cfg.to_dict(), "steps": step})
    return final
