"""The console-script entry `acemusic.cli.main`: every failure is one line on stderr and a non-zero exit.

Run: `.venv/bin/python -m pytest tests/test_cli_main.py -q`.
"""

from __future__ import annotations

import pytest

import acemusic.cli as cli
from acemusic.errors import InputError


def _raising(exc: BaseException):
    def app() -> None:
        raise exc

    return app


@pytest.mark.parametrize("exc,code,text", [(InputError("x.mid", "not a MIDI file"), 1, "error: x.mid: not a MIDI file"),
                                           (RuntimeError("boom"), 1, "error: internal error (RuntimeError: boom)"),
                                           (KeyboardInterrupt(), 130, "interrupted")])
def test_failures_are_one_line(monkeypatch, capsys, exc, code, text):
    monkeypatch.delenv("ACEMUSIC_DEBUG", raising=False)
    monkeypatch.setattr(cli, "app", _raising(exc))
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == code
    err = capsys.readouterr().err
    assert err.startswith(text) and err.count("\n") == 1 and "Traceback" not in err


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("ACEMUSIC_DEBUG", "1")
    monkeypatch.setattr(cli, "app", _raising(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        cli.main()
