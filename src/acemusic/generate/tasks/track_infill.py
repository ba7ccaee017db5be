"""Track infill: regenerate one track while every other track is kept exactly.

The kept tracks are forced note for note; the regenerated track's program (its own, or another one) is the only
program that gets new notes, in its playable range. Same look-ahead options as accompany.
Tests: `.venv/bin/python -m pytest tests/generate/test_accompany.py -q`.
"""

from __future__ import annotations

import symusic

from acemusic.errors import InputError
from acemusic.generate.tasks.accompany import CONSONANCE, given_conditions, new_notes_for
from acemusic.generate.tasks.given import GivenTask, grid, program_name, sub_score, track_program


class TrackInfillTask(GivenTask):
    """Drop track `track` of `source` and write it again (as `program`, default its own) around the others."""

    def __init__(self, tok, source: symusic.Score, track: int, program: int | None = None,
                 text: str | None = None, style: str | None = None, lookahead: int = 1,
                 consonance: float = CONSONANCE, key_strength: float = 1.0) -> None:
        source = grid(tok, source)
        if not 0 <= track < len(source.tracks):
            raise InputError("--track", f"no track {track}; the file has {len(source.tracks)} tracks")
        kept = [i for i, t in enumerate(source.tracks) if i != track and t.note_num() > 0]
        if not kept:
            raise InputError("input", "track infill needs at least one other track with notes to keep")
        prog = track_program(source.tracks[track]) if program is None else program
        src = sub_score(source, kept)
        idx = list(range(len(kept)))
        self.track, self.program = track, prog
        super().__init__(source=src, kept_tracks=idx, given=sub_score(src, idx),
                         new=new_notes_for((prog,), consonance), cond=given_conditions(src, idx, (prog,), style),
                         text=text or f"A piece with {program_name(prog)}.", lookahead=lookahead,
                         key_strength=key_strength, name="track_infill")

    def new_tracks(self, notes):
        tracks = super().new_tracks(notes)
        if not tracks:  # the model may leave the track silent: still return it, empty
            from acemusic.generate.tasks.given import make_track

            tracks = [make_track(f"{program_name(self.program)} (generated)", self.program, [])]
        return tracks
