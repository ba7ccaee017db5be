"""`acemusic.generate.tasks` exports every task class, the non-compose ones lazily."""

from __future__ import annotations

import pytest


def test_every_task_is_exported():
    import acemusic.generate.tasks as tasks
    from acemusic.generate.tasks.base import Task

    for name in tasks.__all__:
        obj = getattr(tasks, name)
        assert obj.__name__ == name
        if name.endswith("Task") and name != "Task":
            assert issubclass(obj, Task)
    with pytest.raises(AttributeError):
        tasks.NoSuchTask  # noqa: B018
