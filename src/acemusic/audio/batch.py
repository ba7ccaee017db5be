"""Render many scores to WAV in parallel, cached by content hash, resumable: corpus audio for training and tests.

    items = dataset_items("data/m21", "test", limit=40)            # [(key, Score)] decoded from token shards
    items = midi_folder_items("my_midis/")                         # or any MIDI folder (recursive)
    result = render_batch(items, "renders/test", BatchConfig(sr=22050, seconds=30, program=0), workers=2)
    for row in result.rows: row["key"], row["wav"], row["mid"], row["status"]   # also renders/test/manifest.jsonl

Each item becomes `OUT/wav/<h[:2]>/<h>.wav` plus the exact MIDI that was rendered, `OUT/mid/<h[:2]>/<h>.mid`
(the excerpt, with the program override applied: the reference a transcription or an aligner is scored against).
`h` is a SHA-1 of those MIDI bytes and every setting that changes the audio (sample rate, SoundFont identity, gain,
normalisation, render version), so a rerun renders only what is missing or changed, two keys with identical music
share one file, and an interrupted run resumes (WAVs are written to `.part` and renamed when complete).
Workers are processes (`spawn`: safe next to torch threads); each calls FluidSynth through `audio.render`.
A failing item (corrupt MIDI, FluidSynth error) is recorded with its reason and never stops the batch.
`OUT/manifest.jsonl` lists every item of the last run in input order. Test: `pytest tests/audio/test_batch.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from acemusic.errors import InputError
from acemusic.jsonl import read_jsonl

RENDER_VERSION = 1  # bump when render.py changes what it writes, to invalidate caches
MANIFEST = "manifest.jsonl"
MIDI_EXTENSIONS = (".mid", ".midi")


@dataclass(frozen=True)
class BatchConfig:
    """What every item is rendered with. `seconds` cuts each score to an excerpt from its start (notes crossing
    the cut keep their length, in the MIDI and the audio alike); `program` re-voices every melodic track (0 =
    piano), drums stay drums."""

    sr: int = 22050
    seconds: float | None = None
    program: int | None = None
    soundfont: str | None = None
    gain: float | None = None
    normalize: bool = True

    def check(self) -> None:
        if not 8000 <= self.sr <= 192000:
            raise InputError("--sr", f"sample rate must be 8000..192000, got {self.sr}")
        if self.seconds is not None and not 0 < self.seconds <= 3600:
            raise InputError("--seconds", f"must be in (0, 3600], got {self.seconds}")
        if self.program is not None and not 0 <= self.program <= 127:
            raise InputError("--program", f"must be a GM program 0..127, got {self.program}")


@dataclass
class BatchResult:
    rows: list[dict]
    rendered: int
    cached: int
    failed: int
    out: Path

    def ok(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "failed"]


# ---- items -------------------------------------------------------------------------------------------------------
def midi_folder_items(folder: str | Path) -> Iterator[tuple[str, Path]]:
    """(relative path, path) of every .mid/.midi under `folder`, sorted."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(d, "no such folder")
    for p in sorted(d.rglob("*")):
        if p.is_file() and p.suffix.lower() in MIDI_EXTENSIONS:
            yield str(p.relative_to(d)), p


def dataset_items(data_dir: str | Path, split: str = "test", limit: int | None = None,
                  select: Callable[[dict], bool] | None = None) -> list[tuple[str, object]]:
    """(piece id, Score) for pieces of a built dataset split (token shards decoded), in split order;
    `select(meta)` filters, `limit` caps the count."""
    from acemusic.data.shards import TokenDataset
    from acemusic.tokenizer import Tokenizer

    ds = TokenDataset(data_dir, split)
    tok = Tokenizer(ds.vocab.config)
    out = []
    for i, meta in enumerate(ds.metas()):
        if select is not None and not select(meta):
            continue
        out.append((str(meta["id"]), tok.decode(ds.piece(i))))
        if limit is not None and len(out) >= limit:
            break
    return out


def prepare(source, cfg: BatchConfig) -> bytes:
    """The MIDI bytes to render for `source` (a Score or a MIDI path): excerpted and re-voiced per `cfg`."""
    import symusic

    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.is_file():
            raise InputError(p, "no such MIDI file")
        try:
            score = symusic.Score(str(p))
        except Exception as e:  # symusic raises RuntimeError/ValueError variants on corrupt files
            raise InputError(p, f"not a readable MIDI file ({str(e).splitlines()[0][:100]})") from None
    else:
        score = source.copy()
    if cfg.program is not None:
        for tr in score.tracks:
            if not tr.is_drum:
                tr.program = int(cfg.program)
    if cfg.seconds is not None:  # clip in ticks so tempo and meter events survive (a seconds-domain clip drops them)
        score = score.clip(0, tick_at(score, float(cfg.seconds)), clip_end=False)
    if score.note_num() == 0:
        raise InputError(str(source) if isinstance(source, (str, Path)) else "score", "no notes to render")
    return score.dumps_midi()


def tick_at(score, seconds: float) -> int:
    """The first tick at or after `seconds` under the score's tempo map (120 bpm when it has none)."""
    tempos = sorted((int(t.time), float(t.mspq)) for t in score.tempos) or [(0, 500000.0)]
    if tempos[0][0] > 0:
        tempos.insert(0, (0, 500000.0))
    elapsed, tpq = 0.0, score.tpq
    for (t0, mspq), nxt in zip(tempos, [*tempos[1:], None], strict=True):
        span = None if nxt is None else (nxt[0] - t0) * mspq / 1e6 / tpq
        if span is None or elapsed + span >= seconds:
            return t0 + int(np.ceil((seconds - elapsed) * 1e6 * tpq / mspq - 1e-9))
        elapsed += span
    raise AssertionError("unreachable")


def _soundfont_id(cfg: BatchConfig) -> str:
    from acemusic.audio.render import find_soundfont

    sf2 = find_soundfont(cfg.soundfont)
    st = sf2.stat()
    return f"{sf2.resolve()}:{st.st_size}:{int(st.st_mtime)}"


def content_hash(midi: bytes, cfg: BatchConfig, soundfont_id: str) -> str:
    h = hashlib.sha1(midi)
    h.update(json.dumps({"v": RENDER_VERSION, "sr": cfg.sr, "gain": cfg.gain, "norm": cfg.normalize,
                         "sf": soundfont_id}, sort_keys=True).encode())
    return h.hexdigest()


# ---- rendering ---------------------------------------------------------------------------------------------------
def _render_one(midi: bytes, mid_path: str, wav_path: str, cfg: dict) -> float:
    """Worker: write the MIDI, render it to `<wav>.part`, rename. Returns the audio length in seconds."""
    import soundfile as sf

    from acemusic.audio.render import DEFAULT_GAIN, render

    mid, wav = Path(mid_path), Path(wav_path)
    mid.parent.mkdir(parents=True, exist_ok=True)
    wav.parent.mkdir(parents=True, exist_ok=True)
    tmp_mid = mid.with_suffix(".mid.part")
    tmp_mid.write_bytes(midi)
    os.replace(tmp_mid, mid)
    part = wav.with_suffix(".wav.part")
    render(mid, part, sr=cfg["sr"], soundfont=cfg["soundfont"],
           gain=DEFAULT_GAIN if cfg["gain"] is None else cfg["gain"], normalize=cfg["normalize"])
    seconds = sf.info(str(part)).duration
    os.replace(part, wav)
    return float(seconds)


def render_batch(items: Iterable[tuple[str, object]], out: str | Path, cfg: BatchConfig | None = None,
                 workers: int = 2, progress: bool = True) -> BatchResult:
    """Render every (key, Score-or-MIDI-path) item into `out` (see the module docstring). Returns the rows,
    also written to `out/manifest.jsonl`."""
    import soundfile as sf

    from acemusic.audio.render import find_fluidsynth

    cfg = cfg or BatchConfig()
    cfg.check()
    if workers < 1:
        raise InputError("--workers", f"must be >= 1, got {workers}")
    find_fluidsynth()
    sf_id = _soundfont_id(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    todo: dict[str, tuple[bytes, dict]] = {}  # hash -> (midi, first row); duplicates share one render
    for key, source in items:
        row = {"key": str(key), "status": "failed", "wav": None, "mid": None, "hash": None, "seconds": None}
        rows.append(row)
        try:
            midi = prepare(source, cfg)
        except InputError as e:
            row["reason"] = e.reason
            continue
        h = content_hash(midi, cfg, sf_id)
        wav, mid = Path("wav") / h[:2] / f"{h}.wav", Path("mid") / h[:2] / f"{h}.mid"
        row.update(hash=h, wav=str(wav), mid=str(mid))
        if (out / wav).is_file() and (out / mid).is_file():
            row["status"] = "cached"
            try:
                row["seconds"] = round(float(sf.info(str(out / wav)).duration), 3)
            except RuntimeError:  # a damaged cache file: render it again
                row["status"] = "failed"
        if row["status"] == "cached":
            continue
        if h in todo:
            row["status"] = "duplicate"  # resolved below from the first item with the same music
        else:
            row["status"] = "pending"
            todo[h] = (midi, row)
    _run(todo, out, cfg, workers, progress)
    for r in rows:
        if r["status"] == "duplicate":
            first = todo[r["hash"]][1]
            r.update(status="cached" if first["status"] == "rendered" else first["status"], seconds=first["seconds"])
            if "reason" in first:
                r["reason"] = first["reason"]
    tmp = out / (MANIFEST + ".part")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, out / MANIFEST)
    count = lambda s: sum(r["status"] == s for r in rows)
    return BatchResult(rows, count("rendered"), count("cached"), count("failed"), out)


def _run(todo: dict[str, tuple[bytes, dict]], out: Path, cfg: BatchConfig, workers: int, progress: bool) -> None:
    """Render `todo` with a process pool, updating each row in place; a rich progress bar when `progress`."""
    if not todo:
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    cfg_d = asdict(cfg)
    bar = Progress(TextColumn("render"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   disable=not progress, transient=True)
    jobs = iter(todo.items())
    with bar, ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=get_context("spawn")) as pool:
        task = bar.add_task("render", total=len(todo))
        running: dict = {}

        def submit() -> None:  # keep at most 2 jobs per worker in flight: MIDI bytes stay out of the queue
            while len(running) < 2 * workers:
                try:
                    _, (midi, row) = next(jobs)
                except StopIteration:
                    return
                fut = pool.submit(_render_one, midi, str(out / row["mid"]), str(out / row["wav"]), cfg_d)
                running[fut] = row

        submit()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                row = running.pop(fut)
                try:
                    row["seconds"] = round(fut.result(), 3)
                    row["status"] = "rendered"
                except InputError as e:
                    row.update(status="failed", reason=e.reason)
                except Exception as e:  # a worker crash must not lose the rest of the batch
                    row.update(status="failed", reason=f"{type(e).__name__}: {str(e)[:200]}")
                bar.advance(task)
            submit()


def read_manifest(out: str | Path) -> list[dict]:
    """The rows of `out/manifest.jsonl` (paths are relative to `out`)."""
    return read_jsonl(Path(out) / MANIFEST, "missing: not a batch render folder (acemusic data render)")
