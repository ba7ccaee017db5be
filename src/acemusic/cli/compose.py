"""`acemusic compose`: a text prompt -> a MIDI file (and optionally a WAV).

    acemusic compose "melancholic piano, slow, D minor" -o song.mid --wav song.wav --bars 16 --seed 0

Explicit flags (--key, --tempo, --meter, --instruments) override what the prompt says. Every input is validated
before anything is generated or written; errors are one line and exit 1.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, check_writable, fail
from acemusic.cli.options import Cfg, Checkpoint, Force, Seed, SoundFont, Temperature, Threads, TopP, Wav, parse_threads
from acemusic.errors import AcemusicError


def _describe(spec) -> str:
    parts = []
    if spec.key is not None:
        parts.append(f"{spec.key_name} {spec.effective_mode or ''}".strip())
    elif spec.effective_mode:
        parts.append(spec.effective_mode)
    if spec.tempo is not None:
        parts.append(f"{spec.tempo:g} bpm")
    if spec.meter is not None:
        parts.append(f"{spec.meter[0]}/{spec.meter[1]}")
    parts.append("+".join(spec.instrument_names) if spec.instrument_names else "piano")
    return ", ".join(parts)


@app.command("compose")
def compose_cmd(
    prompt: Annotated[str, typer.Argument(help="What to compose, e.g. 'melancholic piano, slow, D minor'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="MIDI file to write.")] = Path("song.mid"),
    wav: Wav = None,
    bars: Annotated[int, typer.Option("--bars", help="Number of bars (1-256).")] = 16,
    key: Annotated[str | None, typer.Option("--key", help="Key, e.g. 'D minor', 'C#', 'B flat major'.")] = None,
    tempo: Annotated[str | None, typer.Option("--tempo", help="Tempo in bpm, or a word: slow, fast...")] = None,
    meter: Annotated[str | None, typer.Option("--meter", help="Time signature, e.g. 3/4 or 6/8.")] = None,
    instruments: Annotated[str | None, typer.Option("--instruments", help="Comma-separated: piano,strings.")] = None,
    temperature: Temperature = 1.0,
    top_p: TopP = 0.95,
    cfg: Cfg = 1.5,
    seed: Seed = 0,
    candidates: Annotated[int, typer.Option("--candidates", help="With a key/mode asked: up to N samples in "
                                                                  "batches of 4, keep the best key fit (1 = off).")]
    = 8,
    checkpoint: Checkpoint = None,
    soundfont: SoundFont = None,
    force: Force = False,
    threads: Threads = "auto",
) -> None:
    """Compose a new piece from a text prompt."""
    t0 = time.perf_counter()
    try:
        _compose(prompt, out, wav, bars, key, tempo, meter, instruments, temperature, top_p, cfg, seed, candidates,
                 checkpoint, soundfont, force, threads, t0)
    except AcemusicError as e:
        fail(str(e))


def _compose(prompt, out, wav, bars, key, tempo, meter, instruments, temperature, top_p, cfg, seed, candidates,
             checkpoint, soundfont, force, threads, t0) -> None:
    from acemusic.api import check_candidates, check_sampling, load
    from acemusic.generate.prompt import check_bars, check_prompt, parse_prompt

    # Validate everything cheap first: nothing is loaded, generated or written for a bad input.
    text = check_prompt(prompt)
    check_bars(bars)
    check_sampling(temperature, top_p, cfg)
    check_candidates(candidates)
    decode_threads = parse_threads(threads)
    spec = parse_prompt(text).override(key=key, tempo=tempo, meter=meter, instruments=instruments)
    for path in (out, wav):
        if path is not None and path.exists() and not force:
            fail(f"{path} exists; pass --force to overwrite it")
    if wav is not None:
        from acemusic.audio.render import find_fluidsynth, find_soundfont

        find_fluidsynth()
        find_soundfont(soundfont)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    bundle = load(checkpoint)
    bundle.engine.decode_threads = decode_threads
    with Progress(TextColumn("composing"), BarColumn(), MofNCompleteColumn(), TextColumn("bars"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("bars", total=bars)
        seen = [0]

        def on_step(step) -> None:
            # bars completed so far by the slowest candidate
            done = min(s.bar_index - 1 + int(f) for s, f in zip(step.states, step.finished, strict=True))
            if done != seen[0]:
                seen[0] = done
                progress.update(task, completed=max(done, 0))

        score = bundle.compose(text, bars=bars, key=key, tempo=tempo, meter=meter, instruments=instruments,
                               temperature=temperature, top_p=top_p, cfg=cfg, seed=seed, on_step=on_step,
                               candidates=candidates)
    check_writable(out, force)
    bundle.save_midi(score, out)
    if wav is not None:
        from acemusic.audio.render import render

        check_writable(wav, force)
        render(score, wav, soundfont=soundfont)
    n_notes = sum(t.note_num() for t in score.tracks)
    extra = f" + {wav}" if wav is not None else ""
    typer.echo(f"wrote {out}{extra}: {bars} bars, {n_notes} notes ({_describe(spec)}), seed {seed}, "
               f"{time.perf_counter() - t0:.1f} s")
