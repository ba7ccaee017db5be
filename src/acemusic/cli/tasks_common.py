"""Shared pieces of the editing commands (continue, infill, interpolate, vary): output checks, the progress bar,
writing MIDI (+ WAV). Kept apart so each command module stays a thin parse -> validate -> call -> write edge."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from acemusic.cli.app import check_writable, fail


def check_outputs(paths: list[Path | None], force: bool, wav: Path | None, soundfont: Path | None) -> None:
    """Refuse existing outputs without --force, and a --wav without FluidSynth or a SoundFont, before any work."""
    for path in paths:
        if path is not None and path.exists() and not force:
            fail(f"{path} exists; pass --force to overwrite it")
    if wav is not None:
        from acemusic.audio.render import find_fluidsynth, find_soundfont

        find_fluidsynth()
        find_soundfont(soundfont)


@contextmanager
def bar_progress(label: str, total: int) -> Iterator[Callable]:
    """A transient rich progress bar on stderr; yields an `on_step` callback counting finished bars of row 0."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("bars"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("bars", total=total)
        # Bars finished in this run (the prompt's bars excluded) + bars of the runs before it (multi-span infill,
        # the steps of a morph): a run starts at step 0.
        run = {"base": 0, "before": 0, "done": 0}

        def on_step(step) -> None:
            bar = max(step.states[0].bar_index, 0)
            if step.index == 0:
                run["before"] += run["done"]
                run["base"], run["done"] = bar - 1 if bar else 0, 0
            run["done"] = max(0, bar - 1 - run["base"] + int(step.finished[0]))
            progress.update(task, completed=min(total, run["before"] + run["done"]))

        yield on_step


def write_outputs(bundle, score, out: Path, wav: Path | None, soundfont: Path | None, force: bool) -> str:
    """Write the MIDI (and WAV); returns the 'wrote ...' head of the summary line."""
    check_writable(out, force)
    bundle.save_midi(score, out)
    if wav is not None:
        from acemusic.audio.render import render

        check_writable(wav, force)
        render(score, wav, soundfont=soundfont)
    return f"wrote {out}" + (f" + {wav}" if wav is not None else "")


def n_notes(score) -> int:
    return sum(t.note_num() for t in score.tracks)


def elapsed(t0: float) -> str:
    return f"{time.perf_counter() - t0:.1f} s"


def default_out(src: Path, suffix: str) -> Path:
    """in.mid -> in.<suffix>.mid in the current directory."""
    return Path(f"{src.stem}.{suffix}.mid")


def echo(line: str) -> None:
    typer.echo(line)
