"""Restyle (style transfer): keep the melodic and rhythmic skeleton, regenerate everything else under a new prompt.

The skeleton is the top line of the melody track (`harmonize.pick_melody`, or `track`): its onsets, pitches and
durations are forced exactly (played by the prompt's first instrument, or its own program); the meter and tempo of
the source stay. Texture, harmony and instrumentation are new: the prompt's instruments (default piano) get new
notes, with the prompt's style tag, mood and text in the conditioning. `report` says how much melody was kept and
how far style statistics moved (source vs output, and the source's accompaniment vs the new one).
Tests: `.venv/bin/python -m pytest tests/generate/test_restyle.py -q`.
"""

from __future__ import annotations

import numpy as np
import symusic

from acemusic.generate.tasks.accompany import given_conditions, new_notes_for
from acemusic.generate.tasks.given import GivenTask, grid, sub_score, track_program
from acemusic.generate.tasks.harmonize import monophonic, pick_melody
from acemusic.tokenizer.vocab import DRUMS

CONSONANCE = 1.0
STYLE_FEATURES = ("pitch_class_entropy", "polyphony", "note_density", "pitch_range", "scale_consistency",
                  "groove_consistency")


def lead_program(spec, default: int) -> int:
    """The first pitched instrument the prompt names (in its word order), else `default`."""
    from acemusic.generate.prompt import resolve_instruments

    for name in spec.instrument_names:
        progs = [p for p in resolve_instruments([name]) if p != DRUMS]
        if progs:
            return progs[0]
    pitched = [p for p in spec.instruments if p != DRUMS]
    return pitched[0] if pitched else default


class RestyleTask(GivenTask):
    """Keep the skeleton of `source` (melody top line); regenerate the rest under `spec` (a PromptSpec)."""

    def __init__(self, tok, source: symusic.Score, spec, track: int | None = None, lookahead: int = 1,
                 consonance: float = CONSONANCE, key_strength: float = 1.0) -> None:
        source = grid(tok, source)
        mel_idx, self.melody_choice = pick_melody(source, track)
        self.original = source
        src = sub_score(source, [mel_idx])
        src.tracks[0] = monophonic(src.tracks[0])
        lead = lead_program(spec, track_program(src.tracks[0]))
        if spec.instruments and lead != track_program(src.tracks[0]):  # the new lead instrument plays the melody
            src.tracks[0].program = lead
            src.tracks[0].is_drum = False
            src.tracks[0].name = "Melody"
        programs = tuple(spec.instruments) or (0,)
        cond = given_conditions(src, [0], programs, spec.style)  # key and mode: the melody's own
        super().__init__(source=src, kept_tracks=[0], given=sub_score(src, [0]),
                         new=new_notes_for(programs, consonance), cond=cond, text=spec.text, lookahead=lookahead,
                         key_strength=key_strength, name="restyle")

    def report(self, output: symusic.Score) -> dict:
        """Melody kept (share of skeleton notes found in the output at the same onset, pitch and duration) and
        the style statistics of source and output (`eval.stats`), with their differences."""
        from acemusic.eval.stats import describe

        kept = {(n.time, n.pitch, n.duration) for n in self.source.tracks[0].notes}
        out_notes = {(n.time, n.pitch, n.duration) for t in output.tracks for n in t.notes}
        before = describe(self.original, STYLE_FEATURES)
        after = describe(output, STYLE_FEATURES)
        ioi_a = describe(self.original, ["ioi_histogram"])["ioi_histogram"]
        ioi_b = describe(output, ["ioi_histogram"])["ioi_histogram"]
        progs_a = sorted({track_program(t) for t in self.original.tracks if t.note_num()})
        progs_b = sorted({track_program(t) for t in output.tracks if t.note_num()})
        return {
            "melody": self.melody_choice,
            "melody_notes": len(kept),
            "melody_kept": len(kept & out_notes) / max(len(kept), 1),
            "style_before": {k: float(before[k]) for k in STYLE_FEATURES},
            "style_after": {k: float(after[k]) for k in STYLE_FEATURES},
            "style_change": {k: float(after[k]) - float(before[k]) for k in STYLE_FEATURES},
            "ioi_histogram_l1": float(np.abs(np.asarray(ioi_a) - np.asarray(ioi_b)).sum()),
            "instruments_before": progs_a,
            "instruments_after": progs_b,
        }
