"""Typer options shared by the generating commands (compose and the editing tasks), declared once.

    def cmd(..., temperature: Temperature = 1.0, top_p: TopP = 0.95, cfg: Cfg = 1.5, seed: Seed = 0,
            checkpoint: Checkpoint = None, soundfont: SoundFont = None, force: Force = False): ...

Defaults stay at the call sites (typer reads them from the signature), so a command can pick its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Temperature = Annotated[float, typer.Option("--temperature", help="Sampling temperature (0 = greedy).")]
TopP = Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass.")]
Cfg = Annotated[float, typer.Option("--cfg", help="Classifier-free guidance scale (1 = off).")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed: same seed, same music.")]
Checkpoint = Annotated[Path | None, typer.Option("--checkpoint", help="Checkpoint dir (default: shipped).")]
SoundFont = Annotated[Path | None, typer.Option("--soundfont", help="SoundFont for --wav.")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]
Wav = Annotated[Path | None, typer.Option("--wav", help="Also render a WAV here (FluidSynth).")]
Threads = Annotated[str, typer.Option("--threads", help="Decode threads: 'auto' (the idle cores where that "
                                                        "cannot change the output), or a number for everything, "
                                                        "torch included (then a seed's output may depend on it).")]


def parse_threads(value: str) -> int | str:
    """--threads: a positive int or 'auto' (Engine.decode_threads)."""
    from acemusic.errors import InputError

    if value.strip().lower() == "auto":
        return "auto"
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= 256:
        raise InputError("--threads", f"must be a number of threads (1-256) or 'auto', got {value!r}")
    return n


__all__ = ["Cfg", "Checkpoint", "Force", "Seed", "SoundFont", "Temperature", "Threads", "TopP", "Wav",
           "parse_threads"]
