"""`acemusic transcribe`: audio -> MIDI with basic-pitch (its bundled ONNX model; see acemusic.audio.transcribe).

    acemusic transcribe take.wav -o take.mid [--preset basic-pitch|piano|woodwinds|strings] [--onset-threshold 0.5]
                        [--frame-threshold 0.3] [--min-note-ms 128] [--program 0] [--max-seconds 1800] [--force]

Any sample rate or channel count (resampled to 22.05 kHz mono); clipped input is transcribed with a warning;
silent, empty, non-audio and over-long files end with a one-line error.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, check_writable, fail
from acemusic.errors import AcemusicError


@app.command("transcribe")
def transcribe_cmd(
    audio: Annotated[Path, typer.Argument(help="Audio file (WAV, FLAC, OGG, MP3, ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="MIDI file to write.")],
    preset: Annotated[str, typer.Option(help="Decoding thresholds: basic-pitch (its defaults), or tuned on renders "
                                             "for piano, woodwinds, strings (also choir).")] = "basic-pitch",
    onset_threshold: Annotated[float | None, typer.Option(help="Onset activation to start a note (0..1); "
                                                              "overrides the preset.")] = None,
    frame_threshold: Annotated[float | None, typer.Option(help="Frame activation to sustain a note (0..1); "
                                                              "overrides the preset.")] = None,
    min_note_ms: Annotated[float | None, typer.Option(help="Shortest note kept (ms); overrides the preset.")] = None,
    program: Annotated[int, typer.Option(help="GM program of the output track (0 = piano).")] = 0,
    max_seconds: Annotated[float, typer.Option(help="Refuse audio longer than this (seconds).")] = 1800.0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output if it exists.")] = False,
) -> None:
    """Transcribe audio to MIDI (basic-pitch, offline)."""
    from acemusic.audio.io import load_audio
    from acemusic.audio.transcribe import SR, preset_config, transcribe

    t0 = time.perf_counter()
    try:
        cfg = preset_config(preset, onset_threshold=onset_threshold, frame_threshold=frame_threshold,
                            min_note_ms=min_note_ms, program=program, max_seconds=max_seconds)
        cfg.check()
        if max_seconds <= 0:
            raise AcemusicError(f"--max-seconds must be > 0, got {max_seconds}")
        check_writable(out, force)
        clip = load_audio(audio, sr=SR, max_seconds=max_seconds)
        result = transcribe(clip, cfg)  # silent audio raises here: no warnings before that error
        for w in clip.warnings:
            typer.echo(f"warning: {audio}: {w}", err=True)
        result.score.dump_midi(str(out))
    except AcemusicError as e:
        fail(str(e))
    typer.echo(f"wrote {out}: {len(result.notes)} notes from {clip.seconds:.1f} s of audio "
               f"({clip.source_sr} Hz, {clip.source_channels} ch), {time.perf_counter() - t0:.1f} s")
