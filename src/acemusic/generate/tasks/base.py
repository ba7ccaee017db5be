"""The Task protocol: a task builds the prompt and the constraints, the engine decodes, the task finishes the Score.

Every task (compose, continue, infill, harmonize, ...) is one class with two hooks, so all of them share the same
decoding loop, seeding, progress reporting and guidance:

    class MyTask(Task):
        def build(self, ctx: TaskContext) -> Request: ...        # prompt tokens, Controls, text embedding
        def finish(self, ctx: TaskContext, prompt, generated) -> symusic.Score: ...

    score = run_task(MyTask(...), ctx, SamplingConfig(...), seed=0, on_step=callback)

A task may also say how well a finished score meets its asks (`candidate_score`, e.g. the key fit of compose): then
`run_task(..., candidates=N)` decodes up to N samples, as rows of batches of 4 (the rows share each decode step's
weight reads), drawing another batch only while no candidate `candidate_meets` the ask, and keeps the best.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from acemusic.generate.engine import Engine, Request, Step
from acemusic.generate.sampling import SamplingConfig


@dataclass
class TaskContext:
    """What a task may use: the engine (model + tokenizer + grammar) and a text embedder (or None)."""

    engine: Engine
    embedder: object | None = None  # acemusic.text.TextEmbedder-like: encode(list[str]) -> (n, 384)

    @property
    def tok(self):
        return self.engine.tok

    def embed(self, text: str | None) -> np.ndarray | None:
        """Sentence embedding of `text` (None without text or without an embedder)."""
        if not text or self.embedder is None:
            return None
        return np.asarray(self.embedder.encode([text])[0], np.float32)


class Task(ABC):
    """A way of building the prompt and constraints for the shared decoder."""

    name: str = "task"

    @abstractmethod
    def build(self, ctx: TaskContext) -> Request:
        """The request to decode: prompt tokens, controls, text embedding and (for guidance) the uncond prompt."""

    @abstractmethod
    def finish(self, ctx: TaskContext, prompt: np.ndarray, generated: np.ndarray):
        """Tokens -> symusic.Score."""

    def max_new_tokens(self) -> int:
        """Length guard for the decoder; near it the engine closes the piece cleanly."""
        return 8192

    def total_bars(self) -> int | None:
        """Bars the task will generate (for progress bars), if known."""
        return None

    def ranks_candidates(self) -> bool:
        """True when `candidate_score` can tell candidates apart for this request (else `run_task` decodes one)."""
        return False

    def candidate_score(self, ctx: TaskContext, score) -> float:
        """How well a finished score meets the task's asks: higher is better."""
        return 0.0

    def candidate_meets(self, fit: float) -> bool:
        """Whether a candidate of this fit already meets the asks (then no further batch of candidates is drawn)."""
        return False


CANDIDATE_BATCH = 4  # rows decoded together when reranking; further batches only while no candidate meets the ask


def run_task(task: Task, ctx: TaskContext, sampling: SamplingConfig | None = None, seed: int = 0,
             on_step: Callable[[Step], None] | None = None, candidates: int = 1):
    """Build, decode (streaming, calling `on_step` after each token), finish -> symusic.Score.

    `candidates` > 1, for a task with a criterion: decode up to that many samples in batches of CANDIDATE_BATCH
    rows, starting another batch only while no candidate so far `candidate_meets` the ask, and return the one with
    the best `candidate_score` (the first on ties). Deterministic for a given seed and candidate count.
    """
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    req = task.build(ctx)
    total = candidates if candidates > 1 and task.ranks_candidates() else 1
    prompt = np.asarray(req.prompt, np.int64)
    if total == 1:
        return task.finish(ctx, prompt, _decode(task, ctx, [req], sampling, seed, on_step)[0])
    template = req.state  # each row needs its own copy of a pre-advanced grammar state; the Grammar stays shared

    def fresh() -> Request:
        return replace(req, state=None if template is None else copy.deepcopy(template, {id(template.g): template.g}))

    best, best_fit, done, batch = None, -np.inf, 0, 0
    while done < total and (best is None or not task.candidate_meets(best_fit)):
        n = min(CANDIDATE_BATCH, total - done)
        batch_seed = seed + 7919 * batch  # batch 0 uses the seed itself
        for ids in _decode(task, ctx, [fresh() for _ in range(n)], sampling, batch_seed, on_step):
            score = task.finish(ctx, prompt, ids)
            fit = float(task.candidate_score(ctx, score))
            if fit > best_fit:
                best, best_fit = score, fit
        done, batch = done + n, batch + 1
    return best


def _decode(task: Task, ctx: TaskContext, reqs: list[Request], sampling: SamplingConfig | None, seed: int,
            on_step: Callable[[Step], None] | None) -> list[np.ndarray]:
    """Generated ids per request (PAD dropped)."""
    generated: list[list[int]] = [[] for _ in reqs]
    pad = ctx.tok.vocab.pad
    for step in ctx.engine.stream(reqs, sampling, seed=seed, max_new_tokens=task.max_new_tokens()):
        for row, t in enumerate(step.tokens.tolist()):
            if t != pad:
                generated[row].append(t)
        if on_step is not None:
            on_step(step)
    return [np.asarray(g, np.int64) for g in generated]
