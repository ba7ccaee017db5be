"""Public Python API: load a model bundle once, then call tasks on it.

    import acemusic
    bundle = acemusic.load()                               # shipped checkpoint, CPU
    score = bundle.compose("melancholic piano, slow, D minor", bars=16, seed=0)
    bundle.save_midi(score, "song.mid")
    score = acemusic.compose("joyful 3/4 flute tune in G major")   # module level: loads the default bundle once

Every function returns a `symusic.Score` (12 ticks per quarter). User mistakes raise `acemusic.errors.InputError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acemusic.errors import InputError

if TYPE_CHECKING:
    import symusic

    from acemusic.generate.engine import Step

CHECKPOINT_NAME = "acemusic-mini"  # the default; checkpoints/acemusic-small is the 16M alternative
DEFAULT_CANDIDATES = 8  # up to 8 when a key/mode is asked, in batches of 4 (README "Prompt adherence": 1, 2, 4, 8)
MAX_CANDIDATES = 16
ENV_CHECKPOINT = "ACEMUSIC_CHECKPOINT"


def default_checkpoint() -> Path:
    """$ACEMUSIC_CHECKPOINT, else <repo>/checkpoints/acemusic-mini, else the copy inside the installed package."""
    env = os.environ.get(ENV_CHECKPOINT)
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    candidates = [here.parents[1] / "checkpoints" / CHECKPOINT_NAME, here / "checkpoints" / CHECKPOINT_NAME]
    return next((c for c in candidates if (c / "config.json").is_file()), candidates[0])


class Bundle:
    """Model + tokenizer + text embedder + engine, loaded once and reused for every call."""

    def __init__(self, model, tokenizer, embedder=None, meta: dict | None = None, path: Path | None = None,
                 device: str = "cpu", quantize: str | None = None) -> None:
        from acemusic.generate.engine import Engine
        from acemusic.generate.tasks.base import TaskContext

        self.model, self.tokenizer, self.embedder = model, tokenizer, embedder
        self.meta, self.path, self.device = meta or {}, path, device
        self.engine = Engine(model, tokenizer, device=device, quantize=quantize)
        self.ctx = TaskContext(self.engine, embedder)

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return f"Bundle({self.path}, {n / 1e6:.1f}M parameters, device={self.device})"

    def compose(self, prompt: str, bars: int = 16, key: str | None = None, mode: str | None = None,
                tempo: float | str | None = None, meter: str | None = None,
                instruments: str | list[str] | None = None, temperature: float = 1.0, top_p: float = 0.95,
                cfg: float = 1.5, seed: int = 0, on_step: Callable[[Step], None] | None = None,
                key_strength: float = 1.0, candidates: int = DEFAULT_CANDIDATES) -> symusic.Score:
        """Compose `bars` bars from a text prompt; explicit key/mode/tempo/meter/instruments override the text.

        When a key or mode is asked, `candidates` samples are decoded as one batch and the one whose notes fit the
        asked key best is returned (best-of-N reranking; 1 = plain sampling)."""
        from acemusic.generate.prompt import check_bars, check_prompt, parse_prompt
        from acemusic.generate.sampling import SamplingConfig
        from acemusic.generate.tasks.base import run_task
        from acemusic.generate.tasks.compose import ComposeTask

        text = check_prompt(prompt)
        check_bars(bars)
        spec = parse_prompt(text).override(key=key, mode=mode, tempo=tempo, meter=meter, instruments=instruments)
        check_sampling(temperature, top_p, cfg)
        check_candidates(candidates)
        sampling = SamplingConfig(temperature=temperature, top_p=top_p, cfg=cfg)
        task = ComposeTask(spec, bars=bars, key_strength=key_strength)
        return run_task(task, self.ctx, sampling, seed=seed, on_step=on_step, candidates=candidates)

    # ---- editing tasks (continue, infill, interpolate, morph, vary) ----
    def continue_(self, source: str | Path | symusic.Score, bars: int = 8, prompt: str | None = None,
                  key: str | None = None, mode: str | None = None, tempo: float | str | None = None,
                  meter: str | None = None, instruments: str | list[str] | None = None, temperature: float = 1.0,
                  top_p: float = 0.95, cfg: float = 1.5, seed: int = 0,
                  on_step: Callable[[Step], None] | None = None, key_strength: float = 1.0) -> symusic.Score:
        """Continue a piece (MIDI path or Score) by `bars` bars. The input is kept note for note; key, meter,
        tempo and instruments stay the piece's unless the prompt or the keywords ask otherwise."""
        from acemusic.generate.prompt import check_bars
        from acemusic.generate.sampling import SamplingConfig
        from acemusic.generate.tasks.base import run_task
        from acemusic.generate.tasks.continuation import ContinueTask
        from acemusic.generate.tasks.io import load_piece, task_spec

        check_bars(bars)
        check_sampling(temperature, top_p, cfg)
        spec = task_spec(prompt, key=key, mode=mode, tempo=tempo, meter=meter, instruments=instruments)
        task = ContinueTask(load_piece(self.tokenizer, source), bars=bars, spec=spec, key_strength=key_strength)
        return run_task(task, self.ctx, SamplingConfig(temperature=temperature, top_p=top_p, cfg=cfg), seed=seed,
                        on_step=on_step)

    def infill(self, source: str | Path | symusic.Score, bars: str | tuple[int, int] | list[tuple[int, int]],
               prompt: str | None = None, key: str | None = None, temperature: float = 1.0, top_p: float = 0.95,
               cfg: float = 1.5, seed: int = 0, on_step: Callable[[Step], None] | None = None,
               key_strength: float = 1.0) -> symusic.Score:
        """Regenerate bar spans ('5-8', '2-3,7' or [(5, 8)]: 1-based, inclusive) from both sides; every note
        outside the spans is kept as it is."""
        from acemusic.generate.sampling import SamplingConfig
        from acemusic.generate.tasks.infill import infill_spans, spans_text
        from acemusic.generate.tasks.io import load_piece, parse_spans, task_spec

        check_sampling(temperature, top_p, cfg)
        spec = task_spec(prompt, key=key)
        piece = load_piece(self.tokenizer, source)
        spans = parse_spans(spans_text(bars), piece.n_bars)
        return infill_spans(self.ctx, piece, spans, spec, SamplingConfig(temperature=temperature, top_p=top_p,
                                                                         cfg=cfg), seed, on_step, key_strength)

    def interpolate(self, a: str | Path | symusic.Score, b: str | Path | symusic.Score, bars: int = 8,
                    bridge_only: bool = False, prompt: str | None = None, temperature: float = 1.0,
                    top_p: float = 0.95, cfg: float = 1.5, seed: int = 0,
                    on_step: Callable[[Step], None] | None = None) -> symusic.Score:
        """A `bars`-bar passage that leaves A and arrives at B (filled from both sides): A + bridge + B, or the
        bridge alone. 12 ticks per quarter."""
        from acemusic.generate.sampling import SamplingConfig
        from acemusic.generate.tasks.base import run_task
        from acemusic.generate.tasks.interpolate import bridge_task
        from acemusic.generate.tasks.io import load_piece, task_spec

        check_sampling(temperature, top_p, cfg)
        spec = task_spec(prompt)
        pa, pb = load_piece(self.tokenizer, a), load_piece(self.tokenizer, b)
        task = bridge_task(self.tokenizer, pa, pb, bars, bridge_only=bridge_only, spec=spec, key_strength=0.0)
        return run_task(task, self.ctx, SamplingConfig(temperature=temperature, top_p=top_p, cfg=cfg), seed=seed,
                        on_step=on_step)

    def morph(self, a: str | Path | symusic.Score, b: str | Path | symusic.Score, bars: int = 4, steps: int = 5,
              temperature: float = 1.0, top_p: float = 0.95, seed: int = 0,
              on_step: Callable[[Step], None] | None = None) -> list[symusic.Score]:
        """`steps` passages of `bars` bars morphing A into B: A's opening, mixtures of the model's predictions
        given A and given B with weight k/(steps-1) on B, B's opening (`generate.tasks.interpolate.morph`)."""
        from acemusic.generate.sampling import SamplingConfig
        from acemusic.generate.tasks.interpolate import morph
        from acemusic.generate.tasks.io import load_piece

        check_sampling(temperature, top_p, 1.0)
        pa, pb = load_piece(self.tokenizer, a), load_piece(self.tokenizer, b)
        return morph(self.ctx, pa, pb, bars=bars, steps=steps,
                     sampling=SamplingConfig(temperature=temperature, top_p=top_p), seed=seed, on_step=on_step)

    def vary(self, source: str | Path | symusic.Score, n: int = 4, strength: float = 0.5, keep_bars: int = 1,
             temperature: float = 1.0, top_p: float = 0.95, cfg: float = 1.5, seed: int = 0,
             on_step: Callable[[Step], None] | None = None) -> list[symusic.Score]:
        """`n` variations: the first `keep_bars` bars kept, a share `strength` of the other bars regenerated from
        both sides (different bars and seeds per variation); see `generate.tasks.vary`."""
        from acemusic.generate.sampling import SamplingConfig
        from acemusic.generate.tasks.io import load_piece
        from acemusic.generate.tasks.vary import vary

        check_sampling(temperature, top_p, cfg)
        piece = load_piece(self.tokenizer, source)
        sampling = SamplingConfig(temperature=temperature, top_p=top_p, cfg=cfg)
        return [s for s, _ in vary(self.ctx, piece, n=n, strength=strength, keep_bars=keep_bars, seed=seed,
                                   sampling=sampling, on_step=on_step)]

    # ---- given-notes tasks (harmonize, accompany, restyle, track infill): kept notes are reproduced exactly ----
    def _score_of(self, source: str | Path | symusic.Score) -> symusic.Score:
        return source if not isinstance(source, (str, Path)) else self.tokenizer.load_score(source)

    def harmonize(self, melody: str | Path | symusic.Score, style: str = "chorale", track: int | None = None,
                  program: int | None = None, lookahead: int = 1, consonance: float | None = None,
                  prompt: str | None = None, temperature: float = 1.0, top_p: float = 0.95, cfg: float = 1.5,
                  seed: int = 0, on_step: Callable[[Step], None] | None = None) -> symusic.Score:
        """Keep the melody (track `track`, default the highest) as the top voice, exactly, and write the voices
        under it: `chorale` (alto, tenor, bass tracks in their ranges) or `chords` (piano, or `program`).
        `lookahead` > 1: K candidate bars per bar reranked against the upcoming melody."""
        from acemusic.generate.sampling import SamplingConfig
        from acemusic.generate.tasks.harmonize import CONSONANCE, HarmonizeTask, pick_melody

        check_sampling(temperature, top_p, cfg)
        check_lookahead(lookahead)
        score = self._score_of(melody)
        idx, _ = pick_melody(score, track)
        task = HarmonizeTask(self.tokenizer, score, idx, style, program=program, text=prompt, lookahead=lookahead,
                             consonance=CONSONANCE if consonance is None else consonance)
        return task.run(self.ctx, SamplingConfig(temperature=temperature, top_p=top_p, cfg=cfg), seed, on_step)

    def accompany(self, source: str | Path | symusic.Score, instruments: str | list[str],
                  tracks: list[int] | None = None, prompt: str | None = None, lookahead: int = 1,
                  temperature: float = 1.0, top_p: float = 0.95, cfg: float = 1.5, seed: int = 0,
                  on_step: Callable[[Step], None] | None = None) -> symusic.Score:
        """Keep the given tracks (all, or `tracks`) exactly and add `instruments` ('piano,bass,drums')."""
        from acemusic.generate.prompt import parse_prompt
        from acemusic.generate.sampling import SamplingConfig
        from acemusic.generate.tasks.accompany import AccompanyTask

        check_sampling(temperature, top_p, cfg)
        check_lookahead(lookahead)
        spec = parse_prompt(prompt or "").override(instruments=instruments)
        task = AccompanyTask(self.tokenizer, self._score_of(source), spec.instruments, tracks=tracks,
                             text=prompt, style=spec.style, lookahead=lookahead)
        return task.run(self.ctx, SamplingConfig(temperature=temperature, top_p=top_p, cfg=cfg), seed, on_step)

    def restyle(self, source: str | Path | symusic.Score, prompt: str, track: int | None = None,
                instruments: str | list[str] | None = None, lookahead: int = 1, temperature: float = 1.0,
                top_p: float = 0.95, cfg: float = 1.5, seed: int = 0, report: bool = False,
                on_step: Callable[[Step], None] | None = None) -> symusic.Score | tuple[symusic.Score, dict]:
        """Keep the melodic and rhythmic skeleton (the melody's top line), regenerate texture, harmony and
        instrumentation under `prompt`. `report=True` also returns melody kept and style statistics moved."""
        from acemusic.generate.prompt import check_prompt, parse_prompt
        from acemusic.generate.sampling import SamplingConfig
        from acemusic.generate.tasks.restyle import RestyleTask

        check_sampling(temperature, top_p, cfg)
        check_lookahead(lookahead)
        spec = parse_prompt(check_prompt(prompt)).override(instruments=instruments)
        task = RestyleTask(self.tokenizer, self._score_of(source), spec, track=track, lookahead=lookahead)
        out = task.run(self.ctx, SamplingConfig(temperature=temperature, top_p=top_p, cfg=cfg), seed, on_step)
        return (out, task.report(out)) if report else out

    def infill_track(self, source: str | Path | symusic.Score, track: int, instrument: str | None = None,
                     prompt: str | None = None, lookahead: int = 1, temperature: float = 1.0, top_p: float = 0.95,
                     cfg: float = 1.5, seed: int = 0,
                     on_step: Callable[[Step], None] | None = None) -> symusic.Score:
        """Regenerate track `track` (as `instrument`, default its own) while every other track is kept exactly."""
        from acemusic.generate.prompt import resolve_instrument
        from acemusic.generate.sampling import SamplingConfig
        from acemusic.generate.tasks.track_infill import TrackInfillTask

        check_sampling(temperature, top_p, cfg)
        check_lookahead(lookahead)
        program = None if instrument is None else resolve_instrument(instrument)
        task = TrackInfillTask(self.tokenizer, self._score_of(source), track, program=program, text=prompt,
                               lookahead=lookahead)
        return task.run(self.ctx, SamplingConfig(temperature=temperature, top_p=top_p, cfg=cfg), seed, on_step)

    @staticmethod
    def save_midi(score: symusic.Score, path: str | Path) -> Path:
        """Write a Score as a standard MIDI file (parent folders created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        score.dump_midi(str(path))
        return path


def check_sampling(temperature: float, top_p: float, cfg: float) -> None:
    """Validate sampling knobs (InputError names the CLI flag)."""
    if temperature < 0:
        raise InputError("--temperature", f"must be >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise InputError("--top-p", f"must be in (0, 1], got {top_p}")
    if not 0.0 <= cfg <= 10.0:
        raise InputError("--cfg", f"must be in [0, 10], got {cfg}")


def check_candidates(candidates: int) -> None:
    if not 1 <= candidates <= MAX_CANDIDATES:
        raise InputError("--candidates", f"must be in 1..{MAX_CANDIDATES}, got {candidates}")


def check_lookahead(k: int) -> None:
    """Look-ahead candidates per bar: 1 (off) to 16."""
    if not 1 <= k <= 16:
        raise InputError("--lookahead", f"must be 1..16 candidates per bar, got {k}")


def load(path: str | Path | None = None, device: str = "cpu", text: bool = True,
         quantize: str | None = "int8") -> Bundle:
    """Load a checkpoint directory (default: the shipped one) into a Bundle. `text=False` skips the embedder;
    `quantize='int8'` (default on CPU) decodes with int8 linear layers (mean KL 6e-5 from fp32 on a real chorale,
    benchmarks/decode_step.py), None keeps fp32."""
    import torch

    from acemusic.model.checkpoint import load as load_checkpoint
    from acemusic.model.checkpoint import read_config
    from acemusic.tokenizer import Tokenizer, Vocab, VocabConfig

    ckpt = Path(path) if path is not None else default_checkpoint()
    if not (ckpt / "config.json").is_file():
        hint = "" if path is not None else " (train one with `acemusic train`, or pass --checkpoint DIR)"
        raise InputError(ckpt, f"no checkpoint here{hint}")
    _, meta = read_config(ckpt)
    try:  # the vocabulary the checkpoint was trained with; a different one is an error, never a silent mismatch
        tok = Tokenizer(VocabConfig.from_dict(meta["vocab"])) if "vocab" in meta else Tokenizer()
        if (ckpt / "vocab.json").is_file() and Vocab.load(ckpt / "vocab.json").tokens != tok.vocab.tokens:
            raise ValueError("vocab.json and config.json disagree")
    except (TypeError, ValueError, KeyError) as e:
        raise InputError(ckpt, f"checkpoint vocabulary differs from this version of acemusic ({e})") from e
    model, meta = load_checkpoint(ckpt, device=device, dtype=torch.float32, expected_vocab_size=len(tok.vocab))
    embedder = None
    if text and model.cfg.cross_attn_every > 0:
        from acemusic.text import TextEmbedder

        embedder = TextEmbedder()
    if device != "cpu":
        quantize = None  # dynamic int8 kernels are CPU-only
    return Bundle(model, tok, embedder, meta, ckpt, device, quantize=quantize)


_DEFAULT: Bundle | None = None


def compose(prompt: str, bars: int = 16, key: str | None = None, mode: str | None = None,
            tempo: float | str | None = None, meter: str | None = None, instruments: str | list[str] | None = None,
            temperature: float = 1.0, top_p: float = 0.95, cfg: float = 1.5, seed: int = 0,
            bundle: Bundle | None = None, **kwargs: Any) -> symusic.Score:
    """`Bundle.compose` on `bundle`, or on the default checkpoint (loaded on first use and kept)."""
    global _DEFAULT
    if bundle is None:
        if _DEFAULT is None:
            _DEFAULT = load()
        bundle = _DEFAULT
    return bundle.compose(prompt, bars=bars, key=key, mode=mode, tempo=tempo, meter=meter, instruments=instruments,
                          temperature=temperature, top_p=top_p, cfg=cfg, seed=seed, **kwargs)


__all__ = ["Bundle", "check_candidates", "check_sampling", "compose", "default_checkpoint", "load"]
