"""harmonize: the melody stays the top voice exactly; chorale voices in range; the rule-based baseline; the CLI.

Run: `.venv/bin/python -m pytest tests/generate/test_harmonize.py -q`.
"""

from __future__ import annotations

import numpy as np
import pytest
import symusic
from typer.testing import CliRunner

import acemusic.cli.harmonize  # noqa: F401  registers the command
from acemusic.api import Bundle, load
from acemusic.cli.app import app
from acemusic.errors import InputError
from acemusic.eval.voice_leading import SATB_RANGES, analyze, satb_voices, voice_arrays
from acemusic.generate.tasks.given import sub_score
from acemusic.generate.tasks.harmonize import (
    HarmonizeTask,
    chorale_voices,
    melody_key,
    pick_melody,
    rule_based_chorale,
)

from .conftest import FIXTURES

BACH = FIXTURES / "bach_bwv66_6.mid"


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint) -> Bundle:
    return load(tiny_checkpoint, text=False)


@pytest.fixture(scope="module")
def melody(tok) -> symusic.Score:
    """The soprano of BWV 66.6 alone, as a user's melody file would be."""
    return sub_score(tok._grid(tok.load_score(BACH)), [0])


def same_notes(a, b) -> bool:
    x, y = a.notes.numpy(), b.notes.numpy()
    return all(np.array_equal(x[f], y[f]) for f in ("time", "duration", "pitch", "velocity"))


def test_chorale_keeps_the_melody_on_top_and_writes_three_voices_in_range(bundle, melody):
    out = bundle.harmonize(melody, style="chorale", seed=0)
    assert [t.name for t in out.tracks][1:] == ["Alto", "Tenor", "Bass"]
    assert same_notes(out.tracks[0], melody.tracks[0])  # the melody, exactly
    voices = satb_voices(out)
    assert np.array_equal(voices[0], voice_arrays(melody.tracks[0]))  # ... and it is the top voice
    r = analyze(voices)
    assert r["range_violations"] == 0 and r["crossings"] == 0
    for v in voices[1:]:
        assert len(v) == melody.note_num()  # a chord under every melody note
    onsets = {int(n.time): int(n.pitch) for n in melody.tracks[0].notes}
    for v, (lo, hi) in zip(voices[1:], SATB_RANGES[1:], strict=True):
        assert all(lo <= p <= hi and p < onsets[o] for o, _, p in v.tolist())


def test_chords_stay_under_the_melody_and_lookahead_keeps_it_too(bundle, tok, melody):
    task = HarmonizeTask(tok, melody, 0, "chords", lookahead=2)
    from acemusic.generate.sampling import SamplingConfig

    out = task.run(bundle.ctx, SamplingConfig(), seed=0)
    assert same_notes(out.tracks[0], melody.tracks[0])
    mel = voice_arrays(melody.tracks[0])
    for n in out.tracks[1].notes:
        sounding = mel[(mel[:, 0] <= n.time) & (n.time < mel[:, 1]), 2]
        if len(sounding):
            assert n.pitch < sounding.max()
    assert out.tracks[1].program == 0 and out.tracks[1].note_num() > 0
    given = [n for n in task.last_state.played if n.given]
    assert len(given) == melody.note_num()


def test_same_seed_same_harmony(bundle, melody):
    a = bundle.harmonize(melody, seed=3)
    b = bundle.harmonize(melody, seed=3)
    assert all(same_notes(x, y) for x, y in zip(a.tracks, b.tracks, strict=True))


def test_melody_choice_on_multi_track_files(tok):
    score = tok.load_score(BACH)
    assert pick_melody(score)[0] == 0 and "highest of 4" in pick_melody(score)[1]
    assert pick_melody(score, 3)[0] == 3
    with pytest.raises(InputError, match="track 9"):
        pick_melody(score, 9)
    drums = symusic.Score(12)
    tr = symusic.Track("d", 0, True)
    tr.notes.append(symusic.Note(0, 12, 36, 90))
    drums.tracks.append(tr)
    with pytest.raises(InputError, match="no pitched notes"):
        pick_melody(drums)


def test_rule_based_baseline_voices_every_melody_note(tok, melody):
    mel = voice_arrays(melody.tracks[0])
    key, mode = melody_key(melody, [0])
    assert (key, mode) in ((6, "minor"), (9, "major"))  # BWV 66.6: F-sharp minor (its relative major is close)
    voices = rule_based_chorale(mel, key, mode)
    assert np.array_equal(voices[0], mel)
    r = analyze(voices)
    assert r["crossings"] == 0 and r["range_violations"] == 0
    assert all(len(v) == len(mel) for v in voices)
    assert r["parallel_fifths"] + r["parallel_octaves"] == 0  # the penalty avoids them on this melody


def test_chorale_voices_come_from_played_notes(bundle, tok, melody):
    from acemusic.generate.sampling import SamplingConfig

    task = HarmonizeTask(tok, melody, 0, "chorale")
    out = task.run(bundle.ctx, SamplingConfig(), seed=1)
    v = chorale_voices(task.last_state.played)
    assert all(np.array_equal(a, b) for a, b in zip(v, satb_voices(out), strict=True))


def test_cli_writes_and_reports(tiny_checkpoint, tmp_path, melody):
    src = tmp_path / "melody.mid"
    melody.dump_midi(str(src))
    out = tmp_path / "h.mid"
    r = CliRunner().invoke(app, ["harmonize", str(src), "-o", str(out), "--checkpoint", str(tiny_checkpoint)])
    assert r.exit_code == 0, r.output
    assert out.exists() and "parallel fifths" in r.output and "melody = track 0" in r.output
    r = CliRunner().invoke(app, ["harmonize", str(src), "-o", str(out), "--checkpoint", str(tiny_checkpoint)])
    assert r.exit_code == 1 and "--force" in r.output


@pytest.mark.parametrize("args,msg", [
    (["{fx}/empty.mid"], "empty file"),
    (["{fx}/corrupt.mid"], "corrupt MIDI"),
    (["{fx}/not_midi.mid"], "not a MIDI file"),
    (["{fx}/no_notes.mid"], "no notes"),
    (["{fx}/bach_bwv66_6.mid", "--track", "7"], "--track"),
    (["{fx}/bach_bwv66_6.mid", "--style", "jazz"], "--style"),
    (["{fx}/bach_bwv66_6.mid", "--lookahead", "0"], "--lookahead"),
    (["{fx}/bach_bwv66_6.mid", "--style", "chords", "--instrument", "kazoo"], "unknown instrument"),
])
def test_cli_bad_input_is_one_line_exit_1(tiny_checkpoint, tmp_path, args, msg):
    argv = ["harmonize", *(a.format(fx=FIXTURES) for a in args), "-o", str(tmp_path / "o.mid"),
            "--checkpoint", str(tiny_checkpoint)]
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o.mid").exists()


@pytest.mark.slow
def test_shipped_model_harmonizes_a_chorale(melody):
    bundle = load(text=False)
    out = bundle.harmonize(melody, cfg=1.0, seed=0)
    assert same_notes(out.tracks[0], melody.tracks[0])
    r = analyze(satb_voices(out))
    assert r["range_violations"] == 0 and r["crossings"] == 0 and r["notes"] == 4 * melody.note_num()
