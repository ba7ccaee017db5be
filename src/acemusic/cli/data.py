"""`acemusic data build`: the music21 corpus and/or a MIDI folder -> token shards (docs/TOKENS.md).

Example: `acemusic data build --out data/m21 --workers 2` (resumable: rerun after an interruption).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import data_app, fail


@data_app.command("build")
def build_cmd(
    out: Annotated[Path, typer.Option("--out", help="Dataset directory to create or resume.")],
    midi_dir: Annotated[Path | None, typer.Option(help="Folder of .mid/.midi files, searched recursively.")] = None,
    music21: Annotated[bool, typer.Option("--music21/--no-music21", help="Include the music21 corpus.")] = True,
    limit: Annotated[int | None, typer.Option(min=1, help="First N source files of each source (sorted).")] = None,
    only: Annotated[str | None, typer.Option(help="Only music21 files matching these comma-separated globs or "
                                                  "substrings of their corpus path.")] = None,
    midi_style: Annotated[str | None, typer.Option(help="Style of every MIDI file (default: from the path).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    embed: Annotated[bool, typer.Option("--embed/--no-embed", help="Embed captions with MiniLM.")] = True,
    timeout: Annotated[int, typer.Option(min=0, help="Seconds allowed per piece (0 = no limit).")] = 60,
) -> None:
    """Convert every piece to tokens + metadata + captions, split 94/3/3, deduplicated."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from acemusic.data.build import BuildConfig, build
    from acemusic.tokenizer.vocab import STYLES

    if not music21 and midi_dir is None:
        fail("nothing to build: pass --midi-dir or drop --no-music21")
    if midi_dir is not None and not midi_dir.is_dir():
        fail(f"{midi_dir}: not a folder")
    if midi_style is not None and midi_style not in STYLES:
        fail(f"--midi-style must be one of {', '.join(STYLES[1:])}")
    if out.exists() and not out.is_dir():
        fail(f"{out} exists and is not a directory")
    cfg = BuildConfig(out=out, midi_dir=midi_dir, music21=music21, limit=limit, only=only, midi_style=midi_style,
                      workers=workers, embed=embed, timeout=timeout)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        ids: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in ids:
                ids[phase] = bar.add_task(phase, total=total)
            bar.update(ids[phase], completed=done, total=total)

        stats = build(cfg, progress)
    print_stats(stats, console)


def print_stats(stats, console) -> None:
    from rich.table import Table

    t = Table(title="dataset")
    for c in ("split", "pieces", "tokens", "notes"):
        t.add_column(c, justify="left" if c == "split" else "right")
    for split, s in stats.splits.items():
        t.add_row(split, f"{s['pieces']:,}", f"{s['tokens']:,}", f"{s['notes']:,}")
    console.print(t)
    if stats.skips or stats.duplicates:
        k = Table(title="skipped")
        k.add_column("reason")
        k.add_column("files/pieces", justify="right")
        for reason, n in stats.skips.items():
            k.add_row(reason, f"{n:,}")
        k.add_row("duplicate (same tokens)", f"{stats.duplicates:,}")
        console.print(k)
    console.print(f"tasks {stats.tasks:,}: {stats.converted:,} converted, {stats.cache_hits:,} from cache; "
                  f"seconds {stats.seconds}")
