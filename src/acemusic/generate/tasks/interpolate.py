"""Interpolate two pieces: a bridge that leaves A and arrives at B, and a morph sequence A -> B in N steps.

Bridge (`BridgeTask`): A, then `bars` empty bars in A's closing meter and tempo, then B (its own meter and tempo),
joined into one piece (`join`); the empty bars are filled by fill-in-the-middle (`InfillTask`) with A's last
bars on the left and B's first bars on the right, so the passage is generated from both. The output is A + bridge
+ B, or the bridge alone.

Morph (`morph`), after MusicVAE's interpolations but without a latent space: step 0 is A's first `bars` bars,
step N-1 is B's, and step k in between is a fresh `bars`-bar passage sampled from the log-linear mixture

    log p_k(x_t | x_<t) = (1 - w) log p(x_t | x_<t, A) + w log p(x_t | x_<t, B) + const,   w = k / (N - 1)

where p(. | X) is the model asked to regenerate X's opening bars with the rest of X as the right-hand context
(FIM: `prefix FillStart X[bars:] Sep`; a piece with no bars beyond that is continued instead). One token is
sampled for both contexts at each step, under one grammar state; the meter is A's for w < 0.5, else B's, and the
tempo moves geometrically from A's to B's. `morph_stats` measures the pitch-class and rhythm statistics of every
step against A and B.

Tests: `.venv/bin/python -m pytest tests/generate/test_interpolate.py -q`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import symusic

from acemusic.errors import InputError
from acemusic.generate.constraints import Controls
from acemusic.generate.engine import Request
from acemusic.generate.prompt import check_bars
from acemusic.generate.sampling import SamplingConfig
from acemusic.generate.tasks.base import TaskContext
from acemusic.generate.tasks.infill import TRAIN_WINDOW, FillState, InfillTask, fim_window
from acemusic.generate.tasks.io import Piece, load_piece, note_table, pitch_ranges
from acemusic.generate.tasks.mixture import mixture_decode
from acemusic.tokenizer import Conditions, Tokenizer
from acemusic.tokenizer.vocab import TPQ

MAX_STEPS = 16
TOKENS_PER_BAR_GUARD = 256


def _grid(score: symusic.Score) -> symusic.Score:
    return score.resample(TPQ, min_dur=1) if score.ticks_per_quarter != TPQ else score.copy()


def join(tok: Tokenizer, a: Piece, b: Piece, gap_bars: int) -> tuple[symusic.Score, int]:
    """A, `gap_bars` empty bars in A's last meter, then B, as one 12-TPQ score; returns (score, first gap bar)."""
    left, right = _grid(a.score), _grid(b.score)
    ts_a, _ = a.header(tok, a.n_bars - 1)
    start_gap = a.end_tick(tok)
    start_b = start_gap + gap_bars * int(tok.vocab.ts_ticks[ts_a])
    out = left
    for tr in right.tracks:
        if tr.note_num() == 0:
            continue
        moved = tr.shift_time(start_b)
        drum, prog = tr.is_drum, int(tr.program)
        dst = next((t for t in out.tracks if t.is_drum == drum and (drum or t.program == prog)), None)
        if dst is None:
            out.tracks.append(moved)
        else:
            dst.notes.extend(moved.notes)
            dst.notes.sort()
    ts = [symusic.TimeSignature(e.time, e.numerator, e.denominator) for e in left.time_signatures
          if e.time < start_gap]
    ts_b = [symusic.TimeSignature(e.time + start_b, e.numerator, e.denominator) for e in right.time_signatures]
    if not ts_b or ts_b[0].time > start_b:  # B without a time signature is in 4/4, as the tokenizer reads it
        ts_b.insert(0, symusic.TimeSignature(start_b, 4, 4))
    tempos = [symusic.Tempo(e.time, e.qpm) for e in left.tempos if e.time < start_gap]
    tempos_b = [symusic.Tempo(e.time + start_b, e.qpm) for e in right.tempos]
    if not tempos_b or tempos_b[0].time > start_b:
        tempos_b.insert(0, symusic.Tempo(start_b, 120.0))
    out.time_signatures = symusic.core.TimeSignatureTickList(ts + ts_b)
    out.tempos = symusic.core.TempoTickList(tempos + tempos_b)
    return out, a.n_bars


@dataclass
class BridgeTask(InfillTask):
    """An InfillTask over the empty bars of `join(A, bars, B)`; `bridge_only` crops the output to the bridge."""

    bridge_only: bool = False
    name: str = "interpolate"

    def finish(self, ctx: TaskContext, prompt: np.ndarray, generated: np.ndarray):
        score = super().finish(ctx, prompt, generated)
        return crop(score, *self.span_ticks(ctx)) if self.bridge_only else score


def bridge_task(tok: Tokenizer, a: Piece, b: Piece, bars: int, bridge_only: bool = False, **kw) -> BridgeTask:
    check_bars(bars)
    score, first = join(tok, a, b, bars)
    piece = load_piece(tok, score, name=f"{a.name} -> {b.name}")
    return BridgeTask(piece, first, first + bars, bridge_only=bridge_only, **kw)


def crop(score: symusic.Score, lo: int, hi: int) -> symusic.Score:
    """Notes with onsets in [lo, hi), moved to start at 0, with the meter and tempo in effect (same resolution)."""
    out = score.copy()
    for tr in out.tracks:
        a = tr.notes.numpy()
        keep = (a["time"] >= lo) & (a["time"] < hi)
        tr.notes = symusic.core.NoteTickList.from_numpy((a["time"][keep] - lo).astype(np.int32),
                                                        *(a[k][keep] for k in ("duration", "pitch", "velocity")))
    out.tracks = out.tracks.filter(lambda t: t.note_num() > 0)

    def at(events, make):
        before = [e for e in events if e.time <= lo]
        head = [make(before[-1])] if before else []
        return head + [e for e in events if lo < e.time < hi]

    ts = at(list(score.time_signatures), lambda e: symusic.TimeSignature(lo, e.numerator, e.denominator))
    tempos = at(list(score.tempos), lambda e: symusic.Tempo(lo, e.qpm))
    out.time_signatures = symusic.core.TimeSignatureTickList(
        [symusic.TimeSignature(e.time - lo, e.numerator, e.denominator) for e in ts])
    out.tempos = symusic.core.TempoTickList([symusic.Tempo(e.time - lo, e.qpm) for e in tempos])
    return out


# ---- morph ----------------------------------------------------------------------------------------------------
def opening_request(tok: Tokenizer, piece: Piece, bars: int, insts: tuple[int, ...]) -> tuple[Request, int]:
    """The prompt asking the model to (re)write `piece`'s first `bars` bars with its later bars as right context,
    or, when it has no bars beyond those, to continue all of it. Returns (request, bars before the middle)."""
    from acemusic.train.batching import fim_sequence

    c = piece.cond
    prefix = tok.cond_prefix(Conditions(key=c.key, mode=c.mode, density=c.density, instruments=insts))
    budget = max(64, TRAIN_WINDOW - len(prefix) - 3 - bars * 48)
    if piece.n_bars > bars:
        _, hi = fim_window(tok, piece.body, 0, bars, budget)
        window = tok.slice_bars(piece.body, 0, hi)
        a, b = 0, bars
    else:
        lo, _ = fim_window(tok, piece.body, piece.n_bars, piece.n_bars, budget)
        window = tok.slice_bars(piece.body, lo, piece.n_bars)
        a = b = piece.n_bars - lo
    ids, bar_idx, pos, glob, _ = fim_sequence(tok, prefix, window, a, b, with_middle=False)
    return Request(ids, structure=(bar_idx, pos, glob)), a


def _tempo_bin(tok: Tokenizer, bin_a: int, bin_b: int, w: float) -> int:
    bins = tok.vocab.tempo_bins
    bpm = float(np.exp((1 - w) * np.log(bins[bin_a]) + w * np.log(bins[bin_b])))
    return int(tok.vocab.tempo_bin(bpm))


def morph(ctx: TaskContext, a: Piece, b: Piece, bars: int = 4, steps: int = 5,
          sampling: SamplingConfig | None = None, seed: int = 0, on_step=None) -> list[symusic.Score]:
    """N = `steps` scores of `bars` bars (12 TPQ): A's opening, N-2 mixtures with weight k/(N-1) on B, B's opening.
    Step k is sampled with seed + k."""
    check_bars(bars)
    if not 2 <= steps <= MAX_STEPS:
        raise InputError("--steps", f"must be 2..{MAX_STEPS}, got {steps}")
    tok = ctx.tok
    sampling = sampling or SamplingConfig(top_p=0.95)
    insts = tuple(sorted(set(a.programs) | set(b.programs)))
    req_a, off_a = opening_request(tok, a, bars, insts)
    req_b, off_b = opening_request(tok, b, bars, insts)
    head_a, head_b = a.header(tok, 0), b.header(tok, 0)
    plain = tok.cond_prefix(Conditions(instruments=insts))

    def opening(p: Piece) -> symusic.Score:
        k = min(bars, p.n_bars)
        return tok.decode(np.concatenate([plain, tok.slice_bars(p.body, 0, k)]))

    # a piece shared by both for the pitch ranges: A's ranges widened by B's
    ranges = pitch_ranges(a, insts)
    for prog, (lo, hi) in pitch_ranges(b, insts).items():
        lo0, hi0 = ranges.get(prog, (lo, hi))
        ranges[prog] = (min(lo, lo0), max(hi, hi0)) if hi >= lo and hi0 >= lo0 else (lo, hi)
    out = [opening(a)]
    for k in range(1, steps - 1):
        w = k / (steps - 1)
        ts = head_a[0] if w < 0.5 else head_b[0]
        controls = Controls(n_bars=bars, time_sig=ts, tempo=_tempo_bin(tok, head_a[1], head_b[1], w),
                            lock_time_sig=True, lock_tempo=True, strict_pitch_order=True,
                            max_notes_per_position=min(8, max(a.max_chord, b.max_chord)),
                            pitch_ranges=ranges)
        state = FillState(ctx.engine.grammar, controls, 0, tok.vocab.id("FillEnd"))
        for t in plain.tolist():
            state.advance(t)
        gen = mixture_decode(ctx, [req_a, req_b], [off_a, off_b], [1 - w, w], state, sampling, seed + k,
                             bars * TOKENS_PER_BAR_GUARD + 64, on_step)
        fe = np.flatnonzero(gen == tok.vocab.id("FillEnd"))
        middle = gen[: fe[0]] if len(fe) else gen
        out.append(tok.decode(np.concatenate([plain, middle])))
    out.append(opening(b))
    return out


def concat(scores: list[symusic.Score], gap_bars: int = 1) -> symusic.Score:
    """Scores (12 TPQ) one after another, each starting on a bar line after `gap_bars` rest bars."""
    out = symusic.Score(TPQ)
    t = 0
    tracks: dict[tuple[int, bool], symusic.Track] = {}
    for sc in scores:
        ts = sc.time_signatures[0] if len(sc.time_signatures) else symusic.TimeSignature(0, 4, 4)
        bar = ts.numerator * 4 * TPQ // ts.denominator
        for e in sc.time_signatures:
            out.time_signatures.append(symusic.TimeSignature(e.time + t, e.numerator, e.denominator))
        if not len(sc.time_signatures):
            out.time_signatures.append(symusic.TimeSignature(t, 4, 4))
        for e in sc.tempos:
            out.tempos.append(symusic.Tempo(e.time + t, e.qpm))
        for tr in sc.tracks:
            key = (int(tr.program), bool(tr.is_drum))
            if key not in tracks:
                tracks[key] = symusic.Track(tr.name, key[0], key[1])
            tracks[key].notes.extend(tr.shift_time(t).notes)
        end = max(sc.end(), 1)
        t += (-(-end // bar) + gap_bars) * bar
    for tr in tracks.values():
        tr.notes.sort()
        out.tracks.append(tr)
    return out


# ---- measuring a morph -----------------------------------------------------------------------------------------
def _pc_hist(t: np.ndarray) -> np.ndarray:
    t = t[t[:, 4] != 128]
    return np.bincount(t[:, 2] % 12, weights=t[:, 1], minlength=12).astype(np.float64)


def _rhythm_hist(score: symusic.Score, t: np.ndarray) -> np.ndarray:
    """Onset positions inside the bar, in 16th-note-triplet-safe bins of 1 tick, normalised to a 4/4 bar's 48."""
    ts = score.time_signatures[0] if len(score.time_signatures) else symusic.TimeSignature(0, 4, 4)
    bar = ts.numerator * 4 * TPQ // ts.denominator
    pos = (t[:, 0] % bar) * 48 // bar
    return np.bincount(pos, minlength=48).astype(np.float64)


def morph_stats(scores: list[symusic.Score]) -> list[dict]:
    """Per step: pitch-class and rhythm histogram overlap with the first (A) and last (B) step, and `progress` =
    how far the step has moved from A towards B: dA / (dA + dB) with d = 1 - overlap, averaged over both features
    (0 = A's statistics, 1 = B's)."""
    from acemusic.eval.metrics import histogram_overlap

    tabs = [note_table(s) for s in scores]
    feats = [(_pc_hist(t), _rhythm_hist(s, t)) for s, t in zip(scores, tabs, strict=True)]
    rows = []
    for f in feats:
        r = {}
        prog = []
        for i, name in enumerate(("pitch_class", "rhythm")):
            oa = histogram_overlap(f[i], feats[0][i])
            ob = histogram_overlap(f[i], feats[-1][i])
            r[f"{name}_overlap_a"], r[f"{name}_overlap_b"] = oa, ob
            da, db = 1 - oa, 1 - ob
            prog.append(da / (da + db) if da + db > 0 else 0.5)
        r["progress"] = float(np.mean(prog))
        r["notes"] = len(tabs[len(rows)])
        rows.append(r)
    return rows


__all__ = ["BridgeTask", "bridge_task", "concat", "crop", "join", "mixture_decode", "morph", "morph_stats"]
