"""The Task protocol: a task builds the prompt and the constraints, the engine decodes, the task finishes the Score.

Every task (compose, continue, infill, harmonize, ...) is one class with two hooks, so all of them share the same
decoding loop, seeding, progress reporting and guidance:

    class MyTask(Task):
        def build(self, ctx: TaskContext) -> Request: ...        # prompt tokens, Controls, text embedding
        def finish(self, ctx: TaskContext, prompt, generated) -> symusic.Score: ...

    score = run_task(MyTask(...), ctx, SamplingConfig(...), seed=0, on_step=callback)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

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


def run_task(task: Task, ctx: TaskContext, sampling: SamplingConfig | None = None, seed: int = 0,
             on_step: Callable[[Step], None] | None = None):
    """Build, decode (streaming, calling `on_step` after each token), finish -> symusic.Score."""
    req = task.build(ctx)
    generated: list[int] = []
    pad = ctx.tok.vocab.pad
    for step in ctx.engine.stream([req], sampling, seed=seed, max_new_tokens=task.max_new_tokens()):
        t = int(step.tokens[0])
        if t != pad:
            generated.append(t)
        if on_step is not None:
            on_step(step)
    return task.finish(ctx, np.asarray(req.prompt, np.int64), np.asarray(generated, np.int64))
