"""Accompany: keep every given track exactly; the model adds new instruments (piano, bass, drums, ...).

The given tracks are forced note for note (`generate.forced`); new notes are only for the asked programs, each in
its playable range (`prompt.pitch_range`), up to 4 per onset. Sight of the upcoming melody, without retraining:
a consonance prior (new pitches that form a 2nd, tritone or 7th with a given note sounding at their onset get a
logit penalty, though the token order may only emit that given note later) and, with `lookahead > 1`, K candidate
bars per bar reranked by their fit to the whole bar's given notes and the next bar's first given onset.
Tests: `.venv/bin/python -m pytest tests/generate/test_accompany.py -q`.
"""

from __future__ import annotations

import symusic

from acemusic.errors import InputError
from acemusic.generate.forced import NewNotes
from acemusic.generate.tasks.given import GivenTask, grid, sub_score, track_program
from acemusic.tokenizer.vocab import DRUMS

CONSONANCE = 1.0  # softer than harmonize: accompaniment may pass through dissonance


def given_conditions(score: symusic.Score, tracks: list[int], new_programs: tuple[int, ...], style: str | None,
                     key: int | None = None, mode: str | None = None):
    """Prefix conditions: key/mode of the kept pitched notes (unless given), every program that will sound."""
    from acemusic.generate.tasks.harmonize import melody_key
    from acemusic.tokenizer import Conditions

    pitched = [i for i in tracks if not score.tracks[i].is_drum and score.tracks[i].note_num()]
    if key is None and pitched:
        key, mode = melody_key(score, pitched)
    insts = tuple(sorted({track_program(score.tracks[i]) for i in tracks} | set(new_programs)))
    return Conditions(style=style, key=key, mode=mode, instruments=insts)


def new_notes_for(programs: tuple[int, ...], consonance: float, max_per_event: int = 4) -> NewNotes:
    from acemusic.generate.prompt import pitch_range

    return NewNotes(tuple(programs), pitch_ranges={p: pitch_range(p) for p in programs},
                    max_per_event=max_per_event, consonance=consonance)


class AccompanyTask(GivenTask):
    """Keep `tracks` of `source` (default: all); add `instruments` (GM programs, 128 = drums)."""

    def __init__(self, tok, source: symusic.Score, instruments: tuple[int, ...], tracks: list[int] | None = None,
                 text: str | None = None, style: str | None = None, lookahead: int = 1,
                 consonance: float = CONSONANCE, key_strength: float = 1.0) -> None:
        if not instruments:
            raise InputError("--instruments", "name at least one instrument to add")
        source = grid(tok, source)
        kept = [i for i, t in enumerate(source.tracks) if t.note_num() > 0] if tracks is None else list(tracks)
        for i in kept:
            if not 0 <= i < len(source.tracks):
                raise InputError("--track", f"no track {i}; the file has {len(source.tracks)} tracks")
        kept = [i for i in kept if source.tracks[i].note_num() > 0]
        if not kept:
            raise InputError("input", "no notes to accompany")
        src = sub_score(source, kept)
        idx = list(range(len(kept)))
        cond = given_conditions(src, idx, instruments, style)
        names = ", ".join(_names(instruments))
        super().__init__(source=src, kept_tracks=idx, given=sub_score(src, idx), new=new_notes_for(instruments,
                         consonance), cond=cond, text=text or f"A piece for {names}.", lookahead=lookahead,
                         key_strength=key_strength, name="accompany")


def _names(programs) -> list[str]:
    from acemusic.generate.tasks.given import program_name

    return [program_name(p) for p in programs if p != DRUMS] + (["drums"] if DRUMS in programs else [])
