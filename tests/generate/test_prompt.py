"""Prompt parser. Run: `.venv/bin/python -m pytest tests/generate/test_prompt.py -q`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acemusic.errors import InputError
from acemusic.generate.prompt import (
    CHOICES,
    PITCH_CLASS,
    TEMPO_WORDS,
    PromptSpec,
    check_bars,
    check_prompt,
    parse_key,
    parse_meter,
    parse_prompt,
    parse_tempo,
    resolve_instruments,
    tempo_matches,
)
from acemusic.tokenizer.vocab import Vocab

PROMPTS = Path(__file__).resolve().parents[2] / "src" / "acemusic" / "eval" / "prompts.jsonl"


def _pc(name: str) -> int:
    return (PITCH_CLASS[name[0]] + {"#": 1, "b": -1}.get(name[1:], 0)) % 12


def test_eval_prompts_parse_to_their_asks():
    rows = [json.loads(line) for line in PROMPTS.read_text().splitlines() if line.strip()]
    assert len(rows) == 50
    for r in rows:
        a, s = r["asks"], parse_prompt(r["prompt"])
        assert s.key == _pc(a["key"]) and s.key_name == a["key"], r
        assert s.mode == a["mode"], r
        assert s.instruments == (a["program"],), r
        if "tempo_word" in a:
            assert s.tempo_word == a["tempo_word"], r
            assert tempo_matches(s.tempo, word=a["tempo_word"]), r
        if "tempo_bpm" in a:
            assert s.tempo == a["tempo_bpm"], r
        if "meter" in a:
            assert f"{s.meter[0]}/{s.meter[1]}" == a["meter"], r


@pytest.mark.parametrize("text,pc,name,mode", [
    ("melancholic piano, slow, D minor", 2, "D", "minor"),
    ("something in C-sharp minor", 1, "C#", "minor"),
    ("a tune in B flat major", 10, "Bb", "major"),
    ("Bb major march", 10, "Bb", "major"),
    ("F sharp minor strings", 6, "F#", "minor"),
    ("in D-flat, gently", 1, "Db", None),
    ("Ebm ballad", 3, "Eb", "minor"),
    ("e minor prelude", 4, "E", "minor"),
    ("a slow sad piece for oboe", None, None, None),  # 'a' is an article, not a key
])
def test_keys(text, pc, name, mode):
    s = parse_prompt(text)
    assert (s.key, s.key_name, s.mode) == (pc, name, mode)


def test_tempo_meter_style_mood():
    s = parse_prompt("a lively waltz for flute and cello, Bach chorale style, 3/4")
    assert s.tempo_word == "lively" and s.tempo == TEMPO_WORDS["lively"][2]
    assert s.meter == (3, 4) and s.style == "bach" and s.instruments == (42, 73)
    assert parse_prompt("very slow, dark organ").tempo_word == "very slow"
    assert parse_prompt("fast jig on the fiddle").meter == (6, 8)
    assert parse_prompt("irish reel").style == "folk_irish"
    assert parse_prompt("piano at 132 bpm").tempo == 132.0
    s = parse_prompt("sad strings")
    assert s.mode is None and s.implied_mode == "minor" and s.effective_mode == "minor"
    assert parse_prompt("triumphant brass").implied_mode == "major"
    assert parse_prompt("dense busy piano").density == 3


def test_instruments():
    assert parse_prompt("acoustic guitar and double bass").instruments == (24, 43)
    assert parse_prompt("electric piano with drums").instruments == (4, 128)
    assert parse_prompt("string quartet").instruments == (40, 41, 42)
    assert parse_prompt("english horn solo").instruments == (69,)
    assert parse_prompt("two violins").instruments == (40,)
    assert resolve_instruments(["piano", "strings", "33"]) == (0, 33, 48)
    with pytest.raises(InputError, match=r"kazoo.*choose from"):
        resolve_instruments(["kazoo"])
    assert len(resolve_instruments(list(CHOICES))) >= 40  # every listed choice resolves


def test_representative_tempi_survive_binning():
    v = Vocab()
    for word, (lo, hi, bpm) in TEMPO_WORDS.items():
        binned = float(v.tempo_bins[v.tempo_bin(bpm)])
        assert lo <= binned <= hi, word


def test_override_and_errors():
    s = parse_prompt("melancholic piano, slow, D minor").override(key="E flat major", tempo="90", meter="6/8",
                                                                   instruments="violin, cello")
    assert (s.key, s.mode, s.tempo, s.meter, s.instruments) == (3, "major", 90.0, (6, 8), (40, 42))
    assert parse_prompt("x").override(tempo="fast").tempo_word == "fast"
    assert parse_key("C#") == (1, "C#", None)
    assert parse_meter("waltz") == (3, 4)
    assert parse_tempo(70) == (70.0, None)
    for bad in (lambda: parse_key("H major"), lambda: parse_meter("5/3"), lambda: parse_meter("16/4"),
                lambda: parse_tempo("glacial"), lambda: parse_tempo("5"), lambda: check_prompt("   "),
                lambda: check_prompt("x" * 1001), lambda: check_bars(0), lambda: check_bars(257),
                lambda: PromptSpec().override(mode="dorian")):
        with pytest.raises(InputError):
            bad()
    spec = parse_prompt("joyful 6/8 clarinet tune in E major at 50 bpm")
    assert PromptSpec.from_dict(spec.to_dict()) == spec
