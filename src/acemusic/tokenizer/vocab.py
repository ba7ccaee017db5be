"""Token vocabulary: ids, types, value tables and the sequence grammar.

Ids are laid out contiguously per type (see docs/TOKENS.md), so every per-token question the tokenizer, the
trainer and the decoder ask ("what type is this id?", "what value does it carry?") is one numpy table lookup.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

TPQ = 12  # ticks per quarter note: sixteenths (3) and eighth triplets (4) are exact
MAX_BAR_TICKS = 8 * TPQ  # longest representable measure (4/2, 8/4, 16/8)
DRUMS = 128  # program number used for the GM drum channel

STYLES = (
    "none", "bach", "palestrina", "renaissance", "classical", "folk_essen", "folk_irish",
    "folk_scottish", "folk_other", "piano", "pop", "other",
)
MODES = ("none", "major", "minor")
DENSITY_EDGES = (4, 8, 16)  # notes per bar: <4, <8, <16, >=16 -> Density_0..3
SPECIALS = ("PAD", "BOS", "EOS", "Sep", "FillStart", "FillEnd")

# Token types in id order. The order is part of the checkpoint contract: never reorder, only append new types.
TYPES = (
    "PAD", "BOS", "EOS", "Sep", "FillStart", "FillEnd",
    "Style", "Key", "Mode", "Density", "Inst",
    "Bar", "TimeSig", "Tempo", "Position", "Program", "Velocity", "Pitch", "Duration",
)
T = {name: i for i, name in enumerate(TYPES)}  # type name -> type index


def _duration_bins() -> np.ndarray:
    """Duration bins in ticks: exact up to a whole note, then coarser (3, 6, 12 ticks) up to two 4/4 bars."""
    return np.concatenate([
        np.arange(1, 49), np.arange(51, 97, 3), np.arange(102, 193, 6), np.arange(204, 385, 12)
    ]).astype(np.int64)


def _time_signatures() -> list[tuple[int, int]]:
    """Every (numerator, denominator) whose measure fits in MAX_BAR_TICKS, common ones first."""
    out = []
    for den in (4, 8, 2, 16, 1):
        for num in range(1, 33):
            if num * TPQ * 4 // den <= MAX_BAR_TICKS and (num * TPQ * 4) % den == 0:
                out.append((num, den))
    return out


@dataclass
class VocabConfig:
    """Everything that decides the vocabulary. Saved beside every dataset and checkpoint."""

    n_velocity_bins: int = 16
    n_tempo_bins: int = 40
    tempo_min: float = 30.0
    tempo_max: float = 300.0
    styles: tuple[str, ...] = STYLES
    version: int = 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["styles"] = list(self.styles)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VocabConfig:
        d = dict(d)
        d["styles"] = tuple(d.get("styles", STYLES))
        return cls(**d)


@dataclass
class Vocab:
    """Token <-> id tables. Build with `Vocab()`; every table is derived from `config`."""

    config: VocabConfig = field(default_factory=VocabConfig)

    def __post_init__(self) -> None:
        c = self.config
        self.duration_bins = _duration_bins()
        self.time_signatures = _time_signatures()
        self.tempo_bins = np.geomspace(c.tempo_min, c.tempo_max, c.n_tempo_bins)
        values: dict[str, list] = {
            **{s: [None] for s in SPECIALS},
            "Style": list(c.styles),
            "Key": ["none", *range(12)],
            "Mode": list(MODES),
            "Density": ["none", *range(len(DENSITY_EDGES) + 1)],
            "Inst": list(range(129)),
            "Bar": [None],
            "TimeSig": self.time_signatures,
            "Tempo": list(range(c.n_tempo_bins)),
            "Position": list(range(MAX_BAR_TICKS)),
            "Program": list(range(129)),
            "Velocity": list(range(c.n_velocity_bins)),
            "Pitch": list(range(128)),
            "Duration": list(range(len(self.duration_bins))),
        }
        self.values = values
        self.offset: dict[str, int] = {}
        self.tokens: list[str] = []
        type_of, value_of = [], []
        for tname in TYPES:
            self.offset[tname] = len(self.tokens)
            for i, v in enumerate(values[tname]):
                self.tokens.append(tname if v is None else f"{tname}_{_fmt(v)}")
                type_of.append(T[tname])
                value_of.append(i)  # value index inside the type
        self.type_of = np.asarray(type_of, dtype=np.int64)  # id -> type index
        self.value_of = np.asarray(value_of, dtype=np.int64)  # id -> value index inside its type
        self.index = {tok: i for i, tok in enumerate(self.tokens)}
        # Value tables in model-facing units, indexed by value index.
        self.ts_ticks = np.asarray([n * TPQ * 4 // d for n, d in self.time_signatures], dtype=np.int64)

    # ---- ids ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens)

    def size(self, tname: str) -> int:
        return len(self.values[tname])

    def id(self, tname: str, value_index: int = 0) -> int:
        """Id of the `value_index`-th token of type `tname` (0 for types without values)."""
        if not 0 <= value_index < len(self.values[tname]):
            raise ValueError(f"{tname} has no value index {value_index}")
        return self.offset[tname] + value_index

    def ids_of_type(self, tname: str) -> range:
        return range(self.offset[tname], self.offset[tname] + len(self.values[tname]))

    def token(self, i: int) -> str:
        return self.tokens[i]

    @cached_property
    def pad(self) -> int:
        return self.id("PAD")

    @cached_property
    def bos(self) -> int:
        return self.id("BOS")

    @cached_property
    def eos(self) -> int:
        return self.id("EOS")

    @cached_property
    def bar(self) -> int:
        return self.id("Bar")

    # ---- value conversions -----------------------------------------------------------------------------
    def style_index(self, style: str | None) -> int:
        if style is None:
            return 0
        styles = self.values["Style"]
        return styles.index(style) if style in styles else styles.index("other")

    def tempo_bin(self, qpm: float | np.ndarray) -> np.ndarray:
        """Nearest tempo bin in log space."""
        q = np.clip(np.asarray(qpm, dtype=np.float64), self.config.tempo_min, self.config.tempo_max)
        return np.abs(np.log(q)[..., None] - np.log(self.tempo_bins)).argmin(-1)

    def velocity_bin(self, v: np.ndarray | int) -> np.ndarray:
        width = 128 // self.config.n_velocity_bins
        return np.clip(np.asarray(v) // width, 0, self.config.n_velocity_bins - 1)

    def velocity_value(self, b: np.ndarray | int) -> np.ndarray:
        width = 128 // self.config.n_velocity_bins
        return np.asarray(b) * width + width // 2

    def duration_bin(self, ticks: np.ndarray | int) -> np.ndarray:
        """Nearest duration bin (ties go to the shorter bin)."""
        t = np.clip(np.asarray(ticks, dtype=np.int64), 1, self.duration_bins[-1])
        hi = np.searchsorted(self.duration_bins, t)  # first bin >= t
        hi = np.minimum(hi, len(self.duration_bins) - 1)
        lo = np.maximum(hi - 1, 0)
        closer_lo = (t - self.duration_bins[lo]) <= (self.duration_bins[hi] - t)
        return np.where(self.duration_bins[hi] == t, hi, np.where(closer_lo, lo, hi))

    def time_signature_index(self, num: int, den: int) -> int | None:
        try:
            return self.time_signatures.index((num, den))
        except ValueError:
            return None

    def density_index(self, notes_per_bar: float | None) -> int:
        """Density token value index (0 = none)."""
        if notes_per_bar is None:
            return 0
        return 1 + int(np.searchsorted(DENSITY_EDGES, notes_per_bar, side="right"))

    # ---- persistence -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "tokens": self.tokens}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        d = json.loads(Path(path).read_text())
        vocab = cls(VocabConfig.from_dict(d["config"]))
        if vocab.tokens != d["tokens"]:
            raise ValueError(f"{path}: token list does not match the vocabulary this version of acemusic builds")
        return vocab


def _fmt(v: object) -> str:
    if isinstance(v, tuple):
        return f"{v[0]}/{v[1]}"
    return str(v)
