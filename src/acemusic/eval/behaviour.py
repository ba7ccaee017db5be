"""Behavioural tests: does the music respond to its context the way a musician would? Reported as pass rates.

Four tests, each on `n` items, for acemusic and the token baselines (same prompts, same grammar and controls, same
seeds), with the real continuation of the piece ("real") and a mismatched real continuation ("chance": another
test piece's bars) as anchors where they make sense:

| test | item | passes when |
| --- | --- | --- |
| `call_response_rhythm` | bars 1-2 of a test piece (the call) -> 2 new bars | a response bar has a call bar's onsets |
| `call_response_motif` | same responses | a 4-note melodic shape of the call (3 intervals) recurs in the response |
| `continuation_key` | bars 1-4 -> 4 new bars (no key bias) | music21's key of the new bars = key of the given bars |
| `continuation_meter` | same continuations | every time signature of the new bars = the given bars' last one |
| `mood_minor` / `mood_major` | "a sad/happy melody for <instrument>" | music21 reads the asked mode |
| `tempo_fast_vs_slow` | "a slow/fast piece for <instrument>", same seed | the fast one has more onsets per second |

Continuations use `generate.tasks.continuation.ContinueTask` (the piece's prefix from its metadata; meter and tempo
are locked by that task, so `continuation_meter` holds by construction: it checks the plumbing, not the model) with
`key_strength=0`, so keeping the key is the system's own doing. Mood prompts name no key, so no key bias applies
either; the mode tag and the text are all the system gets. Tempo words are enforced by the tempo control, so
`tempo_fast_vs_slow` mostly checks that the system does not undo them with slower rhythms.

Generated responses are cached as MIDI under `<out>/<test>/<system>/<i>.mid` (only the new bars).
Tests: `.venv/bin/python -m pytest tests/eval/test_behaviour.py -q`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import symusic

from acemusic.eval.metrics import ScoreLike, bar_spans, load, melody, notes_of
from acemusic.eval.suite import SAMPLED, Resources, first_bars

BEHAVIOUR_SYSTEMS = ("acemusic", *SAMPLED)
MOOD_INSTRUMENTS = ("piano", "violin", "flute", "choir", "acoustic guitar", "clarinet", "strings", "organ",
                    "cello", "oboe")


# ---- measures (pure, on scores) ----------------------------------------------------------------------------------


def onset_patterns(score: ScoreLike) -> list[frozenset[int]]:
    """Per bar: the set of onset ticks (relative to the bar start) of every note (empty bars give empty sets)."""
    s = load(score)
    notes = notes_of(s)
    starts, _ = bar_spans(s, end=int(s.end()) - 1 if s.end() > 0 else 0)
    bar = np.searchsorted(starts, notes.onset, side="right") - 1
    return [frozenset((notes.onset[bar == b] - starts[b]).tolist()) for b in range(len(starts))]


def reuses_rhythm(call: ScoreLike, response: ScoreLike) -> bool:
    """Some non-empty bar of the response has exactly the onset pattern of some bar of the call."""
    calls = {p for p in onset_patterns(call) if p}
    return any(p in calls for p in onset_patterns(response) if p)


def interval_shapes(score: ScoreLike, n: int = 4) -> set[tuple[int, ...]]:
    """The (n-1)-interval shapes of the top-voice melody (transposition-invariant n-note motifs)."""
    iv = np.diff(melody(score).pitch).tolist()
    return {tuple(iv[i:i + n - 1]) for i in range(len(iv) - n + 2)}


def reuses_motif(call: ScoreLike, response: ScoreLike, n: int = 4) -> bool:
    """A 4-note melodic shape (3 intervals, any transposition) of the call occurs in the response. Shapes that are
    all repeated notes are ignored (a repeated pitch is not a motif)."""
    shapes = {s for s in interval_shapes(call, n) if any(s)}
    return bool(shapes & interval_shapes(response, n))


def key_of(score: ScoreLike) -> tuple[int | None, str | None]:
    from acemusic.eval.adherence import analyze_key

    return analyze_key(load(score))


def same_key(a: ScoreLike, b: ScoreLike) -> bool:
    ka = key_of(a)
    return ka[0] is not None and ka == key_of(b)


def meters(score: ScoreLike) -> list[tuple[int, int]]:
    ts = load(score).time_signatures
    return [(t.numerator, t.denominator) for t in ts]


def onsets_per_second(score: ScoreLike) -> float:
    """Distinct note onsets per second of music (from the tempo map)."""
    s = load(score)
    on = np.unique(notes_of(s).onset)
    if not len(on):
        return 0.0
    secs = s.to("second")
    return len(on) / max(float(secs.end()), 1e-9)


# ---- generation ------------------------------------------------------------------------------------------------


class _Ctx:
    """A TaskContext for the baselines: the tokenizer and grammar, no model, no text."""

    def __init__(self, tok, grammar) -> None:
        self.tok = tok
        self.engine = type("E", (), {"grammar": grammar, "tok": tok})()

    def embed(self, text):
        return None


def _response_score(notes12: np.ndarray, offset: int, ts: tuple[int, int], qpm: float) -> symusic.Score:
    """A score of the new notes only, shifted to start at 0 (12 TPQ)."""
    from acemusic.tokenizer.vocab import DRUMS

    s = symusic.Score(12)
    s.time_signatures.append(symusic.TimeSignature(0, ts[0], ts[1]))
    s.tempos.append(symusic.Tempo(0, qpm))
    notes12 = np.asarray(notes12, np.int64).reshape(-1, 5)
    for prog in np.unique(notes12[:, 4]).tolist():
        sel = notes12[notes12[:, 4] == prog]
        tr = symusic.Track(f"p{prog}", 0 if prog == DRUMS else int(prog), prog == DRUMS)
        for on, dur, pitch, vel, _ in sel.tolist():
            tr.notes.append(symusic.Note(int(on - offset), int(max(dur, 1)), int(pitch), int(vel)))
        s.tracks.append(tr)
    return s


def continue_piece(res: Resources, system: str, given: symusic.Score, bars: int, seed: int, spec=None):
    """The new bars only (a Score starting at 0) after `given`, by `system`, via ContinueTask (key_strength 0)."""
    from acemusic.generate.tasks.continuation import ContinueTask
    from acemusic.generate.tasks.io import load_piece

    tok = res.get("tok")
    piece = load_piece(tok, given)
    task = ContinueTask(piece, bars=bars, spec=spec, key_strength=0.0)
    if system == "acemusic":
        from acemusic.generate.sampling import SamplingConfig

        bundle = res.get("acemusic")
        ctx = bundle.ctx
        req = task.build(ctx)
        gen = bundle.engine.generate([req], SamplingConfig(top_p=res.top_p, cfg=res.cfg), seed=seed,
                                     max_new_tokens=task.max_new_tokens())[0]
    else:
        from acemusic.eval.baselines.sampler import sample_constrained

        ctx = _Ctx(tok, res.get("grammar"))
        req = task.build(ctx)
        gen = sample_constrained(res.session(system), req.prompt, req.controls, res.get("grammar"), seed=seed,
                                 max_new_tokens=task.max_new_tokens(), state=req.state)
    notes = task.new_notes(ctx, req.prompt, gen)
    ts = given.time_signatures[-1] if len(given.time_signatures) else None
    qpm = float(given.tempos[-1].qpm) if len(given.tempos) else 120.0
    return _response_score(notes, piece.end_tick(tok), (ts.numerator, ts.denominator) if ts else (4, 4), qpm)


def compose_prompt(res: Resources, system: str, text: str, bars: int, seed: int):
    from acemusic.eval.suite import ModelFreeContext
    from acemusic.generate.prompt import parse_prompt
    from acemusic.generate.tasks.compose import ComposeTask

    task = ComposeTask(parse_prompt(text), bars=bars)
    if system == "acemusic":
        from acemusic.generate.sampling import SamplingConfig
        from acemusic.generate.tasks.base import run_task

        return run_task(task, res.get("acemusic").ctx, SamplingConfig(top_p=res.top_p, cfg=res.cfg), seed=seed)
    from acemusic.eval.baselines.sampler import sample_constrained

    tok = res.get("tok")
    req = task.build(ModelFreeContext(tok))
    ids = sample_constrained(res.session(system), req.prompt, req.controls, res.get("grammar"), seed=seed,
                             max_new_tokens=task.max_new_tokens())
    return tok.decode(np.concatenate([req.prompt, ids]))


def _cached(path: Path, make: Callable[[], symusic.Score]) -> symusic.Score:
    if path.is_file():
        return symusic.Score(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    s = make()
    tmp = path.with_suffix(".mid.tmp")
    s.dump_midi(str(tmp))
    tmp.replace(path)
    return symusic.Score(str(path))


# ---- the suite -------------------------------------------------------------------------------------------------


def behaviour_items(res: Resources, n: int, seed: int = 0, min_bars: int = 8) -> list[dict]:
    """Test pieces with at least `min_bars` bars and one meter in their first `min_bars`: the call (bars 1-2),
    the given bars (1-4), their real continuations (3-4, 5-8) as decoded Scores, and the spec from metadata."""
    from acemusic.eval.nll import conditions_from_meta
    from acemusic.eval.suite import spec_from_meta

    ds, tok = res.get("split_test"), res.get("tok")
    items = []
    for i in np.random.default_rng(seed + 7).permutation(len(ds)).tolist():
        body = np.asarray(ds.piece(i), np.int64)
        if len(tok.bar_starts(body)) < min_bars:
            continue
        meta = ds.meta(i)
        prefix, eos = tok.cond_prefix(conditions_from_meta(meta, tok)), [tok.vocab.eos]

        def dec(a: int, b: int, body=body, prefix=prefix, eos=eos):
            return tok.decode(np.concatenate([prefix, tok.slice_bars(body, a, b), eos]))

        head = dec(0, min_bars)
        if len({(t.numerator, t.denominator) for t in head.time_signatures}) != 1:
            continue
        spec = spec_from_meta(meta, tok)
        spec.tempo = spec.meter = None  # a continuation keeps the piece's own
        items.append({"index": i, "call": dec(0, 2), "call_real": dec(2, 4), "given": dec(0, 4),
                      "given_real": dec(4, 8), "spec": spec, "head": first_bars(tok, body, min_bars)})
        if len(items) == n:
            break
    return items


def _rate(xs: Sequence[bool]) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


def run_behaviour(res: Resources, out: Path, n: int, systems: Sequence[str], seed: int = 0,
                  stage=None, advance=None) -> dict:
    """Run the four tests on `n` items for the systems that can (acemusic and the token baselines)."""
    stage = stage or (lambda name, total: None)
    advance = advance or (lambda k: None)
    systems = [s for s in systems if s in BEHAVIOUR_SYSTEMS]
    items = behaviour_items(res, n, seed)
    m = len(items)
    tests: dict[str, dict] = {
        "call_response_rhythm": {"question": "response reuses a call bar's rhythm"},
        "call_response_motif": {"question": "response reuses a 4-note motif of the call"},
        "continuation_key": {"question": "4 new bars keep the key of the 4 given bars"},
        "continuation_meter": {"question": "new bars keep the meter (locked by ContinueTask)"},
        "mood_minor": {"question": "'sad ...' prompt -> minor (music21)"},
        "mood_major": {"question": "'happy ...' prompt -> major (music21)"},
        "tempo_fast_vs_slow": {"question": "'fast ...' has more onsets/s than 'slow ...'"},
    }
    # Anchors: the real continuation, and another piece's real continuation (chance level).
    other = [items[(k + 1) % m] for k in range(m)] if m > 1 else items
    tests["call_response_rhythm"]["real"] = _rate([reuses_rhythm(it["call"], it["call_real"]) for it in items])
    tests["call_response_rhythm"]["chance"] = _rate([reuses_rhythm(it["call"], o["call_real"])
                                                     for it, o in zip(items, other, strict=True)])
    tests["call_response_motif"]["real"] = _rate([reuses_motif(it["call"], it["call_real"]) for it in items])
    tests["call_response_motif"]["chance"] = _rate([reuses_motif(it["call"], o["call_real"])
                                                    for it, o in zip(items, other, strict=True)])
    tests["continuation_key"]["real"] = _rate([same_key(it["given"], it["given_real"]) for it in items])
    tests["continuation_key"]["chance"] = _rate([same_key(it["given"], o["given_real"])
                                                 for it, o in zip(items, other, strict=True)])
    n_mood = max(1, n // 2)
    for t in tests.values():
        t["systems"] = {}
        t["items"] = m
    for key in ("mood_minor", "mood_major", "tempo_fast_vs_slow"):
        tests[key]["items"] = n_mood
    for system in systems:
        stage(f"behaviour {system}", 2 * m + 4 * n_mood)
        rhythm, motif, key, meter = [], [], [], []
        for k, it in enumerate(items):
            s = seed + k
            resp = _cached(out / "call_response" / system / f"{k:04d}.mid",
                           lambda it=it, s=s, system=system: continue_piece(res, system, it["call"], 2, s, it["spec"]))
            rhythm.append(reuses_rhythm(it["call"], resp))
            motif.append(reuses_motif(it["call"], resp))
            advance(1)
            cont = _cached(out / "continuation" / system / f"{k:04d}.mid",
                           lambda it=it, s=s, system=system: continue_piece(res, system, it["given"], 4, s,
                                                                                     it["spec"]))
            key.append(same_key(it["given"], cont))
            want = meters(it["given"])[-1]
            meter.append(all(mt == want for mt in meters(cont)))
            advance(1)
        minor, major, faster = [], [], []
        for k in range(n_mood):
            inst, s = MOOD_INSTRUMENTS[k % len(MOOD_INSTRUMENTS)], seed + k
            outs = {}
            for word in ("sad", "happy", "slow", "fast"):
                text = f"a {word} melody for {inst}" if word in ("sad", "happy") else f"a {word} piece for {inst}"
                outs[word] = _cached(out / f"prompt_{word}" / system / f"{k:04d}.mid",
                                     lambda text=text, s=s, system=system: compose_prompt(res, system, text, 8, s))
                advance(1)
            minor.append(key_of(outs["sad"])[1] == "minor")
            major.append(key_of(outs["happy"])[1] == "major")
            faster.append(onsets_per_second(outs["fast"]) > onsets_per_second(outs["slow"]))
        for name, v in (("call_response_rhythm", rhythm), ("call_response_motif", motif), ("continuation_key", key),
                        ("continuation_meter", meter), ("mood_minor", minor), ("mood_major", major),
                        ("tempo_fast_vs_slow", faster)):
            tests[name]["systems"][system] = _rate(v)
    note = ("Pass rates; `real` = the piece's own next bars, `chance` = another test piece's next bars "
            "(same measure). Meter is locked by the continuation task and tempo by the tempo control.")
    return {"n": n, "items": m, "systems": {s: True for s in systems}, "tests": tests, "note": note}
