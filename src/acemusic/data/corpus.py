"""Sources of pieces (the music21 corpus, MIDI folders) and per-piece metadata.

A *task* is one unit of conversion work and of caching: a music21 file, a chunk of tunes of an ABC opus file, or a
MIDI file. `convert_task(task, tok)` turns it into (body tokens, PieceMeta) pairs plus skip records; it never raises
for bad input. Piece identity (`PieceMeta.id`) is `source:relative/path[#tune]`, stable across machines, and the
split is a hash of it. Test: `pytest tests/data/test_corpus.py`.
"""

from __future__ import annotations

import csv
import os
import re
import signal
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from acemusic.data import analysis
from acemusic.errors import InputError

ABC_CHUNK = 50  # tunes per ABC task: parallelism and resume granularity for opus files of 700 tunes
PIECE_TIMEOUT = 60  # seconds for one music21 parse + conversion; some files make music21 loop for minutes
MIDI_EXTS = (".mid", ".midi")
M21_EXTS = (".mxl", ".xml", ".musicxml", ".krn", ".abc", ".mid", ".midi")

# music21 corpus top-level folder -> style token value (see vocab STYLES)
M21_STYLES = {
    "bach": "bach", "palestrina": "palestrina",
    "josquin": "renaissance", "trecento": "renaissance", "ciconia": "renaissance", "luca": "renaissance",
    "lusitano": "renaissance", "monteverdi": "renaissance",
    "essenFolksong": "folk_essen", "oneills1850": "folk_irish", "ryansMammoth": "folk_irish",
    "airdsAirs": "folk_scottish", "miscFolk": "folk_other", "nottingham-dataset": "folk_other",
    "beethoven": "classical", "mozart": "classical", "haydn": "classical", "handel": "classical",
    "corelli": "classical", "cpebach": "classical", "chopin": "classical", "schubert": "classical",
    "schumann_clara": "classical", "schumann_robert": "classical", "weber": "classical", "verdi": "classical",
    "beach": "classical", "joplin": "classical", "schoenberg": "classical", "webern": "classical",
    "liliuokalani": "other", "johnson_j_r": "other", "leadSheet": "other", "demos": "other",
    "theoryExercises": "other",
}
# Single-composer folders whose files often lack a composer field.
M21_COMPOSERS = {
    "bach": "Johann Sebastian Bach", "palestrina": "Giovanni Pierluigi da Palestrina", "josquin": "Josquin des Prez",
    "monteverdi": "Claudio Monteverdi", "beethoven": "Ludwig van Beethoven", "mozart": "Wolfgang Amadeus Mozart",
    "haydn": "Joseph Haydn", "handel": "George Frideric Handel", "corelli": "Arcangelo Corelli",
    "cpebach": "Carl Philipp Emanuel Bach", "chopin": "Frédéric Chopin", "schubert": "Franz Schubert",
    "schumann_clara": "Clara Schumann", "schumann_robert": "Robert Schumann", "weber": "Carl Maria von Weber",
    "verdi": "Giuseppe Verdi", "beach": "Amy Beach", "joplin": "Scott Joplin", "schoenberg": "Arnold Schoenberg",
    "webern": "Anton Webern", "ciconia": "Johannes Ciconia", "luca": "Luca Marenzio", "lusitano": "Vicente Lusitano",
}
# Collections whose ABC file holds the voices of ONE piece (one X: per voice), not an opus of tunes.
VOICES_PER_TUNE = ("josquin",)


@dataclass
class PieceMeta:
    """Metadata of one piece; one JSON object per line in {split}.meta.jsonl.

    `key` is the tonic pitch class (0 = C) estimated with Krumhansl-Schmuckler; `density` is the Density token
    value 0..3 (`vocab.density_index(notes_per_bar) - 1`, the value `Conditions(density=...)` takes);
    `instruments` are sorted unique GM programs (128 = drums); `captions` lists `n_full_captions` full captions
    (key and instruments named) first, then core captions (neither named: safe under transposition/remapping).
    """

    id: str
    source: str  # 'music21' | 'midi'
    path: str  # relative to the corpus root or the MIDI folder
    collection: str
    style: str
    composer: str | None = None
    title: str | None = None
    key: int | None = None
    mode: str | None = None
    tempo: float = 100.0
    tempo_known: bool = True  # False: the source had no tempo marking (most folk tunes); `tempo` is a default
    meter: str = "4/4"
    instruments: list[int] = field(default_factory=list)
    n_notes: int = 0
    n_bars: int = 0
    n_tokens: int = 0
    notes_per_bar: float = 0.0
    density: int = 0
    polyphony: str = "monophonic"
    pitch_min: int | None = None
    pitch_max: int | None = None
    captions: list[str] = field(default_factory=list)
    n_full_captions: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PieceMeta:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Task:
    """One unit of conversion work (and one cache entry)."""

    kind: str  # 'm21' (one work), 'abc' (tunes [start, stop) of an opus file), 'midi'
    path: str  # absolute path
    rel: str  # path relative to its root: part of the piece id
    collection: str
    style: str
    start: int = 0
    stop: int = 0
    composer: str | None = None  # hints from a side table (MAESTRO csv)
    title: str | None = None

    @property
    def source(self) -> str:
        return "midi" if self.kind == "midi" else "music21"

    @property
    def label(self) -> str:
        return f"{self.rel}[{self.start}:{self.stop}]" if self.kind == "abc" else self.rel


# ---- enumerating sources ------------------------------------------------------------------------------------
def music21_root() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def music21_files() -> tuple[list[Path], list[Path]]:
    """(scores, skipped) among music21.corpus.getPaths(): roman-numeral analyses (.rntxt) are not scores."""
    from music21 import corpus

    paths = sorted(Path(p) for p in corpus.getPaths())
    keep = [p for p in paths if p.suffix.lower() in M21_EXTS]
    return keep, [p for p in paths if p.suffix.lower() not in M21_EXTS]


_C1 = re.compile("[\x80-\x9f]")


def fix_dos_text(text: str | None) -> str | None:
    """Map C1 control characters to the DOS code page 437 letters they stand for.

    The Essen files were written in CP437 and later re-encoded as if they were Latin-1, so 'ä' (0x84) arrives as
    U+0084 whether the file is read as UTF-8 or Latin-1. No real text uses C1 controls, so the mapping is safe.
    """
    if not text:
        return text
    return _C1.sub(lambda m: bytes([ord(m.group())]).decode("cp437"), text)


def read_text(path: Path) -> str:
    """Text of a corpus file: UTF-8, else Latin-1; DOS letters repaired (see `fix_dos_text`)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return fix_dos_text(text)


_X_LINE = re.compile(r"^X:", re.MULTILINE)


def split_abc(text: str) -> tuple[str, list[str]]:
    """(file header, tune texts): an ABC file is a header followed by tunes, each starting at an `X:` line."""
    starts = [m.start() for m in _X_LINE.finditer(text)]
    if not starts:
        return "", [text]
    header = text[: starts[0]]
    return header, [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]


def tune_number(tune: str, ordinal: int) -> str:
    m = re.match(r"X:\s*(\d+)", tune)
    return m.group(1) if m else str(ordinal + 1)


def matches(rel: str, only: str) -> bool:
    """`only` is a comma-separated list of globs or substrings of the path relative to the corpus root."""
    return any(Path(rel).match(pat) or pat in rel for pat in (p.strip() for p in only.split(",")) if pat)


def music21_tasks(only: str | None = None) -> tuple[list[Task], list[Path]]:
    """Tasks for the bundled music21 corpus (sorted by path) and the files that are not scores."""
    root = music21_root()
    files, skipped = music21_files()
    tasks: list[Task] = []
    for p in files:
        rel = p.relative_to(root).as_posix()
        if only and not matches(rel, only):
            continue
        coll = rel.split("/")[0]
        style = M21_STYLES.get(coll, "other")
        if p.suffix.lower() == ".abc" and coll not in VOICES_PER_TUNE:
            n = len(split_abc(read_text(p))[1])
            for a in range(0, n, ABC_CHUNK):
                tasks.append(Task("abc", str(p), rel, coll, style, a, min(n, a + ABC_CHUNK)))
        else:
            tasks.append(Task("m21", str(p), rel, coll, style))
    return tasks, skipped


def midi_style(rel_parts: list[str]) -> tuple[str, str]:
    """(collection, style) guessed from a MIDI file's path: MAESTRO is solo piano, Lakh is mostly pop."""
    low = [s.lower() for s in rel_parts]
    if any("maestro" in s for s in low):
        return "maestro", "piano"
    if any(s.startswith(("lmd", "lakh")) for s in low):
        return "lakh", "pop"
    return (rel_parts[0] if len(rel_parts) > 1 else "midi"), "other"


def _maestro_table(root: Path) -> dict[str, tuple[str, str]]:
    """midi_filename -> (composer, title) from a MAESTRO csv at the folder root, if present."""
    out: dict[str, tuple[str, str]] = {}
    for c in sorted(root.glob("maestro-v*.csv")):
        with c.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if "midi_filename" in row:
                    out[row["midi_filename"]] = (row.get("canonical_composer"), row.get("canonical_title"))
    return out


def midi_tasks(root: Path, style: str | None = None) -> Iterator[Task]:
    """Tasks for every .mid/.midi under `root`, recursively, in sorted order, yielded one at a time."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "MIDI folder does not exist")
    table = _maestro_table(root)
    name = root.resolve().name
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            if not fn.lower().endswith(MIDI_EXTS):
                continue
            p = Path(dirpath) / fn
            rel = p.relative_to(root).as_posix()
            coll, st = midi_style([name, *rel.split("/")])
            composer, title = table.get(rel, (None, None))
            yield Task("midi", str(p), rel, coll, style or st, composer=composer, title=title or Path(fn).stem)


# ---- conversion ---------------------------------------------------------------------------------------------
class _Timeout(Exception):
    pass


def _alarm(signum, frame):  # pragma: no cover - signal handler
    raise _Timeout()


def _with_timeout(fn, seconds: int):
    """Run fn() with a SIGALRM deadline (worker processes run tasks in their main thread)."""
    use = seconds > 0 and hasattr(signal, "SIGALRM")
    if use:
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(seconds)
    try:
        return fn()
    finally:
        if use:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


def piece_meta(score, body: np.ndarray, tok, base: dict, tempo_known: bool = True) -> PieceMeta:
    """Metadata of a converted score (on the TPQ=12 grid) and its body tokens."""
    from acemusic.tokenizer.vocab import TPQ

    if score.ticks_per_quarter != TPQ:
        score = score.resample(TPQ, min_dur=1)
    notes = analysis.note_arrays(score)
    key, mode, _ = analysis.key_of_notes(notes)
    lo, hi = analysis.pitch_range(notes)
    npb = float(tok.notes_per_bar(score))
    tempo = float(score.tempos[0].qpm) if len(score.tempos) else 120.0  # MIDI default when a file sets none
    ts = score.time_signatures
    meter = f"{ts[0].numerator}/{ts[0].denominator}" if len(ts) else "4/4"
    return PieceMeta(
        **base, key=key, mode=mode, tempo=round(tempo, 2), tempo_known=tempo_known, meter=meter,
        instruments=sorted({int(p) for p in np.unique(notes["program"])}),
        n_notes=len(tok.note_table(score)), n_bars=int((body == tok.vocab.bar).sum()), n_tokens=len(body),
        notes_per_bar=round(npb, 3), density=tok.vocab.density_index(npb) - 1,
        polyphony=analysis.polyphony_class(notes), pitch_min=lo, pitch_max=hi,
    )


def _reason(e: BaseException) -> str:
    if isinstance(e, _Timeout):
        return "timeout"
    if isinstance(e, InputError):
        return e.reason
    return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}".rstrip(": ")


def _music21_scores(task: Task) -> Iterator[tuple[str, str, object]]:
    """(piece id suffix, label, thunk returning a music21 stream) for each piece of a music21 task."""
    from music21 import converter

    if task.kind == "abc":
        header, tunes = split_abc(read_text(Path(task.path)))
        seen: dict[str, int] = {}
        for i in range(task.start, min(task.stop, len(tunes))):
            num = tune_number(tunes[i], i)
            seen[num] = seen.get(num, 0) + 1
            suffix = f"#{num}" if seen[num] == 1 else f"#{num}.{seen[num]}"
            text = header + tunes[i]
            yield suffix, f"{task.rel}{suffix}", (lambda t=text: converter.parseData(t, format="abc"))
    else:
        yield "", task.rel, (lambda: converter.parse(task.path))


def convert_task(task: Task, tok, timeout: int = PIECE_TIMEOUT) -> tuple[list[tuple[np.ndarray, dict]], list[dict]]:
    """Convert one task. Returns ([(body uint16, meta dict)], [skip records {path, id, reason}]). Never raises
    for bad input: every failure becomes a skip record."""
    pieces: list[tuple[np.ndarray, dict]] = []
    skips: list[dict] = []

    def add(pid: str, score, title, composer, tempo_known: bool = True) -> None:
        body = tok.encode_body(score)
        if len(body) and int(body.max()) > np.iinfo(np.uint16).max:
            raise ValueError("token id does not fit uint16")
        base = dict(id=pid, source=task.source, path=task.rel, collection=task.collection, style=task.style,
                    composer=composer, title=title)
        pieces.append((body.astype(np.uint16), piece_meta(score, body, tok, base, tempo_known).to_dict()))

    if task.kind == "midi":
        pid = f"midi:{task.rel}"
        try:
            score = tok.load_score(task.path)
            _with_timeout(lambda: add(pid, score, task.title, task.composer), timeout)
        except Exception as e:  # bad input of any kind is a skip, never a crash
            skips.append({"path": task.rel, "id": pid, "reason": _reason(e)})
        return pieces, skips

    from acemusic.data.m21 import fast_parsing, has_tempo_mark, m21_metadata, stream_to_score

    for suffix, label, parse in _music21_scores(task):
        pid = f"music21:{task.rel}{suffix}"

        def one(parse=parse, pid=pid, label=label) -> None:
            with fast_parsing():
                s = parse()
            score = stream_to_score(s, task.style)
            md = m21_metadata(s)
            if score.note_num() == 0:
                raise InputError(label, "no pitched notes")
            title = md["title"]
            if title and title.lower().endswith(M21_EXTS):  # music21 falls back to the file name
                title = Path(title).stem
            add(pid, score, title, md["composer"] or M21_COMPOSERS.get(task.collection), has_tempo_mark(s))

        try:
            _with_timeout(one, timeout)
        except Exception as e:
            skips.append({"path": task.rel, "id": pid, "reason": _reason(e)})
    return pieces, skips
