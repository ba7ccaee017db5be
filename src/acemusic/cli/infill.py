"""`acemusic infill`: regenerate bar spans of a MIDI file from both sides; everything outside them is kept.

    acemusic infill in.mid --bars 5-8 -o filled.mid
    acemusic infill in.mid --bars 2-3,9 --seed 4 -o filled.mid --wav filled.wav

Bars are numbered from 1 and spans are inclusive. Spans outside the piece, reversed or overlapping spans, and
empty, corrupt or non-MIDI files end with a one-line error and exit 1; nothing is generated or written then.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, fail
from acemusic.cli.options import Cfg, Checkpoint, Force, Seed, SoundFont, Temperature, TopP, Wav
from acemusic.errors import AcemusicError


@app.command("infill")
def infill_cmd(
    source: Annotated[Path, typer.Argument(help="MIDI file to edit.")],
    bars: Annotated[str, typer.Option("--bars", help="Bar spans to regenerate: 5-8, or 2-3,9 (1-based).")],
    prompt: Annotated[str | None, typer.Option("--prompt", help="Optional text: mood, style, key.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="MIDI to write (default IN.infilled.mid).")]
    = None,
    wav: Wav = None,
    key: Annotated[str | None, typer.Option("--key", help="Key bias for the new bars (default: the piece's).")]
    = None,
    temperature: Temperature = 1.0,
    top_p: TopP = 0.95,
    cfg: Cfg = 1.5,
    seed: Seed = 0,
    checkpoint: Checkpoint = None,
    soundfont: SoundFont = None,
    force: Force = False,
) -> None:
    """Regenerate the given bars from the music on both sides; all other notes stay as they are."""
    t0 = time.perf_counter()
    try:
        _infill(source, bars, prompt, out, wav, key, temperature, top_p, cfg, seed, checkpoint, soundfont, force, t0)
    except AcemusicError as e:
        fail(str(e))


def _infill(source, bars, prompt, out, wav, key, temperature, top_p, cfg, seed, checkpoint, soundfont, force,
            t0) -> None:
    from acemusic.api import check_sampling, load
    from acemusic.cli import tasks_common as tc
    from acemusic.generate.tasks.infill import InfillTask
    from acemusic.generate.tasks.io import load_piece, parse_spans, task_spec
    from acemusic.tokenizer import Tokenizer

    check_sampling(temperature, top_p, cfg)
    task_spec(prompt, key=key)
    piece = load_piece(Tokenizer(), source)
    spans = parse_spans(bars, piece.n_bars)
    for a, b in spans:
        InfillTask(piece, a, b)  # span checks before the model loads
    out = out or tc.default_out(source, "infilled")
    tc.check_outputs([out, wav], force, wav, soundfont)

    bundle = load(checkpoint)
    n_fill = sum(b - a for a, b in spans)
    with tc.bar_progress("infilling", n_fill) as on_step:
        score = bundle.infill(piece.score, bars, prompt=prompt, key=key, temperature=temperature, top_p=top_p,
                              cfg=cfg, seed=seed, on_step=on_step)
    head = tc.write_outputs(bundle, score, out, wav, soundfont, force)
    shown = ", ".join(f"{a + 1}-{b}" if b > a + 1 else f"{b}" for a, b in spans)
    tc.echo(f"{head}: bars {shown} of {piece.n_bars} regenerated ({n_fill} bars), seed {seed}, {tc.elapsed(t0)}")
