"""Token grammar as a state machine, plus control masks composed on top (anticipation-style small functions).

The grammar (docs/TOKENS.md) accepts every sequence the tokenizer writes and nothing it cannot decode:

    sequence = BOS Style Key Mode Density Inst+ body EOS      body = bar+
    bar      = Bar [TimeSig] [Tempo] event*                   event = Position [Tempo] note+
    note     = [Program] [Velocity] Pitch Duration

with the tokenizer's invariants: Inst ascending; Program in the Inst set; Position strictly increasing and inside the
bar (current time signature); bar 1 carries TimeSig and Tempo, the first note Program and Velocity; state tokens
(TimeSig, Tempo, Program, Velocity) only where the value changes; inside an event notes ascend by (program, pitch).

`GrammarState.allowed()` returns a boolean mask over the vocabulary, built from a few slice assignments on
precomputed per-type ranges (microseconds); `advance(id)` updates the state in O(1). `Controls` (bar budget, bar-1
header, locked meter/tempo, notes per position, pitch ranges, duration fit, key bias) narrow that mask and add a soft
logit bias. Decoding that samples only allowed tokens always yields a sequence the tokenizer decodes to valid MIDI.

Tests: `.venv/bin/python -m pytest tests/generate/test_constraints.py -q`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import numpy as np

from acemusic.tokenizer.vocab import DRUMS, TYPES, Vocab

# Phases = type of the last consumed token (START before anything; DONE after EOS).
START, BOS, STYLE, KEY, MODE, DENSITY, INST, BAR, TIMESIG, HTEMPO, POSITION, ETEMPO, PROGRAM, VELOCITY, PITCH, \
    DURATION, DONE = range(17)
_HEADER = (BAR, TIMESIG, HTEMPO)  # bar-level phases (before the first Position of the bar)


class Grammar:
    """Per-vocabulary tables shared by every GrammarState: type ranges and value tables."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self.V = len(vocab)
        self.off = {t: vocab.offset[t] for t in TYPES}
        self.n = {t: vocab.size(t) for t in TYPES}
        self.type_of = vocab.type_of
        self.value_of = vocab.value_of
        self.ts_ticks = vocab.ts_ticks
        self.dur_ticks = vocab.duration_bins
        self.tidx = {t: i for i, t in enumerate(TYPES)}
        # type index -> phase reached by consuming a token of that type inside the body
        self.eos, self.bos, self.bar = vocab.eos, vocab.bos, vocab.bar

    def sl(self, tname: str, lo: int = 0, hi: int | None = None) -> slice:
        """Slice of ids of type `tname` with value index in [lo, hi)."""
        o = self.off[tname]
        return slice(o + lo, o + (self.n[tname] if hi is None else hi))


@dataclass
class Controls:
    """Constraints on top of the grammar. Defaults constrain nothing beyond the grammar itself."""

    n_bars: int | None = None  # exactly this many bars, then EOS (the last bar has at least one note)
    time_sig: int | None = None  # TimeSig value index forced in bar 1
    tempo: int | None = None  # Tempo bin forced in bar 1
    lock_time_sig: bool = False  # no TimeSig change after bar 1
    lock_tempo: bool = False  # no Tempo change after bar 1's header
    max_notes_per_position: int | None = None  # cap chord size (avoids runaway chords)
    pitch_ranges: dict[int, tuple[int, int]] = field(default_factory=dict)  # program -> (lo, hi) inclusive
    fit_durations: bool = True  # with n_bars: no note rings past the end of the last bar
    strict_pitch_order: bool = False  # True: no duplicate (program, pitch) at one onset (real scores double voices)
    key: int | None = None  # soft key bias: tonic pitch class ...
    mode: str | None = None  # ... and mode ('major' | 'minor'; None = major scale)
    key_strength: float = 0.0  # logit penalty for out-of-scale pitches (0 = off)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pitch_ranges"] = {str(k): list(v) for k, v in self.pitch_ranges.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Controls:
        d = dict(d)
        d["pitch_ranges"] = {int(k): tuple(v) for k, v in d.get("pitch_ranges", {}).items()}
        return cls(**d)


SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10, 11)}  # minor: natural + leading tone


def scale_mask(key: int, mode: str | None) -> np.ndarray:
    """(128,) bool: pitches in the key's scale (minor = natural minor plus the raised leading tone)."""
    pcs = {(key + s) % 12 for s in SCALES.get(mode or "major", SCALES["major"])}
    return np.isin(np.arange(128) % 12, sorted(pcs))


class GrammarState:
    """The grammar's state after a prefix of tokens; one per generated sequence.

    Also tracks what the model needs for each token (same definition as `Tokenizer.structure`):
    `bar_index` (Bar tokens so far), `position` (tick of the current Position, 0 on Bar/header tokens) and
    `is_global` (prefix and Bar tokens).
    """

    def __init__(self, grammar: Grammar, controls: Controls | None = None, dedup_state: bool = True) -> None:
        self.g = grammar
        self.c = controls or Controls()
        self.dedup = dedup_state  # state tokens only on change, as the tokenizer writes them
        self.phase = START
        self.insts = np.zeros(DRUMS + 1, bool)  # Inst set from the prefix
        self.last_inst = -1
        self.bar_index = 0
        self.bar_len = 0  # ticks in the current bar
        self.pos = -1  # current Position value (-1 before the first event of a bar)
        self.ts: int | None = None
        self.tempo: int | None = None
        self.program: int | None = None
        self.velocity: int | None = None
        self.event_prog = -1  # program of the previous note in this event (-1: no note yet)
        self.event_pitch = -1  # pitch of the previous note in this event
        self.event_notes = 0
        self.bar_notes = 0
        self.n_notes = 0
        self.is_global = True
        self.bar_start = 0  # absolute tick of the current bar's start (for streamed notes)
        self.closing = False  # set by the engine near its length limit: finish the piece with the fewest tokens
        self._build_control_tables()

    def _build_control_tables(self) -> None:
        c, g = self.c, self.g
        # pitch_ok[p]: pitches allowed for program p; ranges default to the full MIDI range
        self.pitch_ok = np.ones((DRUMS + 1, 128), bool)
        for prog, (lo, hi) in c.pitch_ranges.items():
            self.pitch_ok[prog] = False
            self.pitch_ok[prog, max(lo, 0):min(hi, 127) + 1] = True
        self.bias_pitched: np.ndarray | None = None
        if c.key is not None and c.key_strength > 0:
            self.bias_pitched = np.zeros(g.V, np.float32)
            self.bias_pitched[g.sl("Pitch")] = np.where(scale_mask(c.key, c.mode), 0.0, -c.key_strength)

    forkable = True  # `fork` is a faithful copy; a subclass whose advance mutates containers must say False

    def fork(self) -> GrammarState:
        """An independent copy to try tokens on (speculative drafts). `advance` only rebinds scalars, except the
        Inst set, which is copied; the grammar, controls and control tables are shared read-only."""
        other = copy.copy(self)
        other.insts = self.insts.copy()
        return other

    # ---- transitions -----------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.phase == DONE

    def advance(self, tok: int) -> None:
        """Consume one token (assumed allowed; use `accepts` to check)."""
        g = self.g
        t = int(g.type_of[tok])
        v = int(g.value_of[tok])
        name = TYPES[t]
        if name == "Bar":
            self.phase = BAR
            if self.bar_index > 0:
                self.bar_start += self.bar_len
            self.bar_index += 1
            self.pos = -1
            self.bar_notes = 0
            self.event_notes = 0
            if self.ts is not None:
                self.bar_len = int(g.ts_ticks[self.ts])
        elif name == "TimeSig":
            self.phase = TIMESIG
            self.ts = v
            self.bar_len = int(g.ts_ticks[v])
        elif name == "Tempo":
            self.phase = HTEMPO if self.phase in _HEADER else ETEMPO
            self.tempo = v
        elif name == "Position":
            self.phase = POSITION
            self.pos = v
            self.event_prog = -1
            self.event_pitch = -1
            self.event_notes = 0
        elif name == "Program":
            self.phase = PROGRAM
            self.program = v
        elif name == "Velocity":
            self.phase = VELOCITY
            self.velocity = v
        elif name == "Pitch":
            self.phase = PITCH
            self.event_prog = self.program if self.program is not None else 0
            self.event_pitch = v
        elif name == "Duration":
            self.phase = DURATION
            self.event_notes += 1
            self.bar_notes += 1
            self.n_notes += 1
        elif name == "Inst":
            self.phase = INST
            self.insts[v] = True
            self.last_inst = v
        elif name == "EOS":
            self.phase = DONE
        else:
            self.phase = {"BOS": BOS, "Style": STYLE, "Key": KEY, "Mode": MODE, "Density": DENSITY}.get(name, DONE)
        self.is_global = name == "Bar" or self.bar_index == 0

    @property
    def structure(self) -> tuple[int, int, bool]:
        """(bar_index, position, is_global) of the last consumed token, as `Tokenizer.structure` computes it."""
        return self.bar_index, max(self.pos, 0), self.is_global

    # ---- masks -----------------------------------------------------------------------------------------
    def _pitch_candidates(self, program: int, same_event_prog: bool) -> np.ndarray:
        """(128,) pitches allowed next for `program`: its range, above the previous pitch of the event."""
        ok = self.pitch_ok[program]
        if same_event_prog and self.event_pitch >= 0:
            lo = self.event_pitch + 1 if self.c.strict_pitch_order else self.event_pitch
            ok = ok.copy()
            ok[:lo] = False
        return ok

    def _allow_note_start(self, m: np.ndarray, in_event: bool) -> None:
        """Program / Velocity / Pitch that may begin the next note (at event start or after a Duration)."""
        g, c = self.g, self.c
        if in_event and c.max_notes_per_position is not None and self.event_notes >= c.max_notes_per_position:
            return
        progs = self.insts.copy()
        if self.dedup and self.program is not None:
            progs[self.program] = False
        if in_event and self.event_prog >= 0:
            progs[: self.event_prog + 1] = False  # programs ascend inside an event
        if c.pitch_ranges:
            progs &= self.pitch_ok.any(1)
        m[g.sl("Program")] = progs
        if self.program is None:
            return  # the first note states its Program
        cur_ok = self.program <= DRUMS and bool(self.insts[self.program])
        same = in_event and self.event_prog == self.program
        pitches = self._pitch_candidates(self.program, same) if cur_ok else np.zeros(128, bool)
        if not pitches.any():
            return  # the current program cannot play another note here: only a Program change (or move on)
        vel = np.ones(g.n["Velocity"], bool)
        if self.dedup and self.velocity is not None:
            vel[self.velocity] = False
        m[g.sl("Velocity")] = vel
        if self.velocity is not None:
            m[g.sl("Pitch")] = pitches

    def _allow_bar_end(self, m: np.ndarray) -> None:
        """Position (a later event in this bar), Bar and EOS: everything that may follow a complete item."""
        g = self.g
        if self.pos + 1 < self.bar_len:
            m[g.sl("Position", self.pos + 1, self.bar_len)] = True
        m[g.bar] = True
        m[g.eos] = True

    def grammar_mask(self) -> np.ndarray:
        """(V,) bool: tokens the grammar allows next (controls not applied)."""
        g, ph = self.g, self.phase
        m = np.zeros(g.V, bool)
        if ph == START:
            m[g.bos] = True
        elif ph == BOS:
            m[g.sl("Style")] = True
        elif ph == STYLE:
            m[g.sl("Key")] = True
        elif ph == KEY:
            m[g.sl("Mode")] = True
        elif ph == MODE:
            m[g.sl("Density")] = True
        elif ph == DENSITY:
            m[g.sl("Inst")] = True
        elif ph == INST:
            m[g.sl("Inst", self.last_inst + 1)] = True
            m[g.bar] = True
        elif ph in _HEADER:
            first_bar = self.bar_index == 1
            if ph == BAR:
                if first_bar:
                    m[g.sl("TimeSig")] = True
                    return m
                m[g.sl("TimeSig")] = True
                if self.dedup and self.ts is not None:
                    m[g.off["TimeSig"] + self.ts] = False
            if ph in (BAR, TIMESIG):
                m[g.sl("Tempo")] = True
                if self.dedup and self.tempo is not None and not first_bar:
                    m[g.off["Tempo"] + self.tempo] = False
                if first_bar:
                    return m  # bar 1 states its Tempo
            self._allow_bar_end(m)
        elif ph in (POSITION, ETEMPO):
            if ph == POSITION and self.pos > 0:  # a tempo change on the bar line goes in the bar header
                m[g.sl("Tempo")] = True
                if self.dedup and self.tempo is not None:
                    m[g.off["Tempo"] + self.tempo] = False
            self._allow_note_start(m, in_event=False)
        elif ph == PROGRAM:
            same = self.event_prog == self.program
            pitches = self._pitch_candidates(self.program, same)
            vel = np.ones(g.n["Velocity"], bool)
            if self.dedup and self.velocity is not None:
                vel[self.velocity] = False
            m[g.sl("Velocity")] = vel
            if self.velocity is not None:
                m[g.sl("Pitch")] = pitches
        elif ph == VELOCITY:
            m[g.sl("Pitch")] = self._pitch_candidates(self.program, self.event_prog == self.program)
        elif ph == PITCH:
            m[g.sl("Duration")] = True
        elif ph == DURATION:
            self._allow_note_start(m, in_event=True)
            self._allow_bar_end(m)
        return m

    def allowed(self) -> np.ndarray:
        """(V,) bool: the grammar mask narrowed by the controls."""
        m = self.grammar_mask()
        for control in CONTROL_MASKS:
            control(self, m)
        return m

    def bias(self) -> np.ndarray | None:
        """(V,) float32 additive logit bias (soft controls), or None."""
        if self.bias_pitched is None or self.program == DRUMS or self.phase not in (VELOCITY, PROGRAM, DURATION,
                                                                                        POSITION, ETEMPO):
            return None
        return self.bias_pitched

    def accepts(self, ids: np.ndarray | list[int]) -> int | None:
        """Advance through `ids`; return the index of the first token not allowed, or None if all are."""
        for i, tok in enumerate(np.asarray(ids).tolist()):
            if not self.allowed()[tok]:
                return i
            self.advance(tok)
        return None


# ---- control masks: each narrows `m` in place, given the state ---------------------------------------------
def bar_budget(s: GrammarState, m: np.ndarray) -> None:
    """Exactly `n_bars` bars: no Bar after bar N, no EOS before bar N has a note."""
    n = s.c.n_bars
    if n is None or s.bar_index == 0:
        return
    if s.bar_index >= n:
        m[s.g.bar] = False
    if s.bar_index < n or s.bar_notes == 0:
        m[s.g.eos] = False


def first_bar_header(s: GrammarState, m: np.ndarray) -> None:
    """Force bar 1's TimeSig and Tempo; with lock_*, forbid later changes."""
    c, g = s.c, s.g
    if s.bar_index == 0:
        return
    first = s.bar_index == 1 and s.phase in _HEADER
    if c.time_sig is not None and first and s.phase == BAR:
        m[g.sl("TimeSig")] = False
        m[g.off["TimeSig"] + c.time_sig] = True
    elif c.lock_time_sig and not first:
        m[g.sl("TimeSig")] = False
    if first and s.phase in (BAR, TIMESIG) and m[g.sl("Tempo")].any():
        if c.tempo is not None:
            m[g.sl("Tempo")] = False
            m[g.off["Tempo"] + c.tempo] = True
    elif c.lock_tempo:
        m[g.sl("Tempo")] = False


def fit_durations(s: GrammarState, m: np.ndarray) -> None:
    """With a bar budget, no note may end after the last bar (assuming the current time signature holds)."""
    c, g = s.c, s.g
    if c.n_bars is None or not c.fit_durations or s.phase != PITCH:
        return
    left = (c.n_bars - s.bar_index) * s.bar_len + s.bar_len - s.pos
    m[g.sl("Duration")] &= g.dur_ticks <= max(left, 1)


def wrap_up(s: GrammarState, m: np.ndarray) -> None:
    """When `closing`: wherever the piece may move on, only close bars (Bar) or end it (EOS); no new notes
    unless the bar budget still needs one in the last bar. Keeps the length guard from cutting a piece mid-note."""
    if not s.closing or s.bar_index == 0 or s.phase not in (DURATION, *_HEADER):
        return
    g = s.g
    end = g.eos if m[g.eos] else g.bar if m[g.bar] else None
    if end is not None:
        m[:] = False
        m[end] = True


CONTROL_MASKS = (bar_budget, first_bar_header, fit_durations, wrap_up)
