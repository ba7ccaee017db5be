"""Tasks: each builds the prompt and constraints for the shared decoder behind one protocol (`base.Task`).

    compose.ComposeTask            text prompt -> new piece of N bars
    continuation.ContinueTask      a piece -> the same piece and N more bars
    infill.InfillTask              regenerate a bar span from both sides (fill in the middle)
    interpolate.BridgeTask         a bridge from piece A to piece B
    harmonize.HarmonizeTask        a melody kept exactly, voices or chords added under it
    accompany.AccompanyTask        given tracks kept exactly, new instruments added
    restyle.RestyleTask            the melodic/rhythmic skeleton kept, texture regenerated
    track_infill.TrackInfillTask   one track regenerated, every other kept

Only `base` and `compose` are imported eagerly (the main command's cold start); the others load on first use.
"""

from importlib import import_module

from acemusic.generate.tasks.base import Task, TaskContext, run_task
from acemusic.generate.tasks.compose import ComposeTask

_LAZY = {"ContinueTask": "continuation", "InfillTask": "infill", "BridgeTask": "interpolate",
         "HarmonizeTask": "harmonize", "AccompanyTask": "accompany", "RestyleTask": "restyle",
         "TrackInfillTask": "track_infill"}

__all__ = ["ComposeTask", "Task", "TaskContext", "run_task", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"acemusic.generate.tasks.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
