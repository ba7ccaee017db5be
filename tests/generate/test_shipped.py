"""The shipped checkpoint: compose end to end, prompt adherence on the evaluation prompts, and cold start.

Slow (loads the real model): `.venv/bin/python -m pytest tests/generate/test_shipped.py -q -m slow`.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from acemusic.api import default_checkpoint, load
from acemusic.eval.adherence import evaluate, load_prompts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle():
    path = default_checkpoint()
    assert (path / "config.json").is_file(), f"no shipped checkpoint at {path}"
    return load(path)


def test_compose_shipped(bundle):
    for prompt, bars in (("melancholic piano, slow, D minor", 16), ("joyful 3/4 flute tune in G major", 8)):
        a = bundle.compose(prompt, bars=bars, seed=0)
        assert a.note_num() > 0
        assert a == bundle.compose(prompt, bars=bars, seed=0)
        assert len(a.time_signatures) == 1  # the meter holds even when the prompt names none
        ts = a.time_signatures[0]
        bar_ticks = ts.numerator * 48 // ts.denominator
        assert (bars - 1) * bar_ticks < a.end() <= bars * bar_ticks


def test_adherence_shipped(bundle):
    """Hard asks (instrument, tempo, meter) are enforced by the constraints; key and mode come from the model's
    conditioning, a soft in-key bias and best-of-N reranking by key fit (the default: up to 8)."""
    report = evaluate(bundle, seed=0, bars=8, prompts=load_prompts()[:12])
    f = report["fields"]
    assert f["program"]["share"] == 1.0 and f["tempo"]["share"] == 1.0 and f["meter"]["share"] == 1.0
    assert f["mode"]["share"] >= 0.6 and f["key"]["share"] >= 0.5, f


def test_cold_start_cli(tmp_path):
    """A fresh process from `acemusic compose` to a written MIDI file (16 bars); the time is reported in the
    README (`time acemusic compose ...`), not asserted here."""
    out = tmp_path / "song.mid"
    r = subprocess.run([sys.executable, "-c", "from acemusic.cli import main; main()", "compose",
                        "melancholic piano, slow, D minor", "-o", str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.is_file() and "16 bars" in r.stdout


def test_default_is_mini(bundle):
    """The default checkpoint is the 4M acemusic-mini (unless $ACEMUSIC_CHECKPOINT names another)."""
    assert bundle.path.name == "acemusic-mini" or "ACEMUSIC_CHECKPOINT" in os.environ
    assert sum(p.numel() for p in bundle.model.parameters()) < 5e6


def test_small_checkpoint_composes():
    """The second shipped checkpoint (16M, four times the size, same vocabulary) composes through the same API."""
    path = default_checkpoint().parent / "acemusic-small"
    assert (path / "config.json").is_file(), f"no small checkpoint at {path}"
    small = load(path)
    assert sum(p.numel() for p in small.model.parameters()) > 15e6
    a = small.compose("joyful 3/4 flute tune in G major", bars=8, seed=0)
    assert a.note_num() > 0 and a == small.compose("joyful 3/4 flute tune in G major", bars=8, seed=0)
    assert len(a.time_signatures) == 1 and (a.time_signatures[0].numerator, a.time_signatures[0].denominator) == (3, 4)
