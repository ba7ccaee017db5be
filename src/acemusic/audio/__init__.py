"""Audio: rendering symbolic music to WAV (`render`). No heavy imports here; FluidSynth runs as a subprocess."""

from acemusic.audio.render import find_soundfont, render

__all__ = ["find_soundfont", "render"]
