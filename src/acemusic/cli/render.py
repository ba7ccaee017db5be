"""`acemusic render`: a MIDI file -> WAV with FluidSynth and a General MIDI SoundFont.

    acemusic render song.mid -o song.wav --sr 44100 [--soundfont my.sf2] [--no-normalize] [--force]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, check_writable, fail
from acemusic.errors import AcemusicError


@app.command("render")
def render_cmd(
    midi: Annotated[Path, typer.Argument(help="MIDI file to render.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="WAV file to write.")],
    sr: Annotated[int, typer.Option("--sr", help="Sample rate in Hz.")] = 44100,
    soundfont: Annotated[Path | None, typer.Option("--soundfont", help="SoundFont (.sf2/.sf3) to use.")] = None,
    normalize: Annotated[bool, typer.Option("--normalize/--no-normalize", help="Normalise to -16 LUFS.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output if it exists.")] = False,
) -> None:
    """Render MIDI to audio (FluidSynth)."""
    from acemusic.audio.render import find_fluidsynth, find_soundfont, render

    t0 = time.perf_counter()
    try:
        if not 8000 <= sr <= 192000:
            raise AcemusicError(f"--sr: sample rate must be 8000..192000, got {sr}")
        if not midi.is_file():
            raise AcemusicError(f"{midi}: no such MIDI file")
        find_fluidsynth()
        find_soundfont(soundfont)
        if out.exists() and not force:
            fail(f"{out} exists; pass --force to overwrite it")
        check_writable(out, force)
        render(midi, out, sr=sr, soundfont=soundfont, normalize=normalize)
    except AcemusicError as e:
        fail(str(e))
    size = out.stat().st_size
    typer.echo(f"wrote {out}: {size / 1e6:.1f} MB at {sr} Hz, {time.perf_counter() - t0:.1f} s")
