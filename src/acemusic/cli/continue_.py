"""`acemusic continue`: a MIDI file -> the same piece, note for note, followed by N new bars.

    acemusic continue in.mid --bars 8 -o longer.mid
    acemusic continue in.mid --bars 4 --prompt "faster, in 3/4" --seed 2 -o waltz-ending.mid --wav out.wav

Key, meter, tempo and instruments stay the piece's unless --prompt or a flag asks otherwise. Errors are one line
and exit 1; nothing is generated or written for a bad input.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, fail
from acemusic.cli.options import Cfg, Checkpoint, Force, Seed, SoundFont, Temperature, TopP, Wav
from acemusic.errors import AcemusicError


@app.command("continue")
def continue_cmd(
    source: Annotated[Path, typer.Argument(help="MIDI file to continue.")],
    bars: Annotated[int, typer.Option("--bars", help="New bars to add (1-256).")] = 8,
    prompt: Annotated[str | None, typer.Option("--prompt", help="Optional text: mood, key, tempo, instruments.")]
    = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="MIDI to write (default IN.continued.mid).")]
    = None,
    wav: Wav = None,
    key: Annotated[str | None, typer.Option("--key", help="Key of the continuation (default: the piece's).")]
    = None,
    tempo: Annotated[str | None, typer.Option("--tempo", help="New tempo from the first new bar.")] = None,
    meter: Annotated[str | None, typer.Option("--meter", help="New time signature from the first new bar.")]
    = None,
    instruments: Annotated[str | None, typer.Option("--instruments", help="Instruments that play on.")] = None,
    temperature: Temperature = 1.0,
    top_p: TopP = 0.95,
    cfg: Cfg = 1.5,
    seed: Seed = 0,
    checkpoint: Checkpoint = None,
    soundfont: SoundFont = None,
    force: Force = False,
) -> None:
    """Continue a piece: the input is kept note for note, then BARS new bars follow."""
    t0 = time.perf_counter()
    try:
        _continue(source, bars, prompt, out, wav, key, tempo, meter, instruments, temperature, top_p, cfg, seed,
                  checkpoint, soundfont, force, t0)
    except AcemusicError as e:
        fail(str(e))


def _continue(source, bars, prompt, out, wav, key, tempo, meter, instruments, temperature, top_p, cfg, seed,
              checkpoint, soundfont, force, t0) -> None:
    from acemusic.api import check_sampling, load
    from acemusic.cli import tasks_common as tc
    from acemusic.generate.prompt import check_bars
    from acemusic.generate.tasks.io import load_piece, task_spec
    from acemusic.tokenizer import Tokenizer

    check_bars(bars)
    check_sampling(temperature, top_p, cfg)
    task_spec(prompt, key=key, tempo=tempo, meter=meter, instruments=instruments)  # validate the asks
    piece = load_piece(Tokenizer(), source)  # bad files fail here, before the model loads
    out = out or tc.default_out(source, "continued")
    tc.check_outputs([out, wav], force, wav, soundfont)

    bundle = load(checkpoint)
    with tc.bar_progress("continuing", bars) as on_step:
        score = bundle.continue_(piece.score, bars=bars, prompt=prompt, key=key, tempo=tempo, meter=meter,
                                 instruments=instruments, temperature=temperature, top_p=top_p, cfg=cfg, seed=seed,
                                 on_step=on_step)
    head = tc.write_outputs(bundle, score, out, wav, soundfont, force)
    added = tc.n_notes(score) - tc.n_notes(piece.score)
    tc.echo(f"{head}: {piece.n_bars} bars of {source} + {bars} new bars, {added} new notes, seed {seed}, "
            f"{tc.elapsed(t0)}")
