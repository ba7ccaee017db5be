"""`acemusic codec`: encode audio to residual-VQ codes and back, make training excerpts, train, export.

    acemusic codec encode in.wav -o codes.npy [--kbps 6 | --levels 12] [--checkpoint DIR]
    acemusic codec decode codes.npy -o out.wav [--levels 8]
    acemusic codec excerpts --data data/m21 --split train --out data/audio/train -n 800
    acemusic codec train --data data/audio/train --out runs/codec --steps 6000 --max-minutes 45 [--resume]
    acemusic codec export runs/codec/final -o checkpoints/acemusic-codec

codes.npy is a (levels, frames) uint16 array at 50 frames/s; decoding gives frames x 320 samples at 16 kHz (the
input padded up to a whole frame). Input audio of any rate and channel count is mixed to mono and resampled
(`acemusic.audio.io.load_audio`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, check_writable, fail
from acemusic.errors import AcemusicError, InputError

codec_app = typer.Typer(help="Audio codec: encode/decode WAV <-> residual-VQ codes, train, export.",
                        no_args_is_help=True)
app.add_typer(codec_app, name="codec")

CHECKPOINT_NAME = "acemusic-codec"
CkptOpt = Annotated[Path | None, typer.Option("--checkpoint", help="Codec checkpoint directory (default: shipped).")]


def default_codec_checkpoint() -> Path:
    """<repo>/checkpoints/acemusic-codec, else the copy inside the installed package."""
    here = Path(__file__).resolve().parents[1]
    candidates = [here.parents[1] / "checkpoints" / CHECKPOINT_NAME, here / "checkpoints" / CHECKPOINT_NAME]
    return next((c for c in candidates if (c / "config.json").is_file()), candidates[0])


def _load(checkpoint: Path | None):
    from acemusic.audio.codec import load_codec

    path = checkpoint or default_codec_checkpoint()
    codec, _ = load_codec(path)
    return codec


@codec_app.command("encode")
def encode_cmd(
    audio: Annotated[Path, typer.Argument(help="Audio file (WAV, FLAC, ...) to encode.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="codes .npy to write.")],
    levels: Annotated[int | None, typer.Option("--levels", help="RVQ levels to keep (0.5 kbps each).")] = None,
    kbps: Annotated[float | None, typer.Option("--kbps", help="Target bitrate; picks the levels.")] = None,
    checkpoint: CkptOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output if it exists.")] = False,
) -> None:
    """Encode audio to codes (levels x frames, 50 frames/s)."""
    import numpy as np
    import torch

    from acemusic.audio.io import load_audio

    try:
        check_writable(out, force)
        if levels is not None and kbps is not None:
            raise AcemusicError("give --levels or --kbps, not both")
        codec = _load(checkpoint)
        cfg = codec.cfg
        if kbps is not None:
            per_level = cfg.bitrate(1) / 1000
            levels = int(kbps / per_level + 1e-9)
            if not 1 <= levels <= cfg.rvq.n_levels:
                raise AcemusicError(f"--kbps {kbps}: the codec offers {per_level:g} to "
                                    f"{cfg.bitrate() / 1000:g} kbps in steps of {per_level:g}")
        wave = load_audio(audio, sr=cfg.sr).samples
        codes = codec.encode(torch.from_numpy(wave)[None], levels)[0].numpy().astype(np.uint16)
        np.save(out, codes)
    except AcemusicError as e:
        fail(str(e))
    n = codes.shape[0]
    typer.echo(f"wrote {out}: {n} levels x {codes.shape[1]} frames, {cfg.bitrate(n) / 1000:g} kbps, "
               f"{len(wave) / cfg.sr:.1f} s")


@codec_app.command("decode")
def decode_cmd(
    codes_path: Annotated[Path, typer.Argument(help="codes .npy written by `acemusic codec encode`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="WAV file to write.")],
    levels: Annotated[int | None, typer.Option("--levels", help="Decode only the first N levels.")] = None,
    checkpoint: CkptOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output if it exists.")] = False,
) -> None:
    """Decode codes back to a 16 kHz WAV."""
    import numpy as np
    import soundfile as sf
    import torch

    try:
        check_writable(out, force)
        if not codes_path.is_file():
            raise InputError(codes_path, "no such codes file")
        try:
            codes = np.load(codes_path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise InputError(codes_path, f"not a .npy codes file ({str(e)[:100]})") from None
        if codes.ndim != 2 or codes.shape[1] == 0 or not np.issubdtype(codes.dtype, np.integer):
            raise InputError(codes_path, f"expected a (levels, frames) integer array, got {codes.dtype} "
                                         f"{codes.shape}")
        if levels is not None:
            if not 1 <= levels <= codes.shape[0]:
                raise InputError("--levels", f"must be 1..{codes.shape[0]} for this file, got {levels}")
            codes = codes[:levels]
        codec = _load(checkpoint)
        wave = codec.decode(torch.from_numpy(codes.astype(np.int64)))[0].numpy()
        sf.write(str(out), np.clip(wave, -1.0, 1.0), codec.cfg.sr, subtype="PCM_16")
    except AcemusicError as e:
        fail(str(e))
    typer.echo(f"wrote {out}: {len(wave) / codec.cfg.sr:.1f} s at {codec.cfg.sr} Hz from {codes.shape[0]} levels")


@codec_app.command("excerpts")
def excerpts_cmd(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory (acemusic data build).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for WAVs + index.jsonl (resumes).")],
    split: Annotated[str, typer.Option("--split", help="train | val | test.")] = "train",
    n: Annotated[int, typer.Option("-n", help="Number of excerpts (one per piece).")] = 800,
    bars: Annotated[int, typer.Option("--bars", help="Bars per excerpt.")] = 4,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    exclude_from: Annotated[list[Path] | None, typer.Option("--exclude-from",
                                                            help="Skip pieces used in this excerpt dir.")] = None,
) -> None:
    """Render paired excerpts (tokens + 16 kHz audio, instruments re-drawn) of a dataset split."""
    from acemusic.audio.excerpts import make_excerpts, read_index
    from acemusic.data.shards import TokenDataset

    try:
        if n < 1 or bars < 1:
            raise AcemusicError("-n and --bars must be at least 1")
        exclude = [r["piece"] for d in exclude_from or [] for r in read_index(d)]
        count = make_excerpts(TokenDataset(data, split), out, n=n, bars=bars, seed=seed, exclude=exclude)
    except AcemusicError as e:
        fail(str(e))
    typer.echo(f"{out}: {count} excerpts")


@codec_app.command("train")
def train_cmd(
    data: Annotated[list[Path], typer.Option("--data", help="Excerpt directory (repeatable).")],
    out: Annotated[Path, typer.Option("--out", help="Run directory (log.jsonl, last.pt, final/).")],
    steps: Annotated[int, typer.Option("--steps", help="Total steps (sets the cosine schedule).")] = 6000,
    batch: Annotated[int, typer.Option("--batch")] = 16,
    seconds: Annotated[float, typer.Option("--seconds", help="Crop length per example.")] = 2.0,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="Stop and save after this.")] = None,
    threads: Annotated[int, typer.Option("--threads", help="torch threads.")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Start over in an existing OUT.")] = False,
) -> None:
    """Train the codec on rendered excerpts (multi-scale mel + waveform L1 + commitment)."""
    from acemusic.audio.codec_train import CodecTrainConfig, train_codec

    try:
        if (out / "last.pt").exists() and not (resume or force):
            raise AcemusicError(f"{out} has a run; pass --resume to continue or --force to start over")
        if steps < 1 or batch < 1 or seconds <= 0:
            raise AcemusicError("--steps, --batch and --seconds must be positive")
        cfg = CodecTrainConfig(data=[str(d) for d in data], out=str(out), steps=steps, batch=batch,
                               seconds=seconds, lr=lr, max_minutes=max_minutes, threads=threads)
        final = train_codec(cfg, resume=resume, log=typer.echo)
    except AcemusicError as e:
        fail(str(e))
    typer.echo(f"saved {final}")


@codec_app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="Codec checkpoint directory (e.g. runs/codec/final).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write (fp16, inference only).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing checkpoint.")] = False,
) -> None:
    """Write a small fp16 inference checkpoint (no EMA statistics)."""
    import torch

    from acemusic.audio.codec import load_codec, save_codec

    try:
        if (out / "config.json").exists() and not force:
            raise AcemusicError(f"{out} exists; pass --force to overwrite it")
        codec, meta = load_codec(run)
        save_codec(codec, out, meta, dtype=torch.float16, inference_only=True)
    except AcemusicError as e:
        fail(str(e))
    size = sum(p.stat().st_size for p in out.iterdir())
    typer.echo(f"wrote {out}: {size / 1e6:.1f} MB")
