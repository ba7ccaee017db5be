"""`acemusic data build`: sources -> cached per-file conversions -> deduplicated, split token shards + captions.

Phases:
1. convert: every task (music21 file, ABC chunk, MIDI file) whose cache entry is missing is converted in a worker
   process; results go to DIR/cache/<sha1>.pkl, keyed by path + size + mtime + tokenizer version, so a rerun after
   an interruption only converts what is left. Bad files become skip records, never exceptions.
2. assemble: tasks are read back from the cache in sorted order, exact duplicates (same body tokens) dropped,
   pieces split 94/3/3 by a hash of their id, captions made, shards written (docs/TOKENS.md).
3. embed: captions are embedded with MiniLM into DIR/{split}.captions.npy (skipped with `embed=False`).
Test: `pytest tests/data/test_build.py`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing as mp
import os
import pickle
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from acemusic.data.captions import K_CAPTIONS, make_captions
from acemusic.data.corpus import PIECE_TIMEOUT, Task, convert_task, fix_dos_text, midi_tasks, music21_tasks
from acemusic.data.m21 import DEFAULT_QPM
from acemusic.data.shards import SPLITS, ShardWriter

CONVERT_VERSION = "1"  # bump when corpus/m21 conversion changes what a cache entry holds
SPLIT_FRACTIONS = (0.94, 0.03, 0.03)


@dataclass
class BuildConfig:
    out: Path
    midi_dir: Path | None = None
    music21: bool = True
    limit: int | None = None  # first N source files of each source, in sorted order
    only: str | None = None  # music21 files whose relative path matches this glob or contains this text
    midi_style: str | None = None  # force a style for every MIDI file (else guessed from the path)
    workers: int = 2
    embed: bool = True
    timeout: int = PIECE_TIMEOUT
    n_captions: int = K_CAPTIONS

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class BuildStats:
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    skips: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    tasks: int = 0
    cache_hits: int = 0
    converted: int = 0
    collections: dict[str, int] = field(default_factory=dict)
    styles: dict[str, int] = field(default_factory=dict)
    polyphony: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    tokenizer_version: str = ""
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def split_of(piece_id: str) -> str:
    """Stable split of a piece: sha1 of its id (not Python's salted hash), 94/3/3."""
    u = int(hashlib.sha1(piece_id.encode("utf-8")).hexdigest()[:15], 16) / 16**15
    edges = np.cumsum(SPLIT_FRACTIONS)
    return SPLITS[int(np.searchsorted(edges, u, side="right"))] if u < edges[-1] else SPLITS[-1]


def tokenizer_version(tok) -> str:
    """Cache-key part for the tokenizer: its declared `version` if it has one, else a hash of the token list and
    the tokenizer source (any edit re-converts: safe, but a comment change costs a full rebuild)."""
    import acemusic.tokenizer as tpkg

    declared = getattr(tok, "version", None)
    if declared is not None:
        return f"v{tok.vocab.config.version}-t{declared}"
    h = hashlib.sha1(json.dumps(tok.vocab.to_dict()).encode())
    for p in sorted(Path(tpkg.__file__).parent.glob("*.py")):
        h.update(p.read_bytes())
    return f"v{tok.vocab.config.version}-{h.hexdigest()[:12]}"


def cache_file(cache_dir: Path, task: Task, tok_version: str) -> Path | None:
    """Cache entry of a task, or None if its source file vanished."""
    try:
        st = os.stat(task.path)
    except OSError:
        return None
    key = "|".join(map(str, (task.path, st.st_size, st.st_mtime_ns, tok_version, CONVERT_VERSION, task.kind,
                             task.start, task.stop, task.style, task.collection, task.composer, task.title)))
    h = hashlib.sha1(key.encode("utf-8")).hexdigest()
    return cache_dir / h[:2] / f"{h}.pkl"


def _write_atomic(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


# ---- worker side ----------------------------------------------------------------------------------------------
_TOK = None


def _init_worker() -> None:
    global _TOK
    import warnings

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent turns SIGTERM into KeyboardInterrupt; workers just die

    from acemusic.tokenizer import Tokenizer

    warnings.filterwarnings("ignore")  # music21 warns per odd ABC line; failures are recorded as skips
    _TOK = Tokenizer()


def _convert(job: tuple[Task, str, int]) -> tuple[str, int, int, float]:
    task, cache, timeout = job
    t0 = time.perf_counter()
    pieces, skips = convert_task(task, _TOK, timeout)
    _write_atomic(Path(cache), {"task": asdict(task), "pieces": pieces, "skips": skips})
    return task.label, len(pieces), len(skips), time.perf_counter() - t0


# ---- driver ---------------------------------------------------------------------------------------------------
def iter_tasks(cfg: BuildConfig, m21: list[Task] | None = None) -> Iterator[Task]:
    """All tasks in sorted order (music21 first, then MIDI), streamed. `m21`: the music21 task list, if known."""
    if cfg.music21:
        tasks = m21 if m21 is not None else music21_tasks(cfg.only)[0]
        files = list(dict.fromkeys(t.path for t in tasks))[: cfg.limit] if cfg.limit else None
        keep = set(files) if files is not None else None
        yield from (t for t in tasks if keep is None or t.path in keep)
    if cfg.midi_dir is not None:
        yield from itertools.islice(midi_tasks(cfg.midi_dir, cfg.midi_style), cfg.limit)


def non_score_files(cfg: BuildConfig) -> list[dict]:
    """Skip records for corpus files that are not scores (.rntxt roman-numeral analyses)."""
    if not cfg.music21:
        return []
    from acemusic.data.corpus import matches, music21_files, music21_root

    root = music21_root()
    rels = [p.relative_to(root).as_posix() for p in music21_files()[1]]
    if cfg.only:
        rels = [r for r in rels if matches(r, cfg.only)]
    return [{"path": r, "id": None, "reason": "roman-numeral analysis, not a score"} for r in rels]


def reason_key(reason: str) -> str:
    """Short category of a skip reason for the summary table (details stay in build_log.jsonl)."""
    return reason.split(" (")[0].split(":")[0].strip()[:60]


Progress = Callable[[str, int, int], None]  # (phase, done, total)


def convert_all(cfg: BuildConfig, tv: str, progress: Progress | None = None,
                m21: list[Task] | None = None) -> tuple[int, int, int]:
    """Phase 1. Returns (tasks, cache hits, converted). `tv` is the tokenizer version (part of the cache key)."""
    cache_dir = Path(cfg.out) / "cache"
    total = sum(1 for _ in iter_tasks(cfg, m21))
    hits = 0
    todo: list[tuple[Task, str, int]] = []
    for task in iter_tasks(cfg, m21):
        cf = cache_file(cache_dir, task, tv)
        if cf is None:
            continue
        if cf.exists():
            hits += 1
        else:
            todo.append((task, str(cf), cfg.timeout))
    done = hits
    if progress:
        progress("convert", done, total)
    if todo:
        # `kill` (SIGTERM) stops a background build as cleanly as Ctrl-C: workers are terminated, caches kept.
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        if cfg.workers <= 1:
            _init_worker()
            results = map(_convert, todo)
            pool = None
        else:
            pool = mp.get_context("fork").Pool(cfg.workers, initializer=_init_worker, maxtasksperchild=100)
            results = pool.imap_unordered(_convert, todo, chunksize=1)
        try:
            for _ in results:
                done += 1
                if progress:
                    progress("convert", done, total)
        finally:
            signal.signal(signal.SIGTERM, old_term)
            if pool is not None:
                pool.terminate()
                pool.join()
    return total, hits, len(todo)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def assemble(cfg: BuildConfig, tv: str, stats: BuildStats, progress: Progress | None = None,
             m21: list[Task] | None = None) -> dict[str, list[list[str]]]:
    """Phase 2: shards, metadata, build log. Returns the captions per split (for phase 3)."""
    out = Path(cfg.out)
    cache_dir = out / "cache"
    writers = {s: ShardWriter(out, s) for s in SPLITS}
    captions: dict[str, list[list[str]]] = {s: [] for s in SPLITS}
    seen: dict[bytes, str] = {}
    skips: Counter = Counter()
    colls: Counter = Counter()
    styles: Counter = Counter()
    poly: Counter = Counter()
    total = stats.tasks
    with open(out / "build_log.jsonl.tmp", "w", encoding="utf-8") as log:
        for rec in non_score_files(cfg):
            log.write(json.dumps(rec) + "\n")
            skips[rec["reason"]] += 1
        for i, task in enumerate(iter_tasks(cfg, m21)):
            cf = cache_file(cache_dir, task, tv)
            if cf is None or not cf.exists():
                rec = {"path": task.rel, "id": None, "reason": "conversion did not finish (worker crashed?)"}
                log.write(json.dumps(rec) + "\n")
                skips[rec["reason"]] += 1
                continue
            with open(cf, "rb") as f:
                entry = pickle.load(f)
            for rec in entry["skips"]:
                log.write(json.dumps(rec, ensure_ascii=False) + "\n")
                skips[reason_key(rec["reason"])] += 1
            for body, meta in entry["pieces"]:
                h = hashlib.sha1(body.tobytes()).digest()
                if h in seen:
                    stats.duplicates += 1
                    log.write(json.dumps({"path": task.rel, "id": meta["id"], "reason": "duplicate",
                                          "of": seen[h]}, ensure_ascii=False) + "\n")
                    continue
                seen[h] = meta["id"]
                for k in ("title", "composer"):  # entries cached before the CP437 repair
                    meta[k] = fix_dos_text(meta.get(k))
                if "tempo_known" not in meta:  # entries cached before the flag: music21 works default to 100 qpm
                    meta["tempo_known"] = not (meta["source"] == "music21" and meta["tempo"] == DEFAULT_QPM)
                caps, n_full = make_captions(meta, cfg.n_captions)
                meta["captions"], meta["n_full_captions"] = caps, n_full
                split = split_of(meta["id"])
                writers[split].add(body, meta)
                captions[split].append(caps)
                colls[meta["collection"]] += 1
                styles[meta["style"]] += 1
                poly[meta["polyphony"]] += 1
            if progress and (i % 50 == 0 or i + 1 == total):
                progress("assemble", i + 1, total)
    for w in writers.values():
        w.close()
    os.replace(out / "build_log.jsonl.tmp", out / "build_log.jsonl")
    stats.splits = {s: {"pieces": len(w), "tokens": w.n_tokens, "notes": w.n_notes} for s, w in writers.items()}
    stats.skips = dict(skips.most_common())
    stats.collections, stats.styles, stats.polyphony = dict(colls.most_common()), dict(styles), dict(poly)
    return captions


def _load_embedding_cache(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    try:
        with open(path, "rb") as f:
            d = pickle.load(f)
        return dict(zip(d["texts"], d["vecs"], strict=True))
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError):  # damaged: recompute
        return {}


def _save_embedding_cache(path: Path, known: dict[str, np.ndarray]) -> None:
    texts = list(known)
    vecs = np.stack([known[t] for t in texts]) if texts else np.zeros((0, 384), np.float16)
    _write_atomic(path, {"texts": texts, "vecs": vecs})


def embed_captions(out: Path, captions: dict[str, list[list[str]]], embedder=None,
                   progress: Progress | None = None) -> None:
    """Phase 3: unique caption strings -> MiniLM -> DIR/{split}.captions.npy float16 (n, K, 384).

    Embeddings are kept in DIR/cache/caption_embeddings.pkl (saved as they are computed), so a rerun or a resumed
    build embeds only captions it has not seen.
    """
    from acemusic.text import TextEmbedder

    emb = embedder or TextEmbedder()
    cache_path = Path(out) / "cache" / "caption_embeddings.pkl"
    known = _load_embedding_cache(cache_path)
    unique = sorted({c for caps in captions.values() for piece in caps for c in piece})
    missing = [c for c in unique if c not in known]
    batch, done = 256, 0
    if progress:
        progress("embed", 0, len(missing))
    for a in range(0, len(missing), batch):
        part = missing[a: a + batch]
        for c, v in zip(part, emb.encode(part, use_cache=False).astype(np.float16), strict=True):
            known[c] = v
        done += len(part)
        if progress:
            progress("embed", done, len(missing))
        if (a // batch) % 20 == 19:
            _save_embedding_cache(cache_path, known)
    if missing:
        _save_embedding_cache(cache_path, known)
    for split, caps in captions.items():
        k = max((len(c) for c in caps), default=K_CAPTIONS)
        arr = np.lib.format.open_memmap(out / f"{split}.captions.npy.tmp.npy", mode="w+", dtype=np.float16,
                                        shape=(len(caps), k, emb.dim))
        for i, piece in enumerate(caps):
            arr[i, : len(piece)] = np.stack([known[c] for c in piece])
        arr.flush()
        del arr
        os.replace(out / f"{split}.captions.npy.tmp.npy", out / f"{split}.captions.npy")


def build(cfg: BuildConfig, progress: Progress | None = None, embedder=None) -> BuildStats:
    """Run all phases; returns the stats also written to DIR/stats.json."""
    from acemusic.tokenizer import Tokenizer

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer()
    tok.vocab.save(out / "vocab.json")
    tv = tokenizer_version(tok)  # once: the source may be edited while a long build runs
    stats = BuildStats(tokenizer_version=tv, config=cfg.to_dict())
    t0 = time.perf_counter()
    m21 = music21_tasks(cfg.only)[0] if cfg.music21 else None  # reads every ABC file: do it once
    stats.tasks, stats.cache_hits, stats.converted = convert_all(cfg, tv, progress, m21)
    t1 = time.perf_counter()
    captions = assemble(cfg, tv, stats, progress, m21)
    t2 = time.perf_counter()
    for split in SPLITS:  # a stale embedding file would no longer match the pieces
        (out / f"{split}.captions.npy").unlink(missing_ok=True)
    if cfg.embed:
        embed_captions(out, captions, embedder, progress)
    t3 = time.perf_counter()
    stats.seconds = {"convert": round(t1 - t0, 1), "assemble": round(t2 - t1, 1), "embed": round(t3 - t2, 1),
                     "total": round(t3 - t0, 1)}
    (out / "stats.json").write_text(json.dumps(stats.to_dict(), indent=1, ensure_ascii=False))
    return stats
