"""Command-line entry point. Each command lives in a small module that registers itself on `app`.

Command modules import heavy libraries (torch, music21) inside their functions so `acemusic --help` stays fast.
"""

from __future__ import annotations

import os
import sys

from acemusic.cli.app import app
from acemusic.errors import AcemusicError

# Importing registers the commands.
from acemusic.cli import align as _align  # noqa: F401  isort: skip
from acemusic.cli import codec as _codec  # noqa: F401  isort: skip
from acemusic.cli import compose as _compose  # noqa: F401  isort: skip
from acemusic.cli import continue_ as _continue  # noqa: F401  isort: skip
from acemusic.cli import infill as _infill  # noqa: F401  isort: skip
from acemusic.cli import interpolate as _interpolate  # noqa: F401  isort: skip
from acemusic.cli import vary as _vary  # noqa: F401  isort: skip
from acemusic.cli import harmonize as _harmonize  # noqa: F401  isort: skip
from acemusic.cli import accompany as _accompany  # noqa: F401  isort: skip
from acemusic.cli import restyle as _restyle  # noqa: F401  isort: skip
from acemusic.cli import data as _data  # noqa: F401  isort: skip
from acemusic.cli import eval as _eval  # noqa: F401  isort: skip
from acemusic.cli import eval_adherence as _eval_adherence  # noqa: F401  isort: skip
from acemusic.cli import eval_lstm as _eval_lstm  # noqa: F401  isort: skip
from acemusic.cli import eval_report as _eval_report  # noqa: F401  isort: skip
from acemusic.cli import fad as _fad  # noqa: F401  isort: skip
from acemusic.cli import render as _render  # noqa: F401  isort: skip
from acemusic.cli import train as _train  # noqa: F401  isort: skip
from acemusic.cli import transcribe as _transcribe  # noqa: F401  isort: skip


def main() -> None:
    """Console-script entry: library errors become one-line messages with exit code 1. Anything else is a bug: it
    is reported in one line too (exit 1) unless ACEMUSIC_DEBUG=1 asks for the traceback."""
    try:
        app()
    except AcemusicError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        if os.environ.get("ACEMUSIC_DEBUG"):
            raise
        print(f"error: internal error ({type(e).__name__}: {e}); please report it (ACEMUSIC_DEBUG=1 shows the "
              "traceback)", file=sys.stderr)
        sys.exit(1)


__all__ = ["app", "main"]
