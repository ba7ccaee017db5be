"""`acemusic restyle`: keep a piece's melodic and rhythmic skeleton, regenerate the rest under a new prompt.

    acemusic restyle in.mid --prompt "jazzy, swing, piano and bass" -o jazzy.mid [--track 0] [--report r.json]

Prints how much melody was kept and how far style statistics moved (and writes them as JSON with --report).
Errors are one line and exit 1; nothing is generated or written for a bad input.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, fail
from acemusic.cli.options import Cfg, Checkpoint, Force, Seed, SoundFont, Temperature, TopP, Wav
from acemusic.errors import AcemusicError


@app.command("restyle")
def restyle_cmd(
    source: Annotated[Path, typer.Argument(help="MIDI file to restyle.")],
    prompt: Annotated[str, typer.Option("--prompt", help="The new style: 'jazzy, swing, piano and bass'.")],
    track: Annotated[int | None, typer.Option("--track", help="Melody track index (default: the highest).")]
    = None,
    instruments: Annotated[str | None, typer.Option("--instruments", help="Override the prompt's instruments.")]
    = None,
    lookahead: Annotated[int, typer.Option("--lookahead", help="Candidate bars per bar (1 = off).")] = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="MIDI to write (default IN.restyled.mid).")]
    = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write the kept/moved report as JSON.")] = None,
    wav: Wav = None,
    temperature: Temperature = 1.0,
    top_p: TopP = 0.95,
    cfg: Cfg = 1.5,
    seed: Seed = 0,
    checkpoint: Checkpoint = None,
    soundfont: SoundFont = None,
    force: Force = False,
) -> None:
    """Restyle: the melody's skeleton is kept exactly; texture, harmony and instruments follow the prompt."""
    t0 = time.perf_counter()
    try:
        from acemusic.api import check_lookahead, check_sampling, load
        from acemusic.cli import tasks_common as tc
        from acemusic.generate.prompt import check_prompt, parse_prompt
        from acemusic.generate.tasks.harmonize import pick_melody
        from acemusic.tokenizer import Tokenizer

        check_sampling(temperature, top_p, cfg)
        check_lookahead(lookahead)
        parse_prompt(check_prompt(prompt)).override(instruments=instruments)
        score = Tokenizer().load_score(source)
        pick_melody(score, track)
        out = out or tc.default_out(source, "restyled")
        tc.check_outputs([out, wav, report], force, wav, soundfont)
        bundle = load(checkpoint)
        with tc.bar_progress("restyling", 0) as on_step:
            result, rep = bundle.restyle(score, prompt, track=track, instruments=instruments, lookahead=lookahead,
                                         temperature=temperature, top_p=top_p, cfg=cfg, seed=seed, report=True,
                                         on_step=on_step)
        head = tc.write_outputs(bundle, result, out, wav, soundfont, force)
        if report is not None:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(rep, indent=1))
        moved = ", ".join(f"{k} {rep['style_before'][k]:.2f} -> {rep['style_after'][k]:.2f}"
                          for k in ("note_density", "polyphony", "pitch_class_entropy"))
        tc.echo(f"{head}: melody = {rep['melody']}, {rep['melody_kept']:.0%} of {rep['melody_notes']} melody notes "
                f"kept; {moved}; instruments {rep['instruments_before']} -> {rep['instruments_after']}; "
                f"seed {seed}, {tc.elapsed(t0)}")
    except AcemusicError as e:
        fail(str(e))
