"""The Task protocol: a task builds the prompt and the constraints, the engine decodes, the task finishes the Score.

Every task (compose, continue, infill, harmonize, ...) is one class with two hooks, so all of them share the same
decoding loop, seeding, progress reporting and guidance:

    class MyTask(Task):
        def build(self, ctx: TaskContext) -> Request: ...        # prompt tokens, Controls, text embedding
        def finish(self, ctx: TaskContext, prompt, generated) -> symusic.Score: ...

    score = run_task(MyTask(...), ctx, SamplingConfig(...), seed=0, on_step=callback)

A task may also say how well a finished score meets its asks (`candidate_score`, e.g. the key fit of compose): then
`run_task(..., candidates=N)` decodes N samples as rows of one batch and keeps the best (best-of-N reranking; the
rows share each decode step's weight reads, so N=4 costs far less than 4 runs on CPU).
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


def run_task(task: Task, ctx: TaskContext, sampling: SamplingConfig | None = None, seed: int = 0,
             on_step: Callable[[Step], None] | None = None, candidates: int = 1):
    """Build, decode (streaming, calling `on_step` after each token), finish -> symusic.Score.

    `candidates` > 1: decode that many samples in one batch and return the one with the best `candidate_score`
    (the first on ties), when the task has a criterion. Deterministic for a given seed and candidate count.
    """
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    req = task.build(ctx)
    n = candidates if candidates > 1 and task.ranks_candidates() else 1
    # Each row needs its own grammar state; the Grammar tables inside stay shared.
    def fresh(r: Request) -> Request:
        return replace(r, state=None if r.state is None else copy.deepcopy(r.state, {id(r.state.g): r.state.g}))

    reqs = [req] + [fresh(req) for _ in range(n - 1)]
    generated: list[list[int]] = [[] for _ in reqs]
    pad = ctx.tok.vocab.pad
    for step in ctx.engine.stream(reqs, sampling, seed=seed, max_new_tokens=task.max_new_tokens()):
        for row, t in enumerate(step.tokens.tolist()):
            if t != pad:
                generated[row].append(t)
        if on_step is not None:
            on_step(step)
    prompt = np.asarray(req.prompt, np.int64)
    scores = [task.finish(ctx, prompt, np.asarray(g, np.int64)) for g in generated]
    if n == 1:
        return scores[0]
    fits = np.asarray([task.candidate_score(ctx, s) for s in scores], np.float64)
    return scores[int(np.argmax(fits))]  # argmax: the first of equals

