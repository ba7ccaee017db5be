"""`acemusic interpolate`: a bridge from piece A to piece B, or a morph sequence A -> B in N steps.

    acemusic interpolate a.mid b.mid --bars 8 -o medley.mid            # A + an 8-bar bridge + B
    acemusic interpolate a.mid b.mid --bars 8 --bridge-only -o bridge.mid
    acemusic interpolate a.mid b.mid --bars 4 --steps 5 -o morph.mid   # 5 steps of 4 bars, a rest bar between

With --steps the command prints, per step, how far its pitch-class and rhythm statistics have moved from A
towards B (0 = A, 1 = B). Errors are one line and exit 1; nothing is generated or written for a bad input.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, fail
from acemusic.cli.options import Checkpoint, Force, Seed, SoundFont, Temperature, TopP, Wav
from acemusic.errors import AcemusicError


@app.command("interpolate")
def interpolate_cmd(
    a: Annotated[Path, typer.Argument(help="MIDI file to start from (A).")],
    b: Annotated[Path, typer.Argument(help="MIDI file to arrive at (B).")],
    bars: Annotated[int, typer.Option("--bars", help="Bars of the bridge, or of each morph step (1-256).")] = 8,
    steps: Annotated[int, typer.Option("--steps", help="Morph A -> B in this many steps (0 = a bridge).")] = 0,
    bridge_only: Annotated[bool, typer.Option("--bridge-only", help="Write the bridge without A and B.")] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="MIDI file to write.")] = Path("interpolation.mid"),
    wav: Wav = None,
    temperature: Temperature = 1.0,
    top_p: TopP = 0.95,
    cfg: Annotated[float, typer.Option("--cfg", help="Guidance scale for the bridge (1 = off).")] = 1.5,
    seed: Seed = 0,
    checkpoint: Checkpoint = None,
    soundfont: SoundFont = None,
    force: Force = False,
) -> None:
    """Interpolate between two pieces: a bridge from A to B, or (--steps N) a morph sequence A -> B."""
    t0 = time.perf_counter()
    try:
        _interpolate(a, b, bars, steps, bridge_only, out, wav, temperature, top_p, cfg, seed, checkpoint,
                     soundfont, force, t0)
    except AcemusicError as e:
        fail(str(e))


def _interpolate(a, b, bars, steps, bridge_only, out, wav, temperature, top_p, cfg, seed, checkpoint, soundfont,
                 force, t0) -> None:
    from acemusic.api import check_sampling, load
    from acemusic.cli import tasks_common as tc
    from acemusic.errors import InputError
    from acemusic.generate.prompt import check_bars
    from acemusic.generate.tasks.interpolate import MAX_STEPS
    from acemusic.generate.tasks.io import load_piece
    from acemusic.tokenizer import Tokenizer

    check_bars(bars)
    check_sampling(temperature, top_p, cfg)
    if steps and not 2 <= steps <= MAX_STEPS:
        raise InputError("--steps", f"must be 2..{MAX_STEPS} (or 0 for a bridge), got {steps}")
    if steps and bridge_only:
        raise InputError("--bridge-only", "is for bridges; a morph (--steps) writes its steps")
    tok = Tokenizer()
    pa, pb = load_piece(tok, a), load_piece(tok, b)
    tc.check_outputs([out, wav], force, wav, soundfont)

    bundle = load(checkpoint)
    if not steps:
        with tc.bar_progress("bridging", bars) as on_step:
            score = bundle.interpolate(pa.score, pb.score, bars=bars, bridge_only=bridge_only,
                                       temperature=temperature, top_p=top_p, cfg=cfg, seed=seed, on_step=on_step)
        head = tc.write_outputs(bundle, score, out, wav, soundfont, force)
        what = f"a {bars}-bar bridge" if bridge_only else f"{a.name} + {bars}-bar bridge + {b.name}"
        tc.echo(f"{head}: {what}, {tc.n_notes(score)} notes, seed {seed}, {tc.elapsed(t0)}")
        return

    from acemusic.generate.tasks.interpolate import concat, morph_stats

    with tc.bar_progress("morphing", bars * (steps - 2)) as on_step:
        scores = bundle.morph(pa.score, pb.score, bars=bars, steps=steps, temperature=temperature, top_p=top_p,
                              seed=seed, on_step=on_step)
    head = tc.write_outputs(bundle, concat(scores), out, wav, soundfont, force)
    for k, row in enumerate(morph_stats(scores)):
        tc.echo(f"step {k}: progress A->B {row['progress']:.2f}  (pitch-class overlap "
                f"A {row['pitch_class_overlap_a']:.2f} B {row['pitch_class_overlap_b']:.2f}; rhythm "
                f"A {row['rhythm_overlap_a']:.2f} B {row['rhythm_overlap_b']:.2f}; {row['notes']} notes)")
    tc.echo(f"{head}: morph {a.name} -> {b.name} in {steps} steps of {bars} bars, seed {seed}, {tc.elapsed(t0)}")
