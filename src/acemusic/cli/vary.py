"""`acemusic vary`: N variations of a MIDI file that keep its motif and differ from each other.

    acemusic vary in.mid --n 4 -o var.mid                 # var1.mid .. var4.mid
    acemusic vary in.mid --n 3 --strength 0.3 --keep-bars 2 --seed 7 -o var.mid

Each variation keeps the first --keep-bars bars note for note and regenerates a share --strength of the other
bars from both sides. The command prints each variation's motif similarity to the input and how much the
variations differ from each other. Errors are one line and exit 1; nothing is written for a bad input.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, fail
from acemusic.cli.options import Cfg, Checkpoint, Force, SoundFont, Temperature, TopP
from acemusic.errors import AcemusicError


@app.command("vary")
def vary_cmd(
    source: Annotated[Path, typer.Argument(help="MIDI file to vary.")],
    n: Annotated[int, typer.Option("--n", help="Number of variations (1-16).")] = 4,
    strength: Annotated[float, typer.Option("--strength", help="Share of the bars to regenerate (0-1].")] = 0.5,
    keep_bars: Annotated[int, typer.Option("--keep-bars", help="Opening bars kept in every variation.")] = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Name pattern: var.mid -> var1.mid, var2.mid...")]
    = None,
    wav: Annotated[bool, typer.Option("--wav", help="Also render each variation to a WAV beside its MIDI.")]
    = False,
    temperature: Temperature = 1.0,
    top_p: TopP = 0.95,
    cfg: Cfg = 1.5,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same variations.")] = 0,
    checkpoint: Checkpoint = None,
    soundfont: SoundFont = None,
    force: Force = False,
) -> None:
    """Write N variations of a piece: motif kept, other bars reworked."""
    t0 = time.perf_counter()
    try:
        _vary(source, n, strength, keep_bars, out, wav, temperature, top_p, cfg, seed, checkpoint, soundfont, force,
              t0)
    except AcemusicError as e:
        fail(str(e))


def _vary(source, n, strength, keep_bars, out, wav, temperature, top_p, cfg, seed, checkpoint, soundfont, force,
          t0) -> None:
    from acemusic.api import check_sampling, load
    from acemusic.cli import tasks_common as tc
    from acemusic.generate.tasks.io import load_piece
    from acemusic.generate.tasks.vary import check_vary, variation_stats
    from acemusic.tokenizer import Tokenizer

    check_sampling(temperature, top_p, cfg)
    piece = load_piece(Tokenizer(), source)
    check_vary(n, strength, keep_bars, piece.n_bars)
    out = out or tc.default_out(source, "var")
    mids = [out.with_name(f"{out.stem}{i + 1}{out.suffix or '.mid'}") for i in range(n)]
    wavs = [m.with_suffix(".wav") for m in mids] if wav else []
    tc.check_outputs([*mids, *wavs], force, wavs[0] if wavs else None, soundfont)

    bundle = load(checkpoint)
    with tc.bar_progress("varying", n * max(1, round(strength * (piece.n_bars - keep_bars)))) as on_step:
        scores = bundle.vary(piece.score, n=n, strength=strength, keep_bars=keep_bars, temperature=temperature,
                             top_p=top_p, cfg=cfg, seed=seed, on_step=on_step)
    stats = variation_stats(piece.score, scores)
    for i, (score, mid) in enumerate(zip(scores, mids, strict=True)):
        head = tc.write_outputs(bundle, score, mid, wavs[i] if wavs else None, soundfont, force)
        tc.echo(f"{head}: motif similarity {stats['motif_similarity'][i]:.2f}, "
                f"differs from the input by {stats['difference_from_original'][i]:.2f}")
    tc.echo(f"{n} variations of {source}, mean pairwise difference {stats['mean_pairwise_difference']:.2f}, "
            f"seed {seed}, {tc.elapsed(t0)}")
