"""`acemusic align`: the shared symbolic-audio embedding (train, retrieval evaluation, export, embed WAVs).

    acemusic align train --train data/audio/train --val data/audio/val --out runs/align --steps 1500
    acemusic align eval --data data/audio/test --checkpoint runs/align/final --out benchmarks/results/align.json
    acemusic align export runs/align/final -o checkpoints/acemusic-align
    acemusic align embed a.wav b.wav -o emb.npy

Excerpt directories come from `acemusic codec excerpts` (tokens + render of the same bars).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, check_writable, fail
from acemusic.errors import AcemusicError

align_app = typer.Typer(help="Shared symbolic-audio embedding: train, evaluate retrieval, export, embed.",
                        no_args_is_help=True)
app.add_typer(align_app, name="align")


@align_app.command("train")
def train_cmd(
    train: Annotated[list[Path], typer.Option("--train", help="Excerpt directory for training (repeatable).")],
    out: Annotated[Path, typer.Option("--out", help="Run directory (log.jsonl, final/).")],
    val: Annotated[Path | None, typer.Option("--val", help="Excerpt directory reported during training.")] = None,
    steps: Annotated[int, typer.Option("--steps")] = 1500,
    batch: Annotated[int, typer.Option("--batch", help="Pairs per step (in-batch negatives).")] = 32,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes")] = None,
    force: Annotated[bool, typer.Option("--force", help="Start over in an existing OUT.")] = False,
) -> None:
    """Train both encoders with InfoNCE on paired excerpts."""
    from acemusic.audio.align_train import AlignTrainConfig, train_align

    try:
        if (out / "final").exists() and not force:
            raise AcemusicError(f"{out} has a trained model; pass --force to start over")
        if steps < 1 or batch < 2:
            raise AcemusicError("--steps must be >= 1 and --batch >= 2")
        cfg = AlignTrainConfig(train=[str(t) for t in train], val=str(val) if val else None, out=str(out),
                               steps=steps, batch=batch, lr=lr, max_minutes=max_minutes)
        train_align(cfg, log=typer.echo)
    except AcemusicError as e:
        fail(str(e))
    typer.echo(f"saved {out / 'final'}")


@align_app.command("eval")
def eval_cmd(
    data: Annotated[Path, typer.Option("--data", help="Held-out excerpt directory.")],
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="Default: the shipped model.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="JSON file for the results.")] = None,
    force: Annotated[bool, typer.Option("--force")] = False,
) -> None:
    """Retrieval recall@1/@10, symbolic->audio and audio->symbolic, against chance."""
    import torch

    from acemusic.audio.align import load_align
    from acemusic.audio.align_train import evaluate_retrieval

    try:
        if out is not None:
            check_writable(out, force)
        torch.set_num_threads(1)
        model, meta = load_align(checkpoint)
        res = evaluate_retrieval(model, str(data))
    except AcemusicError as e:
        fail(str(e))
    res = {"data": str(data), "checkpoint": str(checkpoint or "shipped"), **res,
           "train_steps": meta.get("steps_done"), "train_pairs": meta.get("train_pairs"), "machine": platform.machine()}
    for k in ("sym_to_audio", "audio_to_sym"):
        typer.echo(f"{k}: R@1 {res[k]['r@1']:.3f}  R@10 {res[k]['r@10']:.3f}")
    typer.echo(f"chance: R@1 {res['chance']['r@1']:.3f}  R@10 {res['chance']['r@10']:.3f}  ({res['n_pairs']} pairs)")
    if out is not None:
        out.write_text(json.dumps(res, indent=2) + "\n")


@align_app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="Checkpoint directory (e.g. runs/align/final).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write (fp16).")],
    test: Annotated[Path | None, typer.Option("--test-results", help="align eval JSON to store in meta.")] = None,
    force: Annotated[bool, typer.Option("--force")] = False,
) -> None:
    """Write a small fp16 checkpoint."""
    import torch

    from acemusic.audio.align import load_align, save_align

    try:
        if (out / "config.json").exists() and not force:
            raise AcemusicError(f"{out} exists; pass --force to overwrite it")
        model, meta = load_align(run)
        if test is not None:
            meta["test"] = json.loads(test.read_text())
        save_align(model, out, meta, dtype=torch.float16)
    except (AcemusicError, OSError, ValueError) as e:
        fail(str(e))
    typer.echo(f"wrote {out}: {sum(p.stat().st_size for p in out.iterdir()) / 1e6:.1f} MB")


@align_app.command("embed")
def embed_cmd(
    audio: Annotated[list[Path], typer.Argument(help="Audio files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help=".npy of (n, d) unit-norm embeddings.")],
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint")] = None,
    force: Annotated[bool, typer.Option("--force")] = False,
) -> None:
    """Embed audio files into the shared space."""
    import numpy as np

    from acemusic.audio.align import embed_audio, load_align

    try:
        check_writable(out, force)
        emb = embed_audio(audio, model=load_align(checkpoint)[0])
        np.save(out, emb)
    except AcemusicError as e:
        fail(str(e))
    typer.echo(f"wrote {out}: {emb.shape[0]} x {emb.shape[1]}")
