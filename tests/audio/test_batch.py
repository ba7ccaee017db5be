"""Batch rendering: parallel FluidSynth workers, content-hash cache, resume, failures recorded, excerpts and
program override, dataset-split input and `acemusic data render`.

Run: `.venv/bin/python -m pytest tests/audio/test_batch.py -q`. Needs fluidsynth and a GM SoundFont (skipped
otherwise); ~10 s on 2 cores (a few 3 s excerpts at 16 kHz).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from symusic import Score
from typer.testing import CliRunner

import acemusic.cli.render  # noqa: F401  registers the commands
from acemusic.audio.batch import BatchConfig, dataset_items, midi_folder_items, read_manifest, render_batch
from acemusic.audio.render import find_soundfont
from acemusic.cli.app import app
from acemusic.errors import InputError

sf = pytest.importorskip("soundfile")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "midi"


def _has_renderer() -> bool:
    try:
        find_soundfont()
    except InputError:
        return False
    return shutil.which("fluidsynth") is not None


needs_renderer = pytest.mark.skipif(not _has_renderer(), reason="fluidsynth or a GM SoundFont is not installed")


@needs_renderer
def test_folder_batch_caches_resumes_and_records_failures(tmp_path):
    items = list(midi_folder_items(FIXTURES))
    keys = [k for k, _ in items]
    assert "nested/copy_of_bach.mid" in keys and "corrupt.mid" in keys
    cfg = BatchConfig(sr=16000, seconds=4.0, program=0)
    res = render_batch(items, tmp_path / "out", cfg, workers=2, progress=False)
    rows = {r["key"]: r for r in res.rows}
    for bad in ("corrupt.mid", "empty.mid", "not_midi.mid", "no_notes.mid"):
        assert rows[bad]["status"] == "failed" and rows[bad]["reason"]
    good = [r for r in res.rows if r["status"] != "failed"]
    assert len(good) == 4
    # The nested copy is the same music: one hash, one render shared.
    assert rows["nested/copy_of_bach.mid"]["hash"] == rows["bach_bwv66_6.mid"]["hash"]
    assert res.rendered == 3 and res.cached == 1 and res.failed == 4
    for r in good:
        audio, sr = sf.read(str(tmp_path / "out" / r["wav"]))
        assert sr == 16000 and 4.0 <= len(audio) / sr <= 4.0 + 5.0 and abs(audio).max() > 0.01
        mid = Score(str(tmp_path / "out" / r["mid"]))  # the excerpt that was rendered, re-voiced to piano
        assert max(t.notes[-1].time for t in mid.to("second").tracks) < 4.0  # onsets before the cut
        assert all(t.program == 0 for t in mid.tracks if not t.is_drum) and len(mid.tempos) >= 1
        assert any(t.is_drum for t in mid.tracks) == (r["key"] == "band.mid")  # drums stay drums
    assert [r["key"] for r in read_manifest(tmp_path / "out")] == keys
    # A rerun renders nothing; an interrupted one (a missing WAV) renders only what is missing.
    first = rows["band.mid"]
    (tmp_path / "out" / first["wav"]).unlink()
    again = render_batch(items, tmp_path / "out", cfg, workers=2, progress=False)
    assert again.rendered == 1 and again.cached == 3
    assert render_batch(items, tmp_path / "out", cfg, progress=False).rendered == 0
    # Any change to what the audio depends on is a different file.
    other = render_batch(items[:1], tmp_path / "out", BatchConfig(sr=22050, seconds=4.0, program=0), progress=False)
    assert other.rows[0]["hash"] != rows[items[0][0]]["hash"] and other.rendered == 1


@needs_renderer
def test_dataset_split_items_and_cli(tmp_path):
    from acemusic.data.shards import ShardWriter
    from acemusic.tokenizer import Tokenizer

    tok = Tokenizer()
    root = tmp_path / "data"
    w = ShardWriter(root, "test")
    for i, name in enumerate(("bach_bwv66_6.mid", "band.mid")):
        w.add(tok.encode_body(tok.load_score(FIXTURES / name)), {"id": f"piece{i}", "polyphony": "polyphonic"})
    w.close()
    tok.vocab.save(root / "vocab.json")
    items = dataset_items(root, "test")
    assert [k for k, _ in items] == ["piece0", "piece1"] and items[0][1].note_num() > 100
    assert [k for k, _ in dataset_items(root, "test", select=lambda m: m["id"] == "piece1")] == ["piece1"]
    runner = CliRunner()
    out = tmp_path / "renders"
    r = runner.invoke(app, ["data", "render", "--data", str(root), "--split", "test", "--out", str(out),
                            "--seconds", "2", "--sr", "16000", "--limit", "1"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["key"] == "piece0" and (out / rows[0]["wav"]).is_file()
    for args, msg in ((["--out", str(out)], "exactly one of"),
                      (["--out", str(out), "--midi-dir", str(tmp_path / "nope")], "no such folder"),
                      (["--out", str(out), "--data", str(root), "--sr", "100"], "sample rate"),
                      (["--out", str(out), "--data", str(tmp_path)], "missing")):
        r = runner.invoke(app, ["data", "render", *args])
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output, r.output


def test_tick_at_follows_the_tempo_map():
    from symusic import Tempo

    from acemusic.audio.batch import tick_at

    s = Score(12)
    assert tick_at(s, 1.0) == 24  # no tempo: 120 bpm, 2 quarters a second
    s.tempos.append(Tempo(0, qpm=96.0))
    assert tick_at(s, 10.0) == 192  # 16 quarters
    s.tempos.append(Tempo(120, qpm=48.0))  # after 6.25 s, half as fast
    assert tick_at(s, 6.0) == 116 and tick_at(s, 10.0) == 156
