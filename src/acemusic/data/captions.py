"""Natural-language captions built from piece metadata, for text conditioning.

Each piece gets K captions, varied in wording and order but deterministic (seeded by the piece id):
- K/2 *full* captions name the key and the instruments;
- K/2 *core* captions name neither (only mode, mood, tempo word, meter, style, density, texture, dance type),
  because training
  augments pieces by transposition and instrument remapping, which would make a key or instrument name wrong. The
  trainer uses a core caption whenever it transposed or remapped.
Test: `pytest tests/data/test_captions.py`.
"""

from __future__ import annotations

import hashlib
import random
import re

from acemusic.data.analysis import PITCH_NAMES

K_CAPTIONS = 4

# GM program -> plain words (index = program). Drums are 128.
GM_NAMES = (
    "piano", "bright piano", "electric grand piano", "honky-tonk piano", "electric piano", "electric piano",
    "harpsichord", "clavinet", "celesta", "glockenspiel", "music box", "vibraphone", "marimba", "xylophone",
    "tubular bells", "dulcimer", "organ", "percussive organ", "rock organ", "church organ", "reed organ",
    "accordion", "harmonica", "bandoneon", "acoustic guitar", "acoustic guitar", "jazz guitar", "electric guitar",
    "muted electric guitar", "overdriven guitar", "distorted guitar", "guitar harmonics", "acoustic bass",
    "electric bass", "electric bass", "fretless bass", "slap bass", "slap bass", "synth bass", "synth bass",
    "violin", "viola", "cello", "double bass", "tremolo strings", "pizzicato strings", "harp", "timpani",
    "strings", "strings", "synth strings", "synth strings", "choir", "voice", "synth voice", "orchestra hits",
    "trumpet", "trombone", "tuba", "muted trumpet", "french horn", "brass", "synth brass", "synth brass",
    "soprano sax", "alto sax", "tenor sax", "baritone sax", "oboe", "english horn", "bassoon", "clarinet",
    "piccolo", "flute", "recorder", "pan flute", "blown bottle", "shakuhachi", "whistle", "ocarina",
    "square lead synth", "sawtooth lead synth", "calliope", "chiff lead synth", "charang", "voice lead synth",
    "fifths lead synth", "bass and lead synth", "new age pad", "warm pad", "polysynth", "choir pad", "bowed pad",
    "metallic pad", "halo pad", "sweep pad", "rain synth", "soundtrack synth", "crystal synth", "atmosphere synth",
    "brightness synth", "goblins synth", "echoes synth", "sci-fi synth", "sitar", "banjo", "shamisen", "koto",
    "kalimba", "bagpipe", "fiddle", "shanai", "tinkle bell", "agogo", "steel drums", "woodblock", "taiko drum",
    "melodic toms", "synth drum", "reverse cymbal", "guitar fret noise", "breath noise", "seashore", "bird tweet",
    "telephone ring", "helicopter", "applause", "gunshot",
)
DRUM_NAME = "drums"

# Key spellings a musician would write (no 'A# major').
MAJOR_NAMES = ("C", "D♭", "D", "E♭", "E", "F", "F#", "G", "A♭", "A", "B♭", "B")
MINOR_NAMES = ("C", "C#", "D", "E♭", "E", "F", "F#", "G", "G#", "A", "B♭", "B")

# style -> (full noun phrases, core noun phrases). Core phrases never name an instrument.
STYLE_NOUNS = {
    "bach": (["Bach chorale", "four-part chorale by J. S. Bach", "Baroque chorale harmonisation"],
             ["Bach chorale", "Baroque chorale", "chorale in the style of Bach"]),
    "palestrina": (["piece of Renaissance polyphony by Palestrina", "Palestrina mass movement"],
                   ["Renaissance polyphony in the style of Palestrina", "Palestrina-style sacred polyphony"]),
    "renaissance": (["piece of Renaissance polyphony", "early music piece", "Renaissance song"],
                    ["piece of Renaissance polyphony", "early music piece", "Renaissance song"]),
    "classical": (["classical piece", "piece of classical music", "concert piece"],
                  ["classical piece", "piece of classical music", "concert piece"]),
    "folk_essen": (["European folk song", "folk song melody", "traditional folk song"],
                   ["European folk song", "folk song melody", "traditional folk song"]),
    "folk_irish": (["Irish fiddle tune", "traditional Irish tune", "Irish dance tune"],
                   ["traditional Irish tune", "Irish dance tune", "Irish folk melody"]),
    "folk_scottish": (["Scottish fiddle air", "traditional Scottish tune", "Scottish air"],
                      ["traditional Scottish tune", "Scottish air", "Scottish folk melody"]),
    "folk_other": (["folk tune", "traditional tune", "folk dance tune"],
                   ["folk tune", "traditional tune", "folk dance tune"]),
    "piano": (["solo piano performance", "piano recital piece", "expressive piano piece"],
              ["expressive concert performance", "virtuoso recital piece", "expressive solo performance"]),
    "pop": (["pop song", "popular song arrangement", "band arrangement of a pop song"],
            ["pop song", "popular song", "catchy pop tune"]),
    "other": (["piece of music", "composition", "piece"], ["piece of music", "composition", "piece"]),
}

MOODS = {  # (mode, tempo class) -> mood words
    ("minor", "slow"): ["melancholic", "sombre", "mournful", "wistful", "sad"],
    ("minor", "mid"): ["pensive", "brooding", "yearning", "bittersweet"],
    ("minor", "fast"): ["agitated", "dark", "restless", "urgent", "stormy"],
    ("major", "slow"): ["serene", "peaceful", "tender", "gentle", "calm"],
    ("major", "mid"): ["warm", "graceful", "cheerful", "bright", "hopeful"],
    ("major", "fast"): ["joyful", "playful", "exuberant", "spirited", "happy"],
    (None, "slow"): ["quiet", "reflective"],
    (None, "mid"): ["steady", "flowing"],
    (None, "fast"): ["energetic", "driving"],
}
REGISTER_MOODS = {("minor", "low"): ["dark", "sombre", "heavy"], ("major", "high"): ["bright", "sparkling", "airy"],
                  ("major", "low"): ["warm", "rich"], ("minor", "high"): ["plaintive", "haunting"]}
DENSITY_WORDS = (["sparse", "spare", "airy"], ["light", "simple", "uncluttered"],
                 ["flowing", "moderately busy", "active"], ["dense", "busy", "richly textured"])
TEXTURE_WORDS = {"monophonic": ["a single melodic line", "an unaccompanied melody", "one melodic line"],
                 "polyphonic": ["several interwoven parts", "a polyphonic texture", "independent melodic lines"],
                 "multi-instrument": ["a full ensemble", "several instruments", "an ensemble texture"]}
METER_WORDS = {"4/4": ["4/4", "common time"], "2/2": ["2/2", "cut time"], "3/4": ["3/4", "triple time", "waltz time"],
               "2/4": ["2/4", "duple time"], "6/8": ["6/8", "compound duple time"], "9/8": ["9/8", "slip-jig time"],
               "12/8": ["12/8", "compound quadruple time"], "3/8": ["3/8"]}


def tempo_words(qpm: float) -> list[str]:
    """Tempo words for a quarter-note tempo; 66-76 bpm is both 'slow' and 'calm'."""
    out = []
    if qpm < 60:
        out.append("very slow")
    if 60 <= qpm < 76:
        out.append("slow")
    if 66 <= qpm < 80:
        out.append("calm")
    if 80 <= qpm < 108:
        out.append("moderate")
    if 108 <= qpm < 132:
        out.append("lively")
    if 132 <= qpm < 160:
        out.append("fast")
    if qpm >= 160:
        out.append("very fast")
    return out


def tempo_class(qpm: float) -> str:
    return "slow" if qpm < 80 else ("mid" if qpm < 120 else "fast")


def key_phrase(key: int | None, mode: str | None) -> str | None:
    if key is None or mode is None:
        return None
    return f"{(MINOR_NAMES if mode == 'minor' else MAJOR_NAMES)[key]} {mode}"


def instrument_names(programs: list[int]) -> list[str]:
    """Plain names, unique, in program order (drums last)."""
    names: list[str] = []
    for p in sorted(programs):
        n = DRUM_NAME if p >= 128 else GM_NAMES[p]
        if n not in names:
            names.append(n)
    return names


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _rng(piece_id: str) -> random.Random:
    return random.Random(int(hashlib.sha1(piece_id.encode()).hexdigest()[:16], 16))


# Dance and song types named in folk-tune titles ("7th Regiment -- Reel"): a caption may say "an Irish reel".
DANCE_TYPES = ("reel", "jig", "slip jig", "hornpipe", "strathspey", "polka", "slide", "march", "waltz", "air",
               "lament", "set dance", "fling", "schottische", "mazurka", "quadrille", "country dance", "planxty")
FOLK_PLACES = {"folk_irish": "Irish", "folk_scottish": "Scottish", "folk_other": "traditional"}


def dance_type(title: str | None) -> str | None:
    """The dance/tune type a folk title names, longest match first ('slip jig' before 'jig')."""
    if not title:
        return None
    low = title.lower()
    for d in sorted(DANCE_TYPES, key=len, reverse=True):
        if re.search(rf"\b{d}s?\b", low):
            return d
    return None


def _mood(meta: dict, rng: random.Random) -> str:
    qpm = float(meta.get("tempo") or 100.0)
    mode = meta.get("mode")
    words = list(MOODS[(mode, tempo_class(qpm) if meta.get("tempo_known", True) else "mid")])
    lo, hi = meta.get("pitch_min"), meta.get("pitch_max")
    if lo is not None and hi is not None:
        mid = (lo + hi) / 2
        reg = "low" if mid < 55 else ("high" if mid > 74 else None)
        words += REGISTER_MOODS.get((mode, reg), [])
    return rng.choice(words)


def _caption(meta: dict, rng: random.Random, full: bool, template: int) -> str:
    style = meta.get("style") or "other"
    nouns = list(STYLE_NOUNS.get(style, STYLE_NOUNS["other"])[0 if full else 1])
    dance = dance_type(meta.get("title")) if style in FOLK_PLACES else None
    if dance:  # the tune type is the most telling noun: weight it up
        nouns += [f"{FOLK_PLACES[style]} {dance}"] * len(nouns)
    noun = rng.choice(nouns)
    mood = _mood(meta, rng)
    if meta.get("tempo_known", True):
        tempo = rng.choice(tempo_words(float(meta.get("tempo") or 100.0)))
    else:  # no tempo marking in the source: do not invent a tempo word, use a second mood word
        tempo = next((w for w in (_mood(meta, rng) for _ in range(8)) if w != mood), "expressive")
    meter = meta.get("meter") or "4/4"
    meter_w = rng.choice(METER_WORDS.get(meter, [meter]))
    dens = rng.choice(DENSITY_WORDS[max(0, min(3, int(meta.get("density", 0))))])
    texture = rng.choice(TEXTURE_WORDS.get(meta.get("polyphony", ""), ["music"]))
    mode = meta.get("mode")
    composer = meta.get("composer")
    surname = composer.split()[-1].lower() if composer else ""
    by = f" by {composer}" if surname and surname not in noun.lower() and rng.random() < 0.5 else ""
    key = key_phrase(meta.get("key"), mode) if full else None
    tonal = key or (f"{mode} mode" if mode else None)  # core captions name the mode, never the tonic
    insts = _join(instrument_names(meta.get("instruments") or [])) if full else ""
    for_inst = f" for {insts}" if insts else ""
    in_tonal = f" in {tonal}" if tonal else ""
    comma_tonal = f", {tonal}" if tonal else ""

    if template == 0:
        s = f"{_cap(_article(mood + ' ' + noun))}{by}{in_tonal}{for_inst}, {tempo}, in {meter_w}."
    elif template == 1:
        s = f"{_cap(tempo)} and {mood}: {_article(noun)}{by} in {meter_w}{comma_tonal}{for_inst}, with {texture}."
    elif template == 2:
        tags = [mood, tempo, meter_w, noun, dens, *([tonal] if tonal else []), *([insts] if insts else [])]
        rng.shuffle(tags)
        s = ", ".join(tags)
    elif template == 3:
        s = (f"{_cap(_article(dens + ' ' + noun))}{by}{for_inst} with {texture}; "
             f"{mood} and {tempo}{comma_tonal}, {meter_w}.")
    else:
        s = f"{_cap(mood)} and {tempo}, {_article(noun)}{by}{for_inst} in {meter_w}{comma_tonal}, {dens} texture."
    return " ".join(s.split())


def make_captions(meta: dict, k: int = K_CAPTIONS) -> tuple[list[str], int]:
    """(captions, n_full): k captions, the first k//2 full (key and instruments named), the rest core."""
    rng = _rng(meta["id"])
    n_full = k // 2
    out: list[str] = []
    templates = list(range(5))
    rng.shuffle(templates)
    for i in range(k):
        full = i < n_full
        t = templates[i % len(templates)]
        c = _caption(meta, rng, full, t)
        tries = 0
        while c in out and tries < 5:  # keep the k captions distinct
            c = _caption(meta, rng, full, rng.randrange(5))
            tries += 1
        out.append(c)
    return out, n_full


def instrument_words() -> set[str]:
    """Every instrument word a caption can contain (for tests of core captions)."""
    return {*GM_NAMES, DRUM_NAME}


def key_words() -> set[str]:
    return {f"{n} {m}" for m in ("major", "minor") for n in (*MAJOR_NAMES, *MINOR_NAMES, *PITCH_NAMES)}
