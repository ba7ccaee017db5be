"""`acemusic accompany` and `acemusic infill-track`: keep given tracks exactly, generate the others.

    acemusic accompany melody.mid --instruments piano,bass,drums -o band.mid [--track 0] [--lookahead 4]
    acemusic infill-track song.mid --track 1 [--instrument "electric bass"] -o new-bass.mid

accompany keeps every track of the input (or only --track N, repeatable) and adds the instruments; infill-track
drops track N and writes it again around the others. Errors are one line and exit 1; nothing is generated or
written for a bad input.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, fail
from acemusic.cli.options import Cfg, Checkpoint, Force, Seed, SoundFont, Temperature, TopP, Wav
from acemusic.errors import AcemusicError

_Look = Annotated[int, typer.Option("--lookahead", help="Candidate bars per bar, reranked against the upcoming "
                                                        "given notes (1 = off).")]
_Prompt = Annotated[str | None, typer.Option("--prompt", help="Optional text: mood, style.")]


@app.command("accompany")
def accompany_cmd(
    source: Annotated[Path, typer.Argument(help="MIDI file with the melody (or any tracks to keep).")],
    instruments: Annotated[str, typer.Option("--instruments", help="Instruments to add: piano,bass,drums.")]
    = "piano,bass,drums",
    track: Annotated[list[int] | None, typer.Option("--track", help="Keep only this track (repeatable).")] = None,
    prompt: _Prompt = None,
    lookahead: _Look = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="MIDI to write (default IN.accompanied.mid).")]
    = None,
    wav: Wav = None, temperature: Temperature = 1.0, top_p: TopP = 0.95, cfg: Cfg = 1.5, seed: Seed = 0,
    checkpoint: Checkpoint = None, soundfont: SoundFont = None, force: Force = False,
) -> None:
    """Accompany: the given tracks are kept exactly, new instruments are generated around them."""
    t0 = time.perf_counter()
    try:
        from acemusic.api import check_lookahead, check_sampling, load
        from acemusic.cli import tasks_common as tc
        from acemusic.errors import InputError
        from acemusic.generate.prompt import parse_prompt
        from acemusic.tokenizer import Tokenizer

        check_sampling(temperature, top_p, cfg)
        check_lookahead(lookahead)
        parse_prompt(prompt or "").override(instruments=instruments)  # unknown instruments fail here
        score = Tokenizer().load_score(source)
        for i in track or []:
            if not 0 <= i < len(score.tracks) or score.tracks[i].note_num() == 0:
                raise InputError("--track", f"track {i} has no notes (the file has {len(score.tracks)} tracks)")
        out = out or tc.default_out(source, "accompanied")
        tc.check_outputs([out, wav], force, wav, soundfont)
        bundle = load(checkpoint)
        with tc.bar_progress("accompanying", 0) as on_step:
            result = bundle.accompany(score, instruments, tracks=track or None, prompt=prompt, lookahead=lookahead,
                                      temperature=temperature, top_p=top_p, cfg=cfg, seed=seed, on_step=on_step)
        head = tc.write_outputs(bundle, result, out, wav, soundfont, force)
        kept = len(track) if track else sum(t.note_num() > 0 for t in score.tracks)
        added = sum(t.note_num() for t in result.tracks[kept:])
        tc.echo(f"{head}: {kept} track(s) kept, {added} new notes ({instruments}), seed {seed}, {tc.elapsed(t0)}")
    except AcemusicError as e:
        fail(str(e))


@app.command("infill-track")
def infill_track_cmd(
    source: Annotated[Path, typer.Argument(help="MIDI file.")],
    track: Annotated[int, typer.Option("--track", help="Index of the track to regenerate.")],
    instrument: Annotated[str | None, typer.Option("--instrument", help="Play it on another instrument.")] = None,
    prompt: _Prompt = None,
    lookahead: _Look = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="MIDI to write (default IN.retracked.mid).")]
    = None,
    wav: Wav = None, temperature: Temperature = 1.0, top_p: TopP = 0.95, cfg: Cfg = 1.5, seed: Seed = 0,
    checkpoint: Checkpoint = None, soundfont: SoundFont = None, force: Force = False,
) -> None:
    """Track infill: regenerate one track while every other track is kept exactly."""
    t0 = time.perf_counter()
    try:
        from acemusic.api import check_lookahead, check_sampling, load
        from acemusic.cli import tasks_common as tc
        from acemusic.errors import InputError
        from acemusic.generate.prompt import resolve_instruments
        from acemusic.tokenizer import Tokenizer

        check_sampling(temperature, top_p, cfg)
        check_lookahead(lookahead)
        if instrument is not None:
            resolve_instruments([instrument])
        score = Tokenizer().load_score(source)
        if not 0 <= track < len(score.tracks):
            raise InputError("--track", f"no track {track}; the file has {len(score.tracks)} tracks")
        out = out or tc.default_out(source, "retracked")
        tc.check_outputs([out, wav], force, wav, soundfont)
        bundle = load(checkpoint)
        with tc.bar_progress("regenerating", 0) as on_step:
            result = bundle.infill_track(score, track, instrument=instrument, prompt=prompt, lookahead=lookahead,
                                         temperature=temperature, top_p=top_p, cfg=cfg, seed=seed, on_step=on_step)
        head = tc.write_outputs(bundle, result, out, wav, soundfont, force)
        tc.echo(f"{head}: track {track} regenerated ({result.tracks[-1].note_num()} notes), others kept, "
                f"seed {seed}, {tc.elapsed(t0)}")
    except AcemusicError as e:
        fail(str(e))
