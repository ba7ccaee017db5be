"""`acemusic fad`: Fréchet audio distance between two folders of audio (acemusic.eval.fad).

    acemusic fad generated/ reference/ [--embedder classic|align] [--checkpoint DIR] [--out fad.json] [--force]

DIR_B is the reference: every embedding dimension is scaled by its spread over DIR_B, so distances to the same
reference are comparable. Unreadable or silent files are skipped and listed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, check_writable, fail
from acemusic.errors import AcemusicError


@app.command("fad")
def fad_cmd(
    dir_a: Annotated[Path, typer.Argument(help="Folder of audio to evaluate (searched recursively).")],
    dir_b: Annotated[Path, typer.Argument(help="Reference folder of audio.")],
    embedder: Annotated[str, typer.Option(help="Embedding: classic (librosa features) or align (shared "
                                               "symbolic-audio embedding).")] = "classic",
    checkpoint: Annotated[Path | None, typer.Option(help="Weights of the align embedder (default: "
                                                          "checkpoints/acemusic-align).")] = None,
    max_seconds: Annotated[float, typer.Option(help="Use at most this many seconds of each file.")] = 600.0,
    out: Annotated[Path | None, typer.Option("--out", help="Write the result as JSON here.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Fréchet audio distance between two folders of audio files."""
    from acemusic.eval.fad import fad_dirs, get_embedder

    try:
        for d in (dir_a, dir_b):
            if not d.is_dir():
                raise AcemusicError(f"{d}: no such folder")
        if max_seconds <= 0:
            raise AcemusicError(f"--max-seconds must be > 0, got {max_seconds}")
        if out is not None:
            check_writable(out, force)
        res = fad_dirs(dir_a, dir_b, embedder=get_embedder(embedder, checkpoint), max_seconds=max_seconds)
    except AcemusicError as e:
        fail(str(e))
    for s in res.skipped:
        typer.echo(f"warning: skipped {s['file']}: {s['reason']}", err=True)
    typer.echo(f"FAD ({res.embedder}) = {res.fad:.4f}  [{res.n_files_a} files / {res.n_segments_a} segments vs "
               f"{res.n_files_b} files / {res.n_segments_b} segments, {res.dim} dims]")
    if out is not None:
        out.write_text(json.dumps({**res.to_dict(), "dir_a": str(dir_a), "dir_b": str(dir_b)}, indent=2) + "\n")
