"""MIDI <-> token ids (REMI-style with state tokens), vectorised end to end with numpy.

Encoding never loops over notes in Python: notes are sorted with `np.lexsort`, each note's token count is computed
from boolean "state changed" flags, and every token is scattered to its final index in one pass. Decoding is the
mirror image: per-token state (bar, position, program, velocity, tempo, time signature) is forward-filled with
`np.maximum.accumulate`. See docs/TOKENS.md for the grammar; benchmarks/tokenizer_speed.py for the speed
against MidiTok.

    tok = Tokenizer()
    ids = tok.encode(tok.load_score("song.mid"))
    score = tok.decode(ids)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import symusic

from acemusic.errors import InputError
from acemusic.tokenizer.vocab import DRUMS, TPQ, T, Vocab, VocabConfig

_MAX_BARS = 20_000  # a bar count past this is a broken file (a stray note hours later), not music
_DEFAULT_QPM = 120.0
_DEFAULT_VELOCITY = 80


@dataclass
class Conditions:
    """The discrete conditions of the prefix. `None` means unknown or dropped (the `*_none` token)."""

    style: str | None = None
    key: int | None = None  # tonic pitch class, 0 = C
    mode: str | None = None  # 'major' | 'minor'
    density: int | None = None  # 0..3, see vocab.DENSITY_EDGES
    instruments: tuple[int, ...] = field(default_factory=tuple)  # GM programs, 128 = drums


@dataclass
class _Notes:
    """Notes of a score on the grid, one array per field, sorted in token order."""

    onset: np.ndarray
    duration: np.ndarray  # duration bin index
    pitch: np.ndarray
    program: np.ndarray
    velocity: np.ndarray  # velocity bin index


def _ffill(mask: np.ndarray, values: np.ndarray, default: int) -> np.ndarray:
    """For each index, the value at the last index <= it where `mask` holds (else `default`)."""
    idx = np.where(mask, np.arange(len(mask)), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, values[np.maximum(idx, 0)], default)
    return out


def _excl_cumsum(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x), dtype=np.int64)
    if len(x) > 1:
        np.cumsum(x[:-1], out=out[1:])
    return out


class Tokenizer:
    """Event tokenizer: `encode(score) -> ids`, `decode(ids) -> score`, plus the helpers tasks need."""

    # Bump when the same score encodes to different ids (the dataset builder's cache is keyed by it).
    version = 1

    def __init__(self, config: VocabConfig | None = None) -> None:
        self.vocab = Vocab(config or VocabConfig())
        v = self.vocab
        self._t = {name: v.offset[name] for name in v.offset}  # type name -> first id
        self._default_ts = v.time_signature_index(4, 4)

    # ---- input ---------------------------------------------------------------------------------------------
    def load_score(self, path: str | Path) -> symusic.Score:
        """Read a MIDI file, with one clear error per failure mode (missing, empty, not MIDI, corrupt, no notes)."""
        path = Path(path)
        if not path.exists():
            raise InputError(path, "no such file")
        if path.is_dir():
            raise InputError(path, "is a directory, not a MIDI file")
        size = path.stat().st_size
        if size == 0:
            raise InputError(path, "empty file (0 bytes)")
        with path.open("rb") as f:
            head = f.read(4)
        if head != b"MThd":
            # RIFF-wrapped MIDI (RMID) is rare; everything else is not MIDI at all.
            raise InputError(path, "not a MIDI file (no MThd header)")
        try:
            score = symusic.Score(str(path))
        except Exception as e:  # symusic raises RuntimeError/ValueError with a C++ message
            raise InputError(path, f"corrupt MIDI ({str(e).splitlines()[0][:120]})") from None
        if score.note_num() == 0:
            raise InputError(path, "MIDI file has no notes")
        return score

    # ---- encoding ------------------------------------------------------------------------------------------
    def _grid(self, score: symusic.Score) -> symusic.Score:
        if score.ticks_per_quarter != TPQ:
            score = score.resample(TPQ, min_dur=1)
        return score

    def _notes(self, score: symusic.Score) -> _Notes:
        """All notes of an on-grid score, sorted in token order: (onset, program, pitch, duration, velocity)."""
        parts = []
        for track in score.tracks:
            if track.note_num() == 0:
                continue
            a = track.notes.numpy()
            prog = DRUMS if track.is_drum else int(track.program)
            parts.append((a["time"], a["duration"], a["pitch"], a["velocity"], np.full(len(a["time"]), prog)))
        if not parts:
            return _Notes(*(np.zeros(0, np.int64) for _ in range(5)))
        onset, dur, pitch, vel, prog = (np.concatenate([p[i] for p in parts]).astype(np.int64) for i in range(5))
        keep = (onset >= 0) & (pitch >= 0) & (pitch < 128)
        onset, dur, pitch, vel, prog = onset[keep], dur[keep], pitch[keep], vel[keep], prog[keep]
        dbin = self.vocab.duration_bin(np.maximum(dur, 1))
        vbin = self.vocab.velocity_bin(np.clip(vel, 0, 127))
        order = np.lexsort((vbin, dbin, pitch, prog, onset))
        return _Notes(onset[order], dbin[order], pitch[order], prog[order], vbin[order])

    def _time_signatures(self, score: symusic.Score) -> tuple[np.ndarray, np.ndarray]:
        """Time-signature changes as (tick, ts value index), first at tick 0, representable ones only.

        A measure longer than MAX_BAR_TICKS is split by the smallest factor of its numerator that makes it fit
        (12/4 -> 6/4); one that cannot be split (13/4, 7/32) falls back to 4/4. Onsets are unaffected.
        """
        ts = score.time_signatures.numpy()
        times, idxs = [], []
        for t, num, den in zip(ts["time"].tolist(), ts["numerator"].tolist(), ts["denominator"].tolist(), strict=True):
            idx = None
            for k in range(1, num + 1):
                if num % k == 0:
                    idx = self.vocab.time_signature_index(num // k, den)
                    if idx is not None:
                        break
            times.append(int(t))
            idxs.append(self._default_ts if idx is None else idx)
        if not times or times[0] > 0:
            times.insert(0, 0)
            idxs.insert(0, self._default_ts if len(idxs) == 0 else idxs[0])
        return np.asarray(times, np.int64), np.asarray(idxs, np.int64)

    def _bars(self, ts_times: np.ndarray, ts_idx: np.ndarray, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Bar start ticks and the ts index of every bar, covering [0, end]. TS changes snap to the next bar line."""
        starts, bar_ts = [], []
        t = 0
        for i in range(len(ts_times)):
            length = int(self.vocab.ts_ticks[ts_idx[i]])
            seg_end = int(ts_times[i + 1]) if i + 1 < len(ts_times) else end + 1
            if seg_end <= t:
                continue  # a change inside the previous bar: it takes effect at the next bar line
            n = -(-(seg_end - t) // length)  # ceil: bars needed to reach seg_end
            if sum(len(s) for s in starts) + n > _MAX_BARS:
                raise InputError("score", f"more than {_MAX_BARS} bars: not supported")
            starts.append(t + length * np.arange(n, dtype=np.int64))
            bar_ts.append(np.full(n, ts_idx[i], np.int64))
            t += n * length
        starts_a, bar_ts_a = np.concatenate(starts), np.concatenate(bar_ts)
        keep = starts_a <= end  # meter changes after the last onset would leave empty trailing bars
        return starts_a[keep], bar_ts_a[keep]

    def encode_body(self, score: symusic.Score) -> np.ndarray:
        """Body tokens (`Bar ...`), without prefix or EOS."""
        return self._encode(self._grid(score))[0]

    def _encode(self, score: symusic.Score) -> tuple[np.ndarray, _Notes, int]:
        """(body tokens, the sorted notes, number of bars) of an on-grid score."""
        notes = self._notes(score)
        n = len(notes.onset)
        if n == 0:
            raise InputError("score", "no notes")
        v, o = self.vocab, self._t
        ts_times, ts_idx = self._time_signatures(score)
        bar_start, bar_ts = self._bars(ts_times, ts_idx, int(notes.onset[-1]))
        n_bars = len(bar_start)
        bar = np.searchsorted(bar_start, notes.onset, side="right") - 1
        pos = notes.onset - bar_start[bar]

        # Note groups: a new Position token where (bar, pos) changes; state tokens where program/velocity change.
        new_pos = np.ones(n, bool)
        new_pos[1:] = notes.onset[1:] != notes.onset[:-1]
        new_prog = np.ones(n, bool)
        new_prog[1:] = notes.program[1:] != notes.program[:-1]
        new_vel = np.ones(n, bool)
        new_vel[1:] = notes.velocity[1:] != notes.velocity[:-1]

        # Tempo: binned, deduplicated; a change snaps to the next note onset (or bar line) at or after it.
        tp = score.tempos.numpy()
        t_times = tp["time"].astype(np.int64)
        t_bins = v.tempo_bin(6e7 / np.maximum(tp["mspq"], 1)) if len(t_times) else np.zeros(0, np.int64)
        if len(t_times) == 0 or t_times[0] > 0:
            first = t_bins[0] if len(t_bins) else v.tempo_bin(_DEFAULT_QPM)
            t_times = np.concatenate([[0], t_times])
            t_bins = np.concatenate([[first], t_bins])
        header_tempo = np.full(n_bars, -1, np.int64)
        note_tempo = np.full(n, -1, np.int64)
        group_idx = np.flatnonzero(new_pos)  # first note of each onset group
        group_onset = notes.onset[group_idx]
        for t, b in zip(t_times.tolist(), t_bins.tolist(), strict=True):  # few events: a Python loop is fine
            gb = int(np.searchsorted(bar_start, t, side="right") - 1)
            g = int(np.searchsorted(group_onset, t, side="left"))
            if t == bar_start[gb] or g == len(group_idx) or bar[group_idx[g]] != gb:
                # on a bar line, or no note left in this bar: the header of the bar (or the next one)
                target = gb if t == bar_start[gb] else gb + 1
                if target < n_bars:
                    header_tempo[target] = b
            else:
                note_tempo[group_idx[g]] = b
        # Only keep tempo tokens that change the running tempo (walk events in time order).
        ev_kind = np.concatenate([np.zeros(n_bars, np.int64), np.ones(n, np.int64)])
        ev_time = np.concatenate([bar_start, notes.onset])
        ev_val = np.concatenate([header_tempo, note_tempo])
        ev_order = np.lexsort((ev_kind, ev_time))
        ev_has = ev_val[ev_order] >= 0
        vals = ev_val[ev_order][ev_has]
        keep = np.ones(len(vals), bool)
        keep[1:] = vals[1:] != vals[:-1]
        kept = np.zeros(len(ev_order), bool)
        kept[np.flatnonzero(ev_has)[keep]] = True
        kept_unsorted = np.zeros(len(ev_order), bool)
        kept_unsorted[ev_order] = kept
        header_tempo = np.where(kept_unsorted[:n_bars], header_tempo, -1)
        note_tempo = np.where(kept_unsorted[n_bars:], note_tempo, -1)

        has_ts = np.ones(n_bars, bool)
        has_ts[1:] = bar_ts[1:] != bar_ts[:-1]
        has_ht = header_tempo >= 0
        has_nt = (note_tempo >= 0) & new_pos

        # Token counts, then the index of every token in the output.
        header_len = 1 + has_ts + has_ht
        note_len = new_pos.astype(np.int64) + has_nt + new_prog + new_vel + 2
        bar_note_len = np.bincount(bar, weights=note_len, minlength=n_bars).astype(np.int64)
        bar_at = _excl_cumsum(header_len + bar_note_len)
        note_excl = _excl_cumsum(note_len)
        at = bar_at[bar] + header_len[bar] + note_excl - _excl_cumsum(bar_note_len)[bar]

        out = np.empty(int(bar_at[-1] + header_len[-1] + bar_note_len[-1]), np.int64)
        out[bar_at] = o["Bar"]
        out[bar_at[has_ts] + 1] = o["TimeSig"] + bar_ts[has_ts]
        out[bar_at[has_ht] + 1 + has_ts[has_ht]] = o["Tempo"] + header_tempo[has_ht]
        k = at.copy()
        out[k[new_pos]] = o["Position"] + pos[new_pos]
        k += new_pos
        out[k[has_nt]] = o["Tempo"] + note_tempo[has_nt]
        k += has_nt
        out[k[new_prog]] = o["Program"] + notes.program[new_prog]
        k += new_prog
        out[k[new_vel]] = o["Velocity"] + notes.velocity[new_vel]
        k += new_vel
        out[k] = o["Pitch"] + notes.pitch
        out[k + 1] = o["Duration"] + notes.duration
        return out, notes, n_bars

    def cond_prefix(self, cond: Conditions) -> np.ndarray:
        """`BOS Style Key Mode Density Inst+`: fixed slots, so conditional and unconditional prefixes align."""
        v = self.vocab
        insts = sorted({int(p) for p in cond.instruments}) or [0]
        if not all(0 <= p <= DRUMS for p in insts):
            raise InputError("instruments", f"programs must be 0..{DRUMS}, got {insts}")
        if cond.key is not None and not 0 <= cond.key < 12:
            raise InputError("key", f"tonic pitch class must be 0..11, got {cond.key}")
        mode = v.values["Mode"].index(cond.mode) if cond.mode in ("major", "minor") else 0
        density = 0 if cond.density is None else 1 + int(cond.density)
        ids = [
            v.bos,
            v.id("Style", v.style_index(cond.style)),
            v.id("Key", 0 if cond.key is None else 1 + cond.key),
            v.id("Mode", mode),
            v.id("Density", density),
            *(v.id("Inst", p) for p in insts),
        ]
        return np.asarray(ids, np.int64)

    def _conditions(self, notes: _Notes, n_bars: int) -> Conditions:
        return Conditions(
            instruments=tuple(np.unique(notes.program).tolist()),
            density=self.vocab.density_index(len(notes.onset) / max(n_bars, 1)) - 1,
        )

    def conditions_of(self, score: symusic.Score) -> Conditions:
        """Conditions that can be read off a score without analysis: its instruments and density."""
        _, notes, n_bars = self._encode(self._grid(score))
        return self._conditions(notes, n_bars)

    def encode(self, score: symusic.Score, cond: Conditions | None = None) -> np.ndarray:
        """Full sequence: prefix + body + EOS. Without `cond`, instruments and density come from the score."""
        body, notes, n_bars = self._encode(self._grid(score))
        cond = cond if cond is not None else self._conditions(notes, n_bars)
        return np.concatenate([self.cond_prefix(cond), body, [self.vocab.eos]])

    # ---- decoding ------------------------------------------------------------------------------------------
    def decode(self, ids: np.ndarray | list[int]) -> symusic.Score:
        """Token ids -> Score (tpq 12). Prefix and specials are skipped; decoding stops at the first EOS.

        Tolerant: a Pitch without a following Duration is dropped; anything else out of grammar is read as state.
        """
        v = self.vocab
        ids = np.asarray(ids, np.int64)
        eos = np.flatnonzero(ids == v.eos)
        if len(eos):
            ids = ids[: eos[0]]
        bars = np.flatnonzero(ids == v.bar)
        score = symusic.Score(TPQ)
        if len(bars) == 0:
            return score
        ids = ids[bars[0]:]
        ty = v.type_of[ids]
        val = v.value_of[ids]
        is_bar = ids == v.bar
        bar_of = np.cumsum(is_bar) - 1
        n_bars = int(bar_of[-1]) + 1

        ts_state = _ffill(ty == T["TimeSig"], val, self._default_ts)
        last_of_bar = np.concatenate([np.flatnonzero(is_bar)[1:] - 1, [len(ids) - 1]])
        bar_ts = ts_state[last_of_bar]
        bar_start = _excl_cumsum(v.ts_ticks[bar_ts])

        is_pos = ty == T["Position"]
        pos = _ffill(is_pos | is_bar, np.where(is_pos, val, 0), 0)
        time = bar_start[bar_of] + pos
        program = _ffill(ty == T["Program"], val, 0)
        velocity = _ffill(ty == T["Velocity"], val, int(v.velocity_bin(_DEFAULT_VELOCITY)))

        is_pitch = ty == T["Pitch"]
        nxt_dur = np.zeros(len(ids), bool)
        nxt_dur[:-1] = ty[1:] == T["Duration"]
        note_at = np.flatnonzero(is_pitch & nxt_dur)
        n_time = time[note_at]
        n_pitch = val[note_at]
        n_dur = v.duration_bins[val[note_at + 1]]
        n_prog = program[note_at]
        n_vel = v.velocity_value(velocity[note_at])
        for p in np.unique(n_prog).tolist():
            sel = n_prog == p
            track = symusic.Track("Drums" if p == DRUMS else f"Program {p}", 0 if p == DRUMS else p, p == DRUMS)
            track.notes = symusic.core.NoteTickList.from_numpy(
                n_time[sel].astype(np.int32), n_dur[sel].astype(np.int32),
                n_pitch[sel].astype(np.int8), n_vel[sel].astype(np.int8),
            )
            score.tracks.append(track)

        ts_change = np.ones(n_bars, bool)
        ts_change[1:] = bar_ts[1:] != bar_ts[:-1]
        sigs = np.asarray(v.time_signatures, np.int64)[bar_ts[ts_change]]
        score.time_signatures = symusic.core.TimeSignatureTickList.from_numpy(
            bar_start[ts_change].astype(np.int32), sigs[:, 0].astype(np.uint8), sigs[:, 1].astype(np.uint8)
        )
        is_tempo = ty == T["Tempo"]
        t_time, t_bin = time[is_tempo], val[is_tempo]
        if len(t_time) == 0 or t_time[0] > 0:
            t_time = np.concatenate([[0], t_time])
            t_bin = np.concatenate([[t_bin[0] if len(t_bin) else int(v.tempo_bin(_DEFAULT_QPM))], t_bin])
        mspq = np.round(6e7 / v.tempo_bins[t_bin]).astype(np.int32)
        score.tempos = symusic.core.TempoTickList.from_numpy(t_time.astype(np.int32), mspq)
        return score

    # ---- structure and slicing -----------------------------------------------------------------------------
    def structure(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-token (bar index, position in bar, is_global) for the model's hierarchy embeddings and attention.

        bar index counts Bar tokens so far (0 in the prefix); position is the tick of the current Position (0 on
        Bar and header tokens); global tokens are the prefix (before the first Bar) and every Bar.
        """
        v = self.vocab
        ids = np.asarray(ids, np.int64)
        ty = v.type_of[ids]
        is_bar = ids == v.bar
        is_pos = ty == T["Position"]
        bar_index = np.cumsum(is_bar)
        pos = _ffill(is_pos | is_bar, np.where(is_pos, v.value_of[ids], 0), 0)
        is_global = is_bar | (bar_index == 0)
        return bar_index.astype(np.int64), pos.astype(np.int64), is_global

    def bar_starts(self, body: np.ndarray) -> np.ndarray:
        """Indices of the Bar tokens."""
        return np.flatnonzero(np.asarray(body) == self.vocab.bar)

    def bar_start_ticks(self, body: np.ndarray) -> np.ndarray:
        """Onset tick of every bar of a body (the decoder's time axis)."""
        v = self.vocab
        body = np.asarray(body, np.int64)
        ty, val = v.type_of[body], v.value_of[body]
        is_bar = body == v.bar
        ts_state = _ffill(ty == T["TimeSig"], val, self._default_ts)
        bars = np.flatnonzero(is_bar)
        last_of_bar = np.concatenate([bars[1:] - 1, [len(body) - 1]]) if len(bars) else bars
        return _excl_cumsum(v.ts_ticks[ts_state[last_of_bar]])

    def slice_bars(self, body: np.ndarray, a: int, b: int | None = None) -> np.ndarray:
        """Bars [a, b) of a body, made self-contained: the TimeSig, Tempo, Program and Velocity state they
        inherit from earlier bars is injected, so the slice decodes (and trains) on its own."""
        v, o = self.vocab, self._t
        body = np.asarray(body, np.int64)
        starts = self.bar_starts(body)
        b = len(starts) if b is None else b
        if not 0 <= a < b <= len(starts):
            raise InputError("bars", f"bar range [{a}, {b}) outside the piece's {len(starts)} bars")
        lo = starts[a]
        hi = starts[b] if b < len(starts) else len(body)
        seg = body[lo:hi]
        if a == 0:
            return seg.copy()
        before = body[:lo]
        ty_b = v.type_of[before]
        val_b = v.value_of[before]

        def last(tname: str, default: int) -> int:
            hits = np.flatnonzero(ty_b == T[tname])
            return int(val_b[hits[-1]]) if len(hits) else default

        ty = v.type_of[seg]
        header_end = 1
        while header_end < len(seg) and ty[header_end] in (T["TimeSig"], T["Tempo"]):
            header_end += 1
        header = list(seg[1:header_end])
        htypes = {int(v.type_of[t]) for t in header}
        inject = [o["Bar"]]
        inject.append(int(seg[1]) if T["TimeSig"] in htypes else o["TimeSig"] + last("TimeSig", self._default_ts))
        tempo_tok = [t for t in header if v.type_of[t] == T["Tempo"]]
        inject.append(int(tempo_tok[0]) if tempo_tok else o["Tempo"] + last("Tempo", int(v.tempo_bin(_DEFAULT_QPM))))
        rest = seg[header_end:]
        # First note group of the slice: make sure it states Program and Velocity.
        rty = v.type_of[rest]
        first = np.flatnonzero(np.isin(rty, (T["Program"], T["Velocity"], T["Pitch"])))
        if len(first):
            i = int(first[0])
            has_prog = rty[i] == T["Program"]
            j = i + 1 if has_prog else i
            has_vel = j < len(rest) and rty[j] == T["Velocity"]
            add = [] if has_prog else [o["Program"] + last("Program", 0)]
            if not has_vel:
                add.append(o["Velocity"] + last("Velocity", int(v.velocity_bin(_DEFAULT_VELOCITY))))
            rest = np.concatenate([rest[:j], add, rest[j:]]) if has_prog else np.concatenate([rest[:i], add, rest[i:]])
        return np.concatenate([inject, rest]).astype(np.int64)

    # ---- analysis helpers ----------------------------------------------------------------------------------
    def note_table(self, score: symusic.Score) -> np.ndarray:
        """(n, 5) rows (onset, pitch, duration bin, program, velocity bin), sorted: what a round trip keeps."""
        nt = self._notes(self._grid(score))
        table = np.stack([nt.onset, nt.pitch, nt.duration, nt.program, nt.velocity], axis=1)
        return table[np.lexsort(table.T[::-1])]

    def notes_per_bar(self, score: symusic.Score) -> float:
        score = self._grid(score)
        notes = self._notes(score)
        if len(notes.onset) == 0:
            return 0.0
        ts_times, ts_idx = self._time_signatures(score)
        bar_start, _ = self._bars(ts_times, ts_idx, int(notes.onset[-1]))
        return len(notes.onset) / len(bar_start)

