"""Tasks: each builds the prompt and constraints for the shared decoder behind one protocol (`base.Task`).

    compose.ComposeTask   text prompt -> new piece of N bars
"""

from acemusic.generate.tasks.base import Task, TaskContext, run_task
from acemusic.generate.tasks.compose import ComposeTask

__all__ = ["ComposeTask", "Task", "TaskContext", "run_task"]
