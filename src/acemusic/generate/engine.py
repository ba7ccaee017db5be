"""Engine: prefill + incremental decode on the model's KV cache, grammar-constrained, seeded, streaming.

    engine = Engine(model, tokenizer)
    for step in engine.stream([Request(prompt, controls, text_emb)], SamplingConfig(top_p=0.95, cfg=1.5), seed=0):
        ...                                    # step.tokens (B,), step.notes, step.states (bar counts for progress)
    out = engine.generate([...])             # list of generated token arrays (EOS included when reached)

Like nanochat's engine it knows token ids, not music: the tokenizer is only used for `structure` of the prompt and
the vocabulary tables of the grammar. Classifier-free guidance runs the conditional and unconditional prompt as two
rows of one batch (the prefix has fixed slots, so both have the same length) and samples one token for both.
Per step the Python work is one numpy mask per sequence (a few slice assignments) and one `tolist()`; everything
else is the model's decode step.

Tests: `.venv/bin/python -m pytest tests/generate/test_engine.py -q`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from acemusic.errors import InputError
from acemusic.generate.constraints import DURATION, PITCH, Controls, Grammar, GrammarState
from acemusic.generate.sampling import SamplingConfig, cfg_combine, filter_logits, sample_next
from acemusic.model.fast_decode import FastDecoder


class Note(NamedTuple):
    """A note as soon as its Duration token is sampled (ticks at TPQ 12)."""

    row: int
    onset: int
    pitch: int
    duration: int
    program: int
    velocity_bin: int
    bar: int  # 1-based bar number


@dataclass
class Request:
    """One sequence to continue. `uncond_prompt` (same length) enables guidance for this row when cfg != 1."""

    prompt: np.ndarray  # prefix (+ any given body tokens)
    controls: Controls = field(default_factory=Controls)
    text_emb: np.ndarray | None = None  # (d_text,) sentence embedding, None = no text
    uncond_prompt: np.ndarray | None = None
    state: GrammarState | None = None  # a grammar state already advanced over `prompt` (tasks with sentinels)
    structure: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # prompt (bar_idx, pos, is_global)


@dataclass
class Step:
    """What one decoding step produced, for every sequence of the batch."""

    index: int  # 0-based step number
    tokens: np.ndarray  # (B,) sampled ids (PAD for sequences already finished)
    finished: np.ndarray  # (B,) bool
    notes: list[Note]
    states: list[GrammarState]


def threads_for(load: float, own: float, cpus: int, max_threads: int) -> int:
    """Threads for the cores other processes leave idle: `load` is the 1-minute load average, `own` this process's
    share of it (pure, for tests)."""
    others = max(0.0, load - own)
    return max(1, min(max_threads, int(cpus - others + 0.5)))


class _OwnLoad:
    """This process's own contribution to the 1-minute load average, estimated from its CPU time with the same
    one-minute exponential average the kernel uses. Without it a process that has just been decoding sees its own
    work in the load average and drops to one thread on an idle machine (measured: ~14% slower decoding)."""

    def __init__(self) -> None:
        self.t, self.cpu = time.monotonic(), time.process_time()
        self.value = min(self.cpu / 60.0, 1.0)  # CPU already spent before the first look (imports, loading)

    def update(self) -> float:
        t, cpu = time.monotonic(), time.process_time()
        dt = t - self.t
        if dt > 0:
            decay = math.exp(-dt / 60.0)
            self.value = self.value * decay + (cpu - self.cpu) / dt * (1.0 - decay)
            self.t, self.cpu = t, cpu
        return self.value


_OWN_LOAD = _OwnLoad()


def auto_threads(max_threads: int | None = None) -> int:
    """Threads worth using now: the CPUs that other processes leave idle by the 1-minute load average (this
    process's own share removed), between 1 and `max_threads` (default: torch's current setting)."""
    n = max_threads or torch.get_num_threads()
    own = _OWN_LOAD.update()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        return n
    return threads_for(load, own, os.cpu_count() or n, n)


class Engine:
    """Generates token ids from a MusicTransformer under the token grammar and task controls."""

    def __init__(self, model: torch.nn.Module, tokenizer, device: str | torch.device | None = None,
                 quantize: str | None = None, decode_threads: int | str | None = "auto", speculate: int = 4,
                 backend: str = "auto") -> None:
        """Prefill runs the model in torch; decode steps run a decoder built from its weights (it reads them once:
        build a new Engine after changing them):
          - backend "onnx": `OnnxDecoder`, the whole step as one onnxruntime graph (CPU; ~2x FastDecoder's speed);
          - backend "torch": `FastDecoder`, the same math as torch ops (any device);
          - "auto": onnx on the CPU when onnxruntime is installed, else torch.
        Both compute MusicTransformer.decode_step's logits to float rounding (tests/model/test_*_decode.py).
        `quantize='int8'`: the decoder's linear layers hold int8 weights (one scale per output channel); the
        caller's model is untouched. Decoding one token is weight-bandwidth bound on CPU (the weights stream from
        memory every step), so 4x fewer weight bytes make each step faster.

        `decode_threads`: "auto" (default) = as many threads as help without changing any output. onnxruntime's
        outputs are bit-identical at every thread count, so the onnx decoder uses the cores other processes leave
        idle (by the 1-minute load average, see `auto_threads`) for a batch or a guided pair, and 1 thread for a
        lone row (a second one measured 2-7% faster for twice the CPU). torch's fp32 matmuls split their
        reductions by thread count (the same seed gave a different 16-bar compose at 2 threads than at 1: 111 vs
        138 notes), so torch work (the prefill, and decoding on the torch backend) stays at 1 thread. An int sets
        that many threads for both, torch included (its outputs may then depend on the count); None leaves
        torch's setting alone.

        `speculate`: up to this many draft tokens (structural guesses and prompt lookup, `_Loop.propose`) verified
        per forward when one sequence is decoded (0 = off). Same distribution of outputs, fewer forwards (see
        `generate/speculative.py`).
        """
        if speculate < 0:
            raise ValueError(f"speculate must be >= 0, got {speculate}")
        if backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"backend must be 'auto', 'onnx' or 'torch', not {backend!r}")
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', not {quantize!r}")
        self.speculate = int(speculate)
        self.spec_stats: dict[str, int] = {}  # forwards, drafted and accepted tokens of the latest speculative call
        self.quantize = quantize
        self.decode_threads = decode_threads
        self.model = model.eval()
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.decoder, self.backend = self._decoder(backend)
        self.tok = tokenizer
        self.vocab = tokenizer.vocab
        self.grammar = Grammar(self.vocab)
        self.d_text = getattr(model.cfg, "d_text", 384)
        self._dur_ticks = self.vocab.duration_bins

    def _decoder(self, backend: str):
        import warnings

        if backend in ("auto", "onnx") and self.device.type == "cpu":
            try:
                from acemusic.model.onnx_decode import OnnxDecoder

                return OnnxDecoder(self.model, self.quantize), "onnx"
            except Exception as e:  # not installed, or an onnxruntime that cannot run the graph
                if backend == "onnx":
                    raise
                warnings.warn(f"onnx decoding unavailable ({e}); decoding with torch", stacklevel=3)
        elif backend == "onnx":
            raise ValueError(f"the onnx backend runs on the CPU, not {self.device}")
        try:
            return FastDecoder(self.model, self.quantize), "torch"
        except (AttributeError, RuntimeError, ImportError) as e:  # a torch without the int8 kernels
            warnings.warn(f"int8 decoding unavailable ({e}); decoding in float", stacklevel=3)
            self.quantize = None
            return FastDecoder(self.model, None), "torch"

    @contextmanager
    def threads(self, rows: int) -> Iterator[None]:
        """Threads for decoding `rows` rows by `decode_threads` (see __init__), restored afterwards."""
        before = torch.get_num_threads()
        want = self.decode_threads
        if want == "auto":
            torch_n = 1
            dec_n = auto_threads(os.cpu_count() or 1) if rows > 1 and self.backend == "onnx" else 1
        else:
            torch_n = dec_n = int(want) if want else before
        if want is not None:
            torch.set_num_threads(torch_n)
        if self.backend == "onnx":  # FastDecoder runs on torch's threads
            self.decoder.threads = dec_n
        try:
            yield
        finally:
            torch.set_num_threads(before)

    # ---- helpers --------------------------------------------------------------------------------------------
    def new_state(self, controls: Controls | None = None) -> GrammarState:
        return GrammarState(self.grammar, controls)

    def _prompt_rows(self, reqs: list[Request], guided: bool) -> tuple[torch.Tensor, ...]:
        lengths = {len(r.prompt) for r in reqs} | ({len(r.uncond_prompt) for r in reqs} if guided else set())
        if len(lengths) != 1:
            raise InputError("prompts", f"prompts of one batch must have the same length, got {sorted(lengths)}")
        rows = [np.asarray(r.prompt, np.int64) for r in reqs]
        structs = [r.structure or self.tok.structure(p) for r, p in zip(reqs, rows, strict=True)]
        if guided:
            rows += [np.asarray(r.uncond_prompt, np.int64) for r in reqs]
            structs += [self.tok.structure(p) if r.structure is None else r.structure
                        for r, p in zip(reqs, rows[len(reqs):], strict=True)]
        ids = torch.from_numpy(np.stack(rows)).to(self.device)
        bar, pos, glob = (torch.from_numpy(np.stack([s[k] for s in structs])).to(self.device) for k in range(3))
        return ids, bar.long(), pos.long(), glob.bool()

    def _text(self, reqs: list[Request], guided: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if all(r.text_emb is None for r in reqs):
            return None, None
        emb = np.zeros((len(reqs), self.d_text), np.float32)
        has = np.zeros(len(reqs), bool)
        for i, r in enumerate(reqs):
            if r.text_emb is not None:
                emb[i], has[i] = r.text_emb, True
        if guided:  # the unconditional rows drop the text: null memory
            emb = np.concatenate([emb, np.zeros_like(emb)])
            has = np.concatenate([has, np.zeros_like(has)])
        dtype = next(self.model.parameters()).dtype
        return torch.from_numpy(emb).to(self.device, dtype), torch.from_numpy(has).to(self.device)

    # ---- decoding -------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def stream(self, requests: list[Request], sampling: SamplingConfig | None = None, seed: int = 0,
               max_new_tokens: int = 4096) -> Iterator[Step]:
        """Yield one `Step` per sampled token until every sequence emitted EOS or `max_new_tokens` is reached.

        Near the limit each sequence switches to `closing` (finish the bar budget with the fewest tokens), so a
        length-limited piece still ends cleanly.
        """
        if not requests:
            return
        sampling = sampling or SamplingConfig()
        guided = sampling.cfg != 1.0 and all(r.uncond_prompt is not None for r in requests)
        with self.threads(len(requests) * (2 if guided else 1)):
            yield from self._stream(requests, sampling, seed, max_new_tokens)

    def _stream(self, requests: list[Request], sampling: SamplingConfig, seed: int,
                max_new_tokens: int) -> Iterator[Step]:
        guided = sampling.cfg != 1.0 and all(r.uncond_prompt is not None for r in requests)
        B = len(requests)
        R = 2 * B if guided else B
        states = []
        for r in requests:
            st = r.state
            if st is None:
                st = self.new_state(r.controls)
                for t in np.asarray(r.prompt).tolist():
                    st.advance(t)
            states.append(st)
        # One sequence (its guided pair shares every token) whose grammar state can be forked to lay out drafts:
        # rows stay in step, so decode speculatively.
        speculate = self.speculate if B == 1 and states[0].forkable and not states[0].done else 0
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        ids, bar, pos, glob = self._prompt_rows(requests, guided)
        text_emb, cond_mask = self._text(requests, guided)
        # Global slots: one per step where any row is global (prompt and new Bars); rows place their Bars at
        # different steps, so the new ones are bounded by the sum of the bar budgets (when every row has one).
        budgets = [s.c.n_bars for s in states]
        new_bars = sum(b - s.bar_index + 1 for b, s in zip(budgets, states, strict=True)) if all(budgets) \
            else min(max_new_tokens, 4096)
        max_global = int(glob.any(0).sum()) + new_bars + 8 + speculate
        # float32 whatever the model's dtype: the decoders compute in float32 (prefill casts what it writes)
        cache = self.model.new_cache(R, max_global=max_global, device=self.device, dtype=torch.float32,
                                     spare=speculate)
        logits = self.model.prefill(ids, bar, pos, glob, text_emb, cond_mask, cache)
        loop = _Loop(self, states, sampling, gen, guided, max_new_tokens)
        if speculate:
            yield from loop.speculative(logits, cache, requests[0].prompt, speculate)
        else:
            yield from loop.plain(logits, cache)

    def generate(self, requests: list[Request], sampling: SamplingConfig | None = None, seed: int = 0,
                 max_new_tokens: int = 4096) -> list[np.ndarray]:
        """Generated ids per request (without the prompt; EOS included when reached, PAD never)."""
        out: list[list[int]] = [[] for _ in requests]
        for step in self.stream(requests, sampling, seed, max_new_tokens):
            for b, t in enumerate(step.tokens.tolist()):
                if t != self.vocab.pad:
                    out[b].append(t)
        return [np.asarray(o, np.int64) for o in out]


class _Loop:
    """The sampling loop of one `Engine.stream` call: filtering, sampling and bookkeeping shared by the plain path
    (one token per row per forward) and the speculative one (one sequence, drafts verified in one forward)."""

    def __init__(self, engine: Engine, states: list[GrammarState], sampling: SamplingConfig, gen: torch.Generator,
                 guided: bool, max_new_tokens: int) -> None:
        self.e, self.states, self.sampling, self.gen = engine, states, sampling, gen
        self.guided, self.max_new = guided, max_new_tokens
        self.B = len(states)
        vocab = engine.vocab
        self.pad, self.eos = vocab.pad, vocab.eos
        self.finished = np.array([s.done for s in states])
        self.done_mask = np.zeros(len(vocab), bool)
        self.done_mask[self.pad] = True
        self.greedy = sampling.temperature == 0.0
        R = 2 * self.B if guided else self.B
        self.step_bar, self.step_pos = np.zeros(R, np.int64), np.zeros(R, np.int64)
        self.step_glob = np.zeros(R, bool)
        self.masks: list[np.ndarray] = []
        self.last_duration: int | None = None  # latest Duration token committed (a draft guess)
        self.duration_type = int(vocab.type_of[vocab.offset["Duration"]])

    def filtered(self, logits: torch.Tensor, step: int) -> np.ndarray:
        """Next-token logits (B, V), float32 numpy, after guidance, the grammar masks, the controls' biases and the
        sampling filters (-inf = never); the masks are kept in `self.masks` for `commit`."""
        left = self.max_new - step
        for s in self.states:
            n_bars = s.c.n_bars
            if not s.closing and left <= (max(n_bars - s.bar_index, 0) if n_bars else 0) + 8:
                s.closing = True  # near the length limit: finish the bar budget with the fewest tokens
        B = self.B
        x = logits.detach().float().cpu().numpy()  # no copy for the onnx decoder's host-side logits
        if self.guided:
            x = cfg_combine(x[:B], x[B:], self.sampling.cfg)
        self.masks = masks = [self.done_mask if f else s.allowed()
                              for s, f in zip(self.states, self.finished, strict=True)]
        mask = masks[0][None] if B == 1 else np.stack(masks)
        biases = [None if f else s.bias() for s, f in zip(self.states, self.finished, strict=True)]
        if any(b is not None for b in biases):
            x = x + np.stack([np.zeros(len(self.done_mask), np.float32) if b is None else b for b in biases])
        return filter_logits(np.where(mask, x, np.float32(-np.inf)), self.sampling)

    def commit(self, toks: list[int], notes: list[Note]) -> list[int]:
        """Advance every unfinished row's state by its token (PAD for finished rows); collects the new notes."""
        vocab, e = self.e.vocab, self.e
        for b, (s, t) in enumerate(zip(self.states, toks, strict=True)):
            if self.finished[b]:
                toks[b] = self.pad
                continue
            m = self.masks[b]
            if not m[t]:  # float rounding at the top of the CDF: never leave the grammar
                ok = np.flatnonzero(m)
                if not len(ok):
                    raise RuntimeError(f"no token allowed after {s.phase=} (controls contradict the grammar)")
                t = toks[b] = int(ok[0])
            s.advance(t)
            if s.phase == DURATION:
                self.last_duration = t
                dur = int(e._dur_ticks[vocab.value_of[t]])
                notes.append(Note(b, s.bar_start + s.pos, s.event_pitch, dur, int(s.program or 0),
                                  int(s.velocity or 0), s.bar_index))
            if t == self.eos:
                self.finished[b] = True
            self.step_bar[b], self.step_pos[b], self.step_glob[b] = s.structure
        return toks

    def sample(self, logits: torch.Tensor, step: int) -> list[int]:
        """One token per row from the filtered distribution of `logits` (greedy at temperature 0)."""
        return sample_next(self.filtered(logits, step), self.gen, greedy=self.greedy).tolist()

    def emit(self, step: int, toks: list[int], notes: list[Note]) -> Step:
        return Step(step, np.asarray(toks, np.int64), self.finished.copy(), notes, self.states)

    def plain(self, logits: torch.Tensor, cache) -> Iterator[Step]:
        B, dec = self.B, self.e.decoder
        for step in range(self.max_new):
            toks = self.sample(logits, step)
            notes: list[Note] = []
            toks = self.commit(toks, notes)
            yield self.emit(step, toks, notes)
            if self.finished.all():
                return
            if self.guided:
                self.step_bar[B:], self.step_pos[B:], self.step_glob[B:] = (
                    self.step_bar[:B], self.step_pos[:B], self.step_glob[:B])
                toks = toks + toks
            logits = dec.step(toks, self.step_bar, self.step_pos, self.step_glob, cache)

    def propose(self, state: GrammarState, t: int, k: int, drafter) -> tuple[list[int], list[tuple[int, int, bool]]]:
        """Up to k draft tokens after `state` (which has just consumed t), each grammatical (tried on a fork), and
        their structure. Token by token: a structural guess where there is one (`guess`), else the prompt lookup's
        continuation of the sequence extended by the drafts so far (as a block: a long match predicts a long
        repeat). A draft only; verification decides."""
        fork, drafts, struct = state.fork(), [], []

        def take(d: int) -> bool:
            if fork.done or not fork.allowed()[d]:
                return False
            fork.advance(d)
            drafts.append(d)
            struct.append(fork.structure)
            return True

        last = t
        while len(drafts) < k and not fork.done:
            g = self.guess(fork, last, drafts)
            if g is not None and take(g):
                last = g
                continue
            block = drafter.draft(k - len(drafts), after=drafts)
            n = len(drafts)
            for d in block:
                if not take(d):
                    break
            if len(drafts) == n:
                break
            last = drafts[-1]
        return drafts, struct

    def guess(self, state: GrammarState, t: int, drafts: list[int]) -> int | None:
        """The structure's guess for the token after t (`state` has consumed it), or None: after a Duration the next
        onset, Position(onset + duration) or Bar at the bar's end; after a Pitch the piece's latest Duration."""
        vocab = self.e.vocab
        if state.phase == DURATION and state.bar_len:
            nxt = state.pos + int(self.e._dur_ticks[vocab.value_of[t]])
            if nxt >= state.bar_len:
                return vocab.bar
            return vocab.offset["Position"] + nxt if nxt < len(vocab.values["Position"]) else None
        if state.phase == PITCH:
            return next((d for d in reversed(drafts) if vocab.type_of[d] == self.duration_type), self.last_duration)
        return None

    def speculative(self, logits: torch.Tensor, cache, prompt: np.ndarray, k: int) -> Iterator[Step]:
        """One sequence: after each sampled token, feed it with up to k drafts (`propose`) in one forward and
        verify them in order (`verify_draft`); at the first rejection the token comes from the residual
        distribution and the cache forgets the unused drafts. Every token is distributed exactly as in `plain`."""
        from acemusic.generate.speculative import LookupDrafter, verify_draft

        state, dec, R = self.states[0], self.e.decoder, 2 if self.guided else 1
        drafter = LookupDrafter(np.asarray(prompt).tolist())
        stats = self.e.spec_stats = {"forwards": 0, "drafted": 0, "accepted": 0}  # of the latest call
        step = 0
        t = self.sample(logits, step)[0]
        while True:
            t = self.commit([t], notes := [])[0]
            yield self.emit(step, [t], notes)
            step += 1
            drafter.push(t)
            if state.done or step >= self.max_new:
                return
            drafts, struct = self.propose(state, t, min(k, self.max_new - step - 1), drafter)
            ids = np.array([[t, *drafts]] * R, np.int64)
            cols = np.array([state.structure, *struct], np.int64).T  # (3, T): bar index, position, is_global
            bars, poss, globs = (np.repeat(c[None], R, axis=0) for c in cols)
            out = dec.forward(ids, bars, poss, globs.astype(bool), cache)
            stats["forwards"] += 1
            stats["drafted"] += len(drafts)
            t = None
            for i, d in enumerate(drafts):
                t = verify_draft(self.filtered(out[:, i], step)[0], d, self.gen, self.greedy)
                if t is not None:  # rejected: t is drawn from the residual; forget the unused drafts
                    cache.rewind(len(drafts) - i)
                    break
                stats["accepted"] += 1
                self.commit([d], notes := [])
                yield self.emit(step, [d], notes)
                step += 1
                drafter.push(d)
                if state.done:
                    return
            if t is None:  # every draft taken: the forward's last logits give the next token
                t = self.sample(out[:, len(drafts)], step)[0]
