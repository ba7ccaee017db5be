"""`acemusic harmonize`: a melody -> the melody, kept exactly as the top voice, with voices written under it.

    acemusic harmonize melody.mid -o chorale.mid                       # alto, tenor, bass (Bach chorale style)
    acemusic harmonize melody.mid --style chords --instrument piano -o chords.mid --lookahead 4

A file with several tracks: the highest-sounding pitched track is the melody unless --track N says otherwise (the
summary line names it). Prints the voice-leading report (parallel fifths/octaves, range violations, crossings) for
chorale style. Errors are one line and exit 1; nothing is generated or written for a bad input.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, fail
from acemusic.cli.options import Cfg, Checkpoint, Force, Seed, SoundFont, Temperature, TopP, Wav
from acemusic.errors import AcemusicError


@app.command("harmonize")
def harmonize_cmd(
    melody: Annotated[Path, typer.Argument(help="MIDI file with the melody.")],
    style: Annotated[str, typer.Option("--style", help="chorale (SATB voices) or chords (accompaniment).")]
    = "chorale",
    track: Annotated[int | None, typer.Option("--track", help="Melody track index (default: the highest).")]
    = None,
    instrument: Annotated[str | None, typer.Option("--instrument", help="Chords instrument (default piano).")]
    = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="Optional text for the model.")] = None,
    lookahead: Annotated[int, typer.Option("--lookahead", help="Candidate bars per bar, reranked against the "
                                                               "upcoming melody (1 = off).")] = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="MIDI to write (default IN.harmonized.mid).")]
    = None,
    wav: Wav = None,
    temperature: Temperature = 1.0,
    top_p: TopP = 0.95,
    cfg: Cfg = 1.5,
    seed: Seed = 0,
    checkpoint: Checkpoint = None,
    soundfont: SoundFont = None,
    force: Force = False,
) -> None:
    """Harmonize a melody: kept exactly as the top voice; chorale voices or chords under it."""
    t0 = time.perf_counter()
    try:
        _harmonize(melody, style, track, instrument, prompt, lookahead, out, wav, temperature, top_p, cfg, seed,
                   checkpoint, soundfont, force, t0)
    except AcemusicError as e:
        fail(str(e))


def _harmonize(melody, style, track, instrument, prompt, lookahead, out, wav, temperature, top_p, cfg, seed,
               checkpoint, soundfont, force, t0) -> None:
    from acemusic.api import check_lookahead, check_sampling, load
    from acemusic.cli import tasks_common as tc
    from acemusic.errors import InputError
    from acemusic.generate.prompt import resolve_instrument
    from acemusic.generate.tasks.harmonize import STYLES, pick_melody
    from acemusic.tokenizer import Tokenizer

    if style not in STYLES:
        raise InputError("--style", f"must be one of {', '.join(STYLES)}, got {style!r}")
    check_sampling(temperature, top_p, cfg)
    check_lookahead(lookahead)
    program = None if instrument is None else resolve_instrument(instrument)
    score = Tokenizer().load_score(melody)  # bad files fail here, before the model loads
    idx, why = pick_melody(score, track)
    out = out or tc.default_out(melody, "harmonized")
    tc.check_outputs([out, wav], force, wav, soundfont)

    bundle = load(checkpoint)
    with tc.bar_progress("harmonizing", _n_bars(score)) as on_step:
        result = bundle.harmonize(score, style=style, track=idx, program=program, lookahead=lookahead,
                                  prompt=prompt, temperature=temperature, top_p=top_p, cfg=cfg, seed=seed,
                                  on_step=on_step)
    head = tc.write_outputs(bundle, result, out, wav, soundfont, force)
    added = tc.n_notes(result) - result.tracks[0].note_num()
    tc.echo(f"{head}: melody = {why}, {style}, {added} new notes, seed {seed}, {tc.elapsed(t0)}")
    if style == "chorale":
        from acemusic.eval.voice_leading import analyze, satb_voices

        r = analyze(satb_voices(result))
        tc.echo(f"voice leading: {r['parallel_fifths']} parallel fifths, {r['parallel_octaves']} parallel octaves "
                f"(of {r['pair_transitions']} voice-pair moves), {r['range_violations']} of {r['notes']} notes "
                f"out of range, {r['crossings']} crossings")


def _n_bars(score) -> int:
    ts = score.time_signatures[0] if len(score.time_signatures) else None
    bar = (ts.numerator * 4 * score.ticks_per_quarter // ts.denominator) if ts else 4 * score.ticks_per_quarter
    return max(1, -(-score.end() // max(bar, 1)))
