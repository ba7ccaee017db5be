"""Codec vs Opus on held-out renders: mel distance and SI-SDR at matched bitrates, plus codebook usage.

    .venv/bin/python benchmarks/codec.py --data data/audio/test --n 60 --out benchmarks/results/codec.json

Held-out clips: `acemusic codec excerpts --data data/m21 --split test --out data/audio/test` (test-split pieces,
16 kHz mono renders, instruments re-drawn; never seen in training). For every clip:
- acemusic codec: encode once with all levels, decode with the first L levels (L = 4, 8, 12: 2, 4, 6 kbps of raw
  code bits, no entropy coding, no container), output rounded to 16-bit PCM like `acemusic codec decode` writes;
- Opus (Debian opus-tools, libopus): `opusenc --bitrate K` (default VBR, music tuning) then `opusdec --rate 16000`;
  the reported bitrate is what the .opus file actually took (Ogg container included), over the clip's duration.
Both outputs are aligned to the reference by the lag (within +-40 samples) that maximises cross-correlation, then
scored with the same functions (acemusic.audio.spectral): mel distance = mean |log10 mel| difference (80 bands,
n_fft 1024, hop 256, floor 1e-5) and SI-SDR in dB. Codebook usage: codes used per level on these clips.
`acemusic_unquantized` (a diagnostic, not a bitrate) decodes the encoder's latent without the RVQ: the ceiling the
decoder sets, whatever the number of levels.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from acemusic.audio.codec import load_codec
from acemusic.audio.excerpts import read_index
from acemusic.audio.spectral import mel_distance, si_sdr

MAX_LAG = 40


def align(ref: np.ndarray, est: np.ndarray, max_lag: int = MAX_LAG) -> tuple[np.ndarray, np.ndarray, int]:
    """Shift `est` by the lag in [-max_lag, max_lag] with the largest cross-correlation; trim both to overlap."""
    n = min(len(ref), len(est))
    r, e = ref[:n], est[:n]
    best, best_lag = -np.inf, 0
    for lag in range(-max_lag, max_lag + 1):
        a, b = (r[lag:], e[: n - lag]) if lag >= 0 else (r[: n + lag], e[-lag:])
        c = float(np.dot(a, b))
        if c > best:
            best, best_lag = c, lag
    lag = best_lag
    a, b = (r[lag:], e[: n - lag]) if lag >= 0 else (r[: n + lag], e[-lag:])
    return a, b, lag


def opus_roundtrip(wav: Path, kbps: float, tmp: Path) -> tuple[np.ndarray, float]:
    """(decoded 16 kHz audio, actual kbps of the .opus file)."""
    enc, dec = tmp / "x.opus", tmp / "x.wav"
    subprocess.run(["opusenc", "--quiet", "--bitrate", str(kbps), str(wav), str(enc)], check=True)
    subprocess.run(["opusdec", "--quiet", "--rate", "16000", str(enc), str(dec)], check=True)
    audio, sr = sf.read(str(dec), dtype="float32")
    assert sr == 16000
    seconds = sf.info(str(wav)).duration
    return audio, enc.stat().st_size * 8 / seconds / 1000


def pcm16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16).astype(np.float32) / 32767.0


def summary(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "median": float(np.median(v)), "std": float(v.std()), "n": len(v)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/audio/test")
    ap.add_argument("--checkpoint", default="checkpoints/acemusic-codec")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8, 12])
    ap.add_argument("--opus-kbps", type=float, nargs="+", default=[6, 8, 12])
    ap.add_argument("--out", default="benchmarks/results/codec.json")
    args = ap.parse_args()
    if shutil.which("opusenc") is None or shutil.which("opusdec") is None:
        raise SystemExit("error: opusenc/opusdec not found (apt-get install opus-tools)")
    torch.set_num_threads(1)
    codec, meta = load_codec(args.checkpoint)
    cfg = codec.cfg
    rows = read_index(args.data)[: args.n]
    per = {f"acemusic_{L}": {"mel": [], "sisdr": [], "kbps": cfg.bitrate(L) / 1000, "lags": []} for L in args.levels}
    per["acemusic_unquantized"] = {"mel": [], "sisdr": [], "kbps": None, "lags": []}  # decoder-limited bound
    for k in args.opus_kbps:
        per[f"opus_{k:g}"] = {"mel": [], "sisdr": [], "kbps_file": [], "lags": []}
    codec.rvq.reset_usage()
    t_codec, seconds = 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="acemusic-bench-codec-") as d:
        tmp = Path(d)
        for row in rows:
            wav = Path(args.data) / row["wav"]
            ref, sr = sf.read(str(wav), dtype="float32")
            assert sr == cfg.sr
            seconds += len(ref) / sr
            t0 = time.perf_counter()
            codes = codec.encode(torch.from_numpy(ref)[None])
            outs = {L: codec.decode(codes[:, :L])[0].numpy()[: len(ref)] for L in args.levels}
            t_codec += time.perf_counter() - t0
            with torch.no_grad():  # the latent straight into the decoder: what the decoder can do without the RVQ
                x = codec._pad(torch.from_numpy(ref)[None])
                outs["unquantized"] = codec._synth(*codec.decoder(codec.encoder(codec._features(x))),
                                                   x.shape[1])[0].numpy()[: len(ref)]
            for L, y in outs.items():
                a, b, lag = align(ref, pcm16(y))
                p = per[f"acemusic_{L}"]
                p["mel"].append(mel_distance(a, b, sr))
                p["sisdr"].append(si_sdr(a, b))
                p["lags"].append(lag)
            for k in args.opus_kbps:
                y, kb = opus_roundtrip(wav, k, tmp)
                a, b, lag = align(ref, y)
                p = per[f"opus_{k:g}"]
                p["mel"].append(mel_distance(a, b, sr))
                p["sisdr"].append(si_sdr(a, b))
                p["kbps_file"].append(kb)
                p["lags"].append(lag)
    usage = codec.rvq.usage_report()  # encode ran with all levels on every clip
    results = {}
    for name, p in per.items():
        r = {"mel_distance": summary(p["mel"]), "si_sdr_db": summary(p["sisdr"]),
             "lag_samples": {"min": int(min(p["lags"])), "max": int(max(p["lags"]))}}
        if "kbps" in p:
            r["kbps"] = p["kbps"]  # None for the unquantized diagnostic
        else:
            r["kbps_target"] = float(name.split("_")[1])
            r["kbps_file"] = summary(p["kbps_file"])
        results[name] = r
    ours = f"acemusic_{max(args.levels)}"
    opus6 = "opus_6" if "opus_6" in per else None
    head = {}
    if opus6:
        m_ours, m_opus = np.asarray(per[ours]["mel"]), np.asarray(per[opus6]["mel"])
        s_ours, s_opus = np.asarray(per[ours]["sisdr"]), np.asarray(per[opus6]["sisdr"])
        head = {"ours": ours, "opus": opus6,
                "mel_lower_than_opus_fraction": float((m_ours < m_opus).mean()),
                "mel_mean_ratio": float(m_ours.mean() / m_opus.mean()),
                "sisdr_higher_than_opus_fraction": float((s_ours > s_opus).mean()),
                "goal_beat_opus_6kbps_on_mel": bool(m_ours.mean() < m_opus.mean())}
    out = {
        "command": "python benchmarks/codec.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()),
        "data": args.data, "n_clips": len(rows), "audio_seconds": round(seconds, 1), "checkpoint": args.checkpoint,
        "codec_train_steps": meta.get("steps"), "frame_rate": cfg.frame_rate, "codebook_size": cfg.rvq.codebook_size,
        "results": results, "head_to_head_6kbps": head,
        "codebook_usage": [{"level": u["level"], "used": u["used"], "of": u["size"],
                            "perplexity": round(u["perplexity"], 1)} for u in usage],
        "codec_realtime_factor": round(seconds / max(t_codec, 1e-9), 1),
        "opus_version": subprocess.run(["opusenc", "--version"], capture_output=True, text=True
                                       ).stdout.splitlines()[0],
        "load_average": os.getloadavg(), "threads": torch.get_num_threads(), "machine": platform.machine(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for name, r in results.items():
        kb = r.get("kbps", r.get("kbps_file", {}).get("mean")) or float("nan")
        mel, sdr = r["mel_distance"]["mean"], r["si_sdr_db"]["mean"]
        print(f"{name:14s} {kb:5.2f} kbps  mel {mel:.3f}  SI-SDR {sdr:6.2f} dB")
    print(json.dumps(head))


if __name__ == "__main__":
    main()
