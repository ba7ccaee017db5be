"""music21 stream -> symusic.Score, directly (no MIDI file round trip).

Writing MIDI through music21 (`score.write('midi')`) is slow and fails on some corpus files (bad repeats in
bwv277.krn), so we read the parsed stream ourselves: per part, ties stripped, notes and chords at their offsets in
quarter lengths converted to ticks at TPQ=12, the part's GM program, the first metronome mark (or 100 qpm), the time
signatures, and anacrusis handling so the first full measure starts on a bar line.

Instrument choice when music21 knows no MIDI program (choir or piano): parts named like voices (soprano, alto, tenor,
bass, cantus, ...) and parts of vocal collections (chorales, Palestrina, Renaissance) become Choir Aahs (52);
fiddle-tune collections (O'Neill, Ryan, Aird) become violin (40); everything else is acoustic piano (0).
Test: `pytest tests/data/test_m21.py`.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from acemusic.tokenizer.vocab import TPQ

DEFAULT_QPM = 100.0
DEFAULT_VELOCITY = 80
CHOIR, VIOLIN, PIANO = 52, 40, 0
VOICE_WORDS = ("soprano", "alto", "tenor", "bass", "cantus", "superius", "altus", "bassus", "quintus", "sextus",
               "voice", "vox", "discantus", "contratenor", "tenore", "canto", "basso", "triplum", "motetus", "duplum")
VOCAL_STYLES = ("bach", "palestrina", "renaissance")
FIDDLE_STYLES = ("folk_irish", "folk_scottish")


def default_program(part_name: str | None, style: str) -> int:
    """GM program for a part whose instrument has no MIDI program (see the module docstring)."""
    name = (part_name or "").lower()
    if style in VOCAL_STYLES or any(w in name for w in VOICE_WORDS):
        return CHOIR
    if style in FIDDLE_STYLES:
        return VIOLIN
    return PIANO


def _ticks(ql) -> int:
    return round(float(ql) * TPQ)


def sig_from_ticks(ticks: int) -> tuple[int, int] | None:
    """The plainest time signature whose measure lasts `ticks` (n/4, else n/8, else n/16); None if off the grid."""
    if ticks <= 0:
        return None
    for den, unit in ((4, TPQ), (8, TPQ // 2), (16, TPQ // 4)):
        if ticks % unit == 0:
            return ticks // unit, den
    return None


def _declared(ts) -> tuple[int, int, int]:
    """(numerator, denominator, bar ticks) of a music21 TimeSignature; additive meters use their total length."""
    bar = _ticks(ts.barDuration.quarterLength)
    num, den = int(ts.numerator), int(ts.denominator)
    if num * TPQ * 4 // den != bar:
        num, den = sig_from_ticks(bar) or (num, den)
    return num, den, bar


def measure_grid(part) -> tuple[int, list[tuple[int, int, int]]]:
    """Pickup shift (ticks) and time-signature events [(tick, num, den)] (after the shift) from a part's measures.

    Declared signatures are kept through partial measures (a short last bar of a repeat plus the next pickup add up
    to one bar), but a *full* measure that starts off the declared grid re-anchors it with a filler bar, so bar
    lines never drift. Without any declared signature (free meter in Essen tunes) every measure is its own bar.
    """
    from music21 import stream

    measures = list(part.getElementsByClass(stream.Measure))
    if not measures:
        return 0, []
    shift = 0
    first = measures[0]
    ts0 = first.timeSignature or first.getContextByClass("TimeSignature")
    if ts0 is not None and len(measures) > 1:
        bar0 = _declared(ts0)[2]
        dur0 = _ticks(first.duration.quarterLength)
        pad = _ticks(first.paddingLeft or 0)
        if 0 < pad < bar0:
            shift = pad
        elif 0 < dur0 < bar0:
            shift = bar0 - dur0
    events: list[tuple[int, int, int]] = []
    declared: tuple[int, int, int] | None = None
    origin = 0  # tick where the current grid starts
    for i, m in enumerate(measures):
        start = _ticks(m.offset) + shift if i else 0
        length = _ticks(m.duration.quarterLength)
        if m.timeSignature is not None:
            new = _declared(m.timeSignature)
            if new != declared or i == 0:
                declared, origin = new, start
                events.append((start, new[0], new[1]))
                continue
        if declared is None:  # free meter: bar = measure
            sig = sig_from_ticks(length)
            if sig is not None and (not events or events[-1][1:] != sig):
                events.append((start, *sig))
            continue
        bar = declared[2]
        if length == bar and (start - origin) % bar:
            last_line = origin + (start - origin) // bar * bar
            filler = sig_from_ticks(start - last_line)
            if filler is not None:
                events.append((last_line, *filler))
                events.append((start, declared[0], declared[1]))
                origin = start
    return shift, _dedupe(events)


def _dedupe(events: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Keep the last event per tick, then drop events that repeat the signature already in force."""
    by_tick: dict[int, tuple[int, int, int]] = {}
    for e in events:
        by_tick[e[0]] = e
    out: list[tuple[int, int, int]] = []
    for t in sorted(by_tick):
        e = by_tick[t]
        if not out or out[-1][1:] != e[1:]:
            out.append(e)
    return out


def _part_notes(part) -> tuple[list[int], list[int], list[int], list[int]]:
    """(onset ticks, duration ticks, pitch, velocity) of every sounding pitched note of a part, ties merged.

    Ties are merged here (per pitch: a 'start' note is extended by its 'continue'/'stop' notes) instead of with
    `stripTies`, which deep-copies the whole part and was a quarter of the conversion time.
    """
    from music21 import harmony, note

    on, du, pi, ve = [], [], [], []
    open_ties: dict[int, int] = {}  # midi pitch -> index of the note a tie is extending
    for el in part.flatten().notes:
        # chord symbols do not sound; grace notes have no written length
        if isinstance(el, harmony.Harmony) or el.duration.isGrace:
            continue
        if isinstance(el, note.Unpitched) or not hasattr(el, "pitches"):
            continue
        dur = _ticks(el.duration.quarterLength)
        if dur <= 0:
            continue
        t = _ticks(el.offset)
        for n in (el.notes if el.isChord else [el]):
            if not hasattr(n, "pitch"):  # unpitched percussion inside a PercussionChord
                continue
            midi = n.pitch.midi
            if not 0 <= midi <= 127:
                continue
            tie = n.tie or (el.tie if el.isChord else None)
            kind = tie.type if tie is not None else None
            j = open_ties.get(midi)
            if kind in ("continue", "stop") and j is not None and on[j] + du[j] >= t:
                du[j] = t + dur - on[j]
                if kind == "stop":
                    del open_ties[midi]
                continue
            vol = getattr(n, "_volume", None) or getattr(el, "_volume", None)
            vel = vol.velocity if vol is not None and vol.velocity is not None else DEFAULT_VELOCITY
            on.append(t)
            du.append(dur)
            pi.append(midi)
            ve.append(int(np.clip(vel, 1, 127)))
            if kind in ("start", "continue"):
                open_ties[midi] = len(on) - 1
            else:
                open_ties.pop(midi, None)
    return on, du, pi, ve


def _tempos(score, shift: int) -> list[tuple[int, float]]:
    from music21 import tempo

    out: dict[int, float] = {}
    for mm in score.flatten().getElementsByClass(tempo.MetronomeMark):
        try:
            qpm = mm.getQuarterBPM()
        except Exception:  # a text-only mark music21 cannot turn into a number
            qpm = None
        if qpm and qpm > 0:
            t = _ticks(mm.offset) + shift if _ticks(mm.offset) else 0
            out.setdefault(t, float(qpm))
    return sorted(out.items())


@contextmanager
def fast_parsing():
    """music21's ABC import beams every measure (notation only, a third of the parse time): skip it meanwhile."""
    from music21 import stream

    original = stream.Stream.makeBeams
    stream.Stream.makeBeams = lambda self, *args, **kwargs: None
    try:
        yield
    finally:
        stream.Stream.makeBeams = original


def has_tempo_mark(s) -> bool:
    """Whether the work states a tempo (else the converted score carries the 100 qpm default)."""
    return bool(_tempos(s, 0))


def stream_to_score(s, style: str = "other"):
    """Convert a parsed music21 Score (or Part/Stream) to a symusic.Score at TPQ=12.

    Returns the score; parts without sounding notes are dropped (the caller rejects a score with no notes).
    """
    from music21 import stream
    from symusic import Note, Score, Tempo, TimeSignature, Track

    if isinstance(s, stream.Opus):
        s = s.mergeScores()
    parts = list(s.parts) if isinstance(s, stream.Score) and len(s.parts) else [s]
    ref = next((p for p in parts if p.hasMeasures()), parts[0])
    shift, ts_events = measure_grid(ref)
    if not ts_events:  # no measures (e.g. ABC without bar lines): declared signatures as written
        from music21 import meter

        for ts in s.flatten().getElementsByClass(meter.TimeSignature):
            num, den, _ = _declared(ts)
            ts_events.append((_ticks(ts.offset), num, den))
        ts_events = _dedupe(ts_events)

    out = Score(TPQ)
    for p in parts:
        on, du, pi, ve = _part_notes(p)
        if not on:
            continue
        inst = p.getInstrument(returnDefault=True)
        program = inst.midiProgram if inst is not None else None
        name = p.partName or (inst.instrumentName if inst is not None else None) or ""
        if program is None:
            program = default_program(name, style)
        is_drum = bool(inst is not None and inst.midiChannel == 9)
        tr = Track(name=str(name), program=int(program), is_drum=is_drum)
        tr.notes = Note.from_numpy(np.asarray(on, np.int32) + shift, np.asarray(du, np.int32),
                                   np.asarray(pi, np.int8), np.asarray(ve, np.int8))
        tr.notes.sort()
        out.tracks.append(tr)
    for t, num, den in ts_events or [(0, 4, 4)]:
        out.time_signatures.append(TimeSignature(int(t), int(num), int(den)))
    tempos = _tempos(s, shift) or [(0, DEFAULT_QPM)]
    if tempos[0][0] != 0:
        tempos.insert(0, (0, tempos[0][1]))
    for t, q in tempos:
        out.tempos.append(Tempo(int(t), qpm=float(q)))
    return out


def m21_metadata(s) -> dict[str, str | None]:
    """Title and composer from music21 metadata (None when absent)."""
    from music21 import stream

    if isinstance(s, stream.Opus) and len(s.scores):  # voices of one piece: the first one carries the title
        s = s.scores[0]
    md = getattr(s, "metadata", None)
    if md is None:
        return {"title": None, "composer": None}
    title = md.title or md.movementName
    composer = md.composer
    return {"title": str(title).strip() if title else None, "composer": str(composer).strip() if composer else None}
