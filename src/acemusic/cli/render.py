"""`acemusic render`: a MIDI file -> WAV with FluidSynth and a General MIDI SoundFont.

    acemusic render song.mid -o song.wav --sr 44100 [--soundfont my.sf2] [--no-normalize] [--force]
    acemusic data render --data data/m21 --split test --out renders/test [--seconds 30] [--program 0] [--workers 2]
    acemusic data render --midi-dir my_midis/ --out renders/mine      # parallel, cached, resumable (audio.batch)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, check_writable, data_app, fail
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


@data_app.command("render")
def data_render_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder for wav/, mid/ and manifest.jsonl (created/resumed).")],
    data: Annotated[Path | None, typer.Option("--data", help="Dataset directory from `acemusic data build`.")] = None,
    split: Annotated[str, typer.Option("--split", help="Split of --data: train, val or test.")] = "test",
    midi_dir: Annotated[Path | None, typer.Option("--midi-dir", help="Render every MIDI file under it.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N pieces only.")] = None,
    seconds: Annotated[float | None, typer.Option("--seconds", help="Excerpt: the first N seconds of each.")] = None,
    program: Annotated[int | None, typer.Option("--program", help="Play every melodic track with this GM program.")]
    = None,
    sr: Annotated[int, typer.Option("--sr", help="Sample rate in Hz.")] = 22050,
    soundfont: Annotated[Path | None, typer.Option("--soundfont", help="SoundFont (.sf2/.sf3) to use.")] = None,
    normalize: Annotated[bool, typer.Option("--normalize/--no-normalize", help="Normalise to -16 LUFS.")] = True,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Parallel FluidSynth processes.")] = 2,
) -> None:
    """Render a dataset split or a MIDI folder to WAV: parallel, cached by content hash, resumable."""
    from acemusic.audio.batch import BatchConfig, dataset_items, midi_folder_items, render_batch

    t0 = time.perf_counter()
    try:
        if (data is None) == (midi_dir is None):
            raise AcemusicError("pass exactly one of --data DIR or --midi-dir DIR")
        if split not in ("train", "val", "test"):
            raise AcemusicError(f"--split must be train, val or test, got {split!r}")
        cfg = BatchConfig(sr=sr, seconds=seconds, program=program,
                          soundfont=str(soundfont) if soundfont is not None else None, normalize=normalize)
        cfg.check()
        if data is not None:
            items = dataset_items(data, split, limit=limit)
        else:
            items = list(midi_folder_items(midi_dir))[:limit]
        if not items:
            raise AcemusicError("nothing to render (no pieces / MIDI files found)")
        res = render_batch(items, out, cfg, workers=workers, progress=True)
    except AcemusicError as e:
        fail(str(e))
    for r in res.rows:
        if r["status"] == "failed":
            typer.echo(f"warning: {r['key']}: {r.get('reason', 'failed')}", err=True)
    typer.echo(f"{out}: {res.rendered} rendered, {res.cached} cached, {res.failed} failed of {len(res.rows)} "
               f"({time.perf_counter() - t0:.1f} s); list in {out / 'manifest.jsonl'}")
