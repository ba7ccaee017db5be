"""Rule-based prompt parser: free text -> the hard attributes compose turns into tags and constraints.

"melancholic piano, slow, D minor" -> key 2 (D), mode minor, tempo 68 bpm (slow), instruments (0,), mood melancholic.
The whole text still goes to the text embedder; this parser only extracts what the tokens and the grammar can
enforce (key, mode, tempo, meter, instruments, style, density). Explicit arguments override it (`PromptSpec.override`).

Run the tests: `.venv/bin/python -m pytest tests/generate/test_prompt.py -q`.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import asdict, dataclass, field, replace

from acemusic.errors import InputError

DRUMS = 128
PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

# Tempo words -> (low, high, representative bpm). Ranges from /work/shared/eval/README.md; the representative
# bpm sits inside the range after the tokenizer's geometric tempo binning (checked in tests).
TEMPO_WORDS: dict[str, tuple[float, float, float]] = {
    "very slow": (0.0, 60.0, 50.0),
    "slow": (60.0, 76.0, 68.0),
    "calm": (66.0, 80.0, 72.0),
    "moderate": (80.0, 108.0, 94.0),
    "lively": (108.0, 132.0, 120.0),
    "fast": (132.0, 160.0, 146.0),
    "very fast": (160.0, 1000.0, 176.0),
}
# Synonyms (Italian tempo marks included) -> canonical tempo word. Longest phrases are matched first.
TEMPO_SYNONYMS = {
    "very slow": "very slow", "very slowly": "very slow", "grave": "very slow", "largo": "very slow",
    "slow": "slow", "slowly": "slow", "adagio": "slow", "lento": "slow", "unhurried": "slow",
    "calm": "calm", "calmly": "calm", "relaxed": "calm", "andante": "calm", "gentle pace": "calm",
    "moderate": "moderate", "moderately": "moderate", "medium tempo": "moderate", "moderato": "moderate",
    "walking pace": "moderate", "mid-tempo": "moderate", "midtempo": "moderate",
    "lively": "lively", "allegro": "lively", "upbeat": "lively", "brisk": "lively", "energetic": "lively",
    "fast": "fast", "quick": "fast", "quickly": "fast", "vivace": "fast", "presto": "fast", "rapid": "fast",
    "very fast": "very fast", "very quick": "very fast", "prestissimo": "very fast", "frantic": "very fast",
}

# Instrument words -> GM programs (128 = drums). Longer phrases win over the words inside them.
INSTRUMENTS: dict[str, tuple[int, ...]] = {
    "piano": (0,), "grand piano": (0,), "acoustic piano": (0,), "keyboard": (0,), "bright piano": (1,),
    "electric piano": (4,), "rhodes": (4,), "harpsichord": (6,), "clavinet": (7,), "celesta": (8,),
    "glockenspiel": (9,), "music box": (10,), "vibraphone": (11,), "vibes": (11,), "marimba": (12,),
    "xylophone": (13,), "tubular bells": (14,), "chimes": (14,), "bells": (14,), "dulcimer": (15,),
    "hammond organ": (16,), "drawbar organ": (16,), "rock organ": (18,), "organ": (19,), "church organ": (19,),
    "pipe organ": (19,), "accordion": (21,), "harmonica": (22,),
    "acoustic guitar": (24,), "guitar": (24,), "classical guitar": (24,), "nylon guitar": (24,),
    "steel guitar": (25,), "jazz guitar": (26,), "electric guitar": (27,), "distorted guitar": (30,),
    "bass": (32,), "acoustic bass": (32,), "upright bass": (32,), "electric bass": (33,), "bass guitar": (33,),
    "fretless bass": (35,), "synth bass": (38,),
    "violin": (40,), "fiddle": (40,), "viola": (41,), "cello": (42,), "violoncello": (42,), "double bass": (43,),
    "contrabass": (43,), "pizzicato strings": (45,), "harp": (46,), "timpani": (47,),
    "strings": (48,), "string ensemble": (48,), "string orchestra": (48,), "string quartet": (40, 41, 42),
    "orchestra": (48,), "synth strings": (50,),
    "choir": (52,), "voices": (52,), "voice": (52,), "vocals": (52,), "chorus": (52,), "singers": (52,),
    "trumpet": (56,), "trombone": (57,), "tuba": (58,), "muted trumpet": (59,), "horn": (60,),
    "french horn": (60,), "brass": (61,), "brass section": (61,),
    "soprano sax": (64,), "saxophone": (65,), "sax": (65,), "alto sax": (65,), "tenor sax": (66,),
    "baritone sax": (67,), "oboe": (68,), "english horn": (69,), "cor anglais": (69,), "bassoon": (70,),
    "clarinet": (71,), "piccolo": (72,), "flute": (73,), "recorder": (74,), "pan flute": (75,),
    "whistle": (78,), "tin whistle": (78,), "ocarina": (79,), "synth": (80,), "synthesizer": (80,),
    "synth lead": (80,), "synth pad": (88,), "pad": (88,), "sitar": (104,), "banjo": (105,), "koto": (107,),
    "bagpipes": (109,), "bagpipe": (109,), "steel drums": (114,),
    "drums": (DRUMS,), "drum kit": (DRUMS,), "percussion": (DRUMS,), "drum": (DRUMS,),
}
_PLURALS = {"pianos", "violins", "violas", "cellos", "flutes", "oboes", "clarinets", "trumpets", "trombones",
            "horns", "french horns", "guitars", "acoustic guitars", "electric guitars", "harps", "bassoons",
            "tubas", "organs", "saxophones", "basses", "fiddles", "recorders", "piccolos", "harpsichords"}
for _p in _PLURALS:
    _s = _p[:-2] if _p.endswith("ses") else _p[:-1]
    if _s in INSTRUMENTS:
        INSTRUMENTS[_p] = INSTRUMENTS[_s]

# The names listed when an instrument is unknown (every key of INSTRUMENTS is accepted; these are the main ones).
CHOICES = ("piano", "electric piano", "harpsichord", "celesta", "glockenspiel", "vibraphone", "marimba", "xylophone",
           "organ", "accordion", "harmonica", "acoustic guitar", "electric guitar", "bass", "electric bass", "violin",
           "viola", "cello", "double bass", "harp", "timpani", "strings", "string quartet", "choir", "trumpet",
           "trombone", "tuba", "horn", "brass", "saxophone", "oboe", "english horn", "bassoon", "clarinet", "piccolo",
           "flute", "recorder", "pan flute", "synth", "pad", "sitar", "banjo", "bagpipes", "drums")

# Playable range (MIDI pitches) per program: the pitch-range constraint keeps a flute out of the cello register.
PITCH_RANGES: dict[int, tuple[int, int]] = {
    0: (21, 108), 1: (21, 108), 4: (28, 103), 6: (29, 89), 7: (36, 96), 8: (60, 108), 9: (79, 108), 10: (60, 96),
    11: (53, 89), 12: (45, 96), 13: (65, 108), 14: (60, 77), 15: (48, 96), 16: (24, 96), 18: (24, 96),
    19: (24, 96), 21: (41, 93), 22: (60, 96), 24: (40, 88), 25: (40, 88), 26: (40, 88), 27: (40, 88),
    30: (40, 88), 32: (28, 67), 33: (28, 67), 35: (28, 67), 38: (24, 67), 40: (55, 103), 41: (48, 91),
    42: (36, 76), 43: (28, 67), 45: (28, 96), 46: (23, 103), 47: (40, 57), 48: (28, 103), 50: (28, 103),
    52: (40, 81), 56: (54, 86), 57: (40, 72), 58: (28, 58), 59: (54, 84), 60: (34, 77), 61: (34, 84),
    64: (56, 88), 65: (49, 81), 66: (44, 76), 67: (36, 69), 68: (58, 91), 69: (52, 84), 70: (34, 75),
    71: (50, 94), 72: (74, 108), 73: (60, 96), 74: (72, 98), 75: (60, 96), 78: (74, 98), 79: (60, 91),
    104: (48, 84), 105: (48, 84), 107: (48, 96), 109: (55, 77), DRUMS: (35, 81),
}
DEFAULT_RANGE = (21, 108)

STYLE_WORDS = {
    "bach": "bach", "chorale": "bach", "chorales": "bach", "baroque": "bach",
    "palestrina": "palestrina", "motet": "palestrina", "mass": "palestrina", "polyphony": "palestrina",
    "renaissance": "renaissance", "madrigal": "renaissance",
    "classical": "classical", "mozart": "classical", "haydn": "classical", "beethoven": "classical",
    "chopin": "classical", "schubert": "classical", "handel": "classical", "corelli": "classical",
    "romantic era": "classical", "monteverdi": "renaissance", "josquin": "renaissance",
    "folk": "folk_essen", "folk song": "folk_essen", "german folk": "folk_essen", "essen": "folk_essen",
    "irish": "folk_irish", "jig": "folk_irish", "reel": "folk_irish", "hornpipe": "folk_irish",
    "nottingham": "folk_other", "english folk": "folk_other",
    "scottish": "folk_scottish", "strathspey": "folk_scottish", "highland": "folk_scottish",
    "pop": "pop",
}
METER_WORDS = {
    "waltz": (3, 4), "minuet": (3, 4), "mazurka": (3, 4), "jig": (6, 8), "siciliana": (6, 8), "march": (2, 4),
    "reel": (4, 4), "hornpipe": (4, 4), "common time": (4, 4), "cut time": (2, 2), "alla breve": (2, 2),
}
# Mood words; the ones with a mode imply it when the prompt names no mode.
MOODS: dict[str, str | None] = {
    "melancholic": "minor", "melancholy": "minor", "sad": "minor", "dark": "minor", "brooding": "minor",
    "mysterious": "minor", "tense": "minor", "somber": "minor", "sombre": "minor", "gloomy": "minor",
    "mournful": "minor", "tragic": "minor", "ominous": "minor", "haunting": "minor", "eerie": "minor",
    "joyful": "major", "happy": "major", "bright": "major", "playful": "major", "triumphant": "major",
    "cheerful": "major", "heroic": "major", "jubilant": "major", "sunny": "major", "festive": "major",
    "warm": None, "peaceful": None, "serene": None, "tender": None, "romantic": None, "dreamy": None,
    "nostalgic": None, "epic": None, "lyrical": None, "gentle": None, "solemn": None, "hopeful": "major",
}
DENSITY_WORDS = {"sparse": 1, "simple": 1, "minimal": 1, "dense": 3, "busy": 3, "virtuosic": 3, "complex": 3}

_ACC = r"(?:[\s-]?(?P<accw>sharp|flat)|(?P<accs>[#♯♭b])(?![a-z]))?"
_KEY_MODE = re.compile(r"(?<![\w#])(?P<letter>[a-gA-G])" + _ACC + r"[\s-]*(?P<mode>major|minor|maj|min)\b", re.I)
_KEY_IN = re.compile(r"\b(?:in|key of|key:?)\s+(?P<letter>[A-G])" + _ACC + r"(?![\w#])")
_KEY_ABBR = re.compile(r"(?<![\w#])(?P<letter>[A-G])(?P<accs>[#b]?)(?P<mode>m)(?![\w#])")
_BPM = re.compile(r"(?P<n>\d{2,3}(?:\.\d+)?)\s*(?:bpm|qpm|beats per minute|beats/min)\b", re.I)
_BPM_AT = re.compile(r"\b(?:tempo|at)\s*(?:of\s*)?[:=]?\s*(?P<n>\d{2,3})(?!\s*/)\b", re.I)
_METER = re.compile(r"(?<![\d/])(?P<n>\d{1,2})\s*/\s*(?P<d>1|2|4|8|16)(?![\d/])")


@dataclass
class PromptSpec:
    """What a prompt asks for. None / () = not asked: the model chooses."""

    text: str = ""
    key: int | None = None  # tonic pitch class, 0 = C
    key_name: str | None = None  # as spelled: "C#", "Bb"
    mode: str | None = None  # 'major' | 'minor'
    tempo: float | None = None  # bpm
    tempo_word: str | None = None
    meter: tuple[int, int] | None = None
    instruments: tuple[int, ...] = ()  # GM programs, 128 = drums
    instrument_names: tuple[str, ...] = ()
    style: str | None = None  # a vocab Style value
    mood: str | None = None
    density: int | None = None  # Conditions.density (0..3: <4, <8, <16, >=16 notes per bar), None = not asked
    implied_mode: str | None = field(default=None)  # from a mood word; used when `mode` is None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PromptSpec:
        d = dict(d)
        for k in ("instruments", "instrument_names"):
            d[k] = tuple(d.get(k, ()))
        if d.get("meter") is not None:
            d["meter"] = tuple(d["meter"])
        return cls(**d)

    @property
    def effective_mode(self) -> str | None:
        return self.mode or self.implied_mode

    def override(self, key: str | None = None, mode: str | None = None, tempo: float | str | None = None,
                 meter: str | tuple[int, int] | None = None, instruments: str | list[str] | None = None,
                 style: str | None = None) -> PromptSpec:
        """Explicit arguments (CLI flags, API keywords) win over what the text says. Raises InputError."""
        spec = self
        if key is not None:
            pc, name, kmode = parse_key(key)
            spec = replace(spec, key=pc, key_name=name, mode=kmode or spec.mode)
        if mode is not None:
            m = mode.strip().lower()
            if m not in ("major", "minor"):
                raise InputError("--mode", f"expected 'major' or 'minor', got {mode!r}")
            spec = replace(spec, mode=m)
        if tempo is not None:
            bpm, word = parse_tempo(tempo)
            spec = replace(spec, tempo=bpm, tempo_word=word)
        if meter is not None:
            spec = replace(spec, meter=parse_meter(meter))
        if instruments is not None:
            names = [s.strip() for s in instruments.split(",")] if isinstance(instruments, str) else list(instruments)
            progs = resolve_instruments([n for n in names if n])
            spec = replace(spec, instruments=progs, instrument_names=tuple(n for n in names if n))
        if style is not None:
            spec = replace(spec, style=style)
        return spec


def _key_from(letter: str, accw: str | None, accs: str | None) -> tuple[int, str]:
    letter = letter.upper()
    acc = 0
    if (accw or "").lower() == "sharp" or accs in ("#", "♯"):
        acc = 1
    elif (accw or "").lower() == "flat" or accs in ("b", "♭"):
        acc = -1
    return (PITCH_CLASS[letter] + acc) % 12, letter + {1: "#", -1: "b", 0: ""}[acc]


def parse_key(text: str) -> tuple[int, str, str | None]:
    """'D minor', 'C#', 'B flat major', 'Ebm' -> (pitch class, spelled name, mode or None). Raises InputError."""
    s = text.strip()
    m = _KEY_MODE.fullmatch(s) or _KEY_ABBR.fullmatch(s)
    if m:
        pc, name = _key_from(m["letter"], m.groupdict().get("accw"), m.groupdict().get("accs"))
        return pc, name, "minor" if m["mode"].lower() in ("minor", "min", "m") else "major"
    m = re.fullmatch(r"(?P<letter>[a-gA-G])" + _ACC, s, re.I)
    if m:
        pc, name = _key_from(m["letter"], m["accw"], m["accs"])
        return pc, name, None
    raise InputError("--key", f"cannot read a key from {text!r} (examples: 'D minor', 'C#', 'B flat major')")


def parse_tempo(value: float | str) -> tuple[float, str | None]:
    """A bpm number or a tempo word -> (bpm, word or None). Raises InputError."""
    if isinstance(value, (int, float)):
        bpm, word = float(value), None
    else:
        s = value.strip().lower().removesuffix("bpm").strip()
        try:
            bpm, word = float(s), None
        except ValueError:
            canon = TEMPO_SYNONYMS.get(s)
            if canon is None:
                raise InputError("--tempo", f"expected a bpm number or one of {', '.join(TEMPO_WORDS)}") from None
            bpm, word = TEMPO_WORDS[canon][2], canon
    if not 20.0 <= bpm <= 400.0:
        raise InputError("--tempo", f"{bpm:g} bpm is outside 20..400")
    return bpm, word


def parse_meter(value: str | tuple[int, int]) -> tuple[int, int]:
    """'3/4' or (3, 4) or 'waltz' -> (3, 4). Raises InputError for meters the vocabulary cannot hold."""
    if isinstance(value, tuple):
        num, den = value
    else:
        s = value.strip().lower()
        if s in METER_WORDS:
            return METER_WORDS[s]
        m = re.fullmatch(r"(\d{1,2})\s*/\s*(\d{1,2})", s)
        if not m:
            raise InputError("--meter", f"expected a time signature like 3/4 or 6/8, got {value!r}")
        num, den = int(m[1]), int(m[2])
    if den not in (1, 2, 4, 8, 16) or num < 1 or num * 48 // den > 96 or (num * 48) % den:
        raise InputError("--meter", f"{num}/{den} is not supported (measures up to 8 quarter notes)")
    return num, den


def resolve_instruments(names: list[str]) -> tuple[int, ...]:
    """Instrument names or GM program numbers -> sorted unique programs. Unknown names -> InputError with choices."""
    progs: set[int] = set()
    for raw in names:
        n = raw.strip().lower()
        if n.isdigit() and 0 <= int(n) <= 128:
            progs.add(int(n))
        elif n in INSTRUMENTS:
            progs.update(INSTRUMENTS[n])
        else:
            raise InputError("--instruments", f"unknown instrument {raw!r}; choose from: {', '.join(CHOICES)} "
                                              "(or a GM program number 0-127, 128 = drums)")
    return tuple(sorted(progs))


def resolve_instrument(name: str) -> int:
    """One instrument name or GM program number -> its program; a name covering several programs is an InputError."""
    progs = resolve_instruments([name])
    if len(progs) != 1:
        raise InputError("--instrument", f"name one instrument, {name!r} is {len(progs)}")
    return progs[0]


def _find_phrases(text: str, table: dict) -> list[tuple[int, str]]:
    """Whole-word matches of the table's phrases, longest first, without overlaps -> [(start, phrase)] in text order."""
    taken = [False] * len(text)
    found = []
    for phrase in sorted(table, key=len, reverse=True):
        for m in re.finditer(r"(?<![\w-])" + re.escape(phrase) + r"(?![\w])", text):
            if not any(taken[m.start():m.end()]):
                found.append((m.start(), phrase))
                taken[m.start():m.end()] = [True] * (m.end() - m.start())
    return sorted(found)


def parse_prompt(text: str) -> PromptSpec:
    """Extract key, mode, tempo, meter, instruments, style, mood and density from free text."""
    low = text.lower()
    spec = PromptSpec(text=text)

    m = _KEY_MODE.search(text) or _KEY_ABBR.search(text)
    if m:
        pc, name = _key_from(m["letter"], m.groupdict().get("accw"), m.groupdict().get("accs"))
        mode = "minor" if m["mode"].lower() in ("minor", "min", "m") else "major"
        spec = replace(spec, key=pc, key_name=name, mode=mode)
    elif m := _KEY_IN.search(text):
        pc, name = _key_from(m["letter"], m["accw"], m["accs"])
        spec = replace(spec, key=pc, key_name=name)
    if spec.mode is None:
        mm = re.search(r"\b(major|minor)\b", low)
        if mm:
            spec = replace(spec, mode=mm[1])

    if m := _BPM.search(text) or _BPM_AT.search(text):
        spec = replace(spec, tempo=float(m["n"]))
    tempo_hits = _find_phrases(low, TEMPO_SYNONYMS)
    if tempo_hits:
        word = TEMPO_SYNONYMS[tempo_hits[0][1]]
        spec = replace(spec, tempo_word=word, tempo=spec.tempo if spec.tempo is not None else TEMPO_WORDS[word][2])

    if m := _METER.search(text):
        with contextlib.suppress(InputError):  # "9/16 bars" etc.: leave the meter to the model, don't fail on text
            spec = replace(spec, meter=parse_meter(f"{m['n']}/{m['d']}"))
    if spec.meter is None and (hits := _find_phrases(low, METER_WORDS)):
        spec = replace(spec, meter=METER_WORDS[hits[0][1]])

    inst_hits = _find_phrases(low, INSTRUMENTS)
    if inst_hits:
        names = tuple(dict.fromkeys(p for _, p in inst_hits))
        spec = replace(spec, instruments=resolve_instruments(list(names)), instrument_names=names)

    if hits := _find_phrases(low, STYLE_WORDS):
        spec = replace(spec, style=STYLE_WORDS[hits[0][1]])
    if hits := _find_phrases(low, MOODS):
        mood = hits[0][1]
        implied = next((MOODS[p] for _, p in hits if MOODS[p]), None)
        spec = replace(spec, mood=mood, implied_mode=implied)
    if hits := _find_phrases(low, DENSITY_WORDS):
        spec = replace(spec, density=DENSITY_WORDS[hits[0][1]])
    return spec


def tempo_matches(bpm: float, word: str | None = None, target: float | None = None, tol: float = 0.05) -> bool:
    """Does a measured tempo meet an ask: a word's range, or a number within `tol` (relative)?"""
    if word is not None:
        lo, hi, _ = TEMPO_WORDS[word]
        return lo <= bpm <= hi
    if target is not None:
        return abs(bpm - target) <= tol * target
    return True


def pitch_range(program: int) -> tuple[int, int]:
    return PITCH_RANGES.get(program, DEFAULT_RANGE)


MAX_BARS = 256
MAX_PROMPT_CHARS = 1000


def check_prompt(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise InputError("prompt", "empty prompt: describe the music, e.g. 'melancholic piano, slow, D minor'")
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError("prompt", f"{len(text)} characters; at most {MAX_PROMPT_CHARS}")
    return text


def check_bars(bars: int) -> int:
    if not 1 <= int(bars) <= MAX_BARS:
        raise InputError("--bars", f"must be 1..{MAX_BARS}, got {bars}")
    return int(bars)
