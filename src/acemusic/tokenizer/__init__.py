"""MIDI <-> tokens. See docs/TOKENS.md."""

from acemusic.tokenizer.tokenizer import Conditions, Tokenizer
from acemusic.tokenizer.vocab import DRUMS, TPQ, Vocab, VocabConfig

__all__ = ["DRUMS", "TPQ", "Conditions", "Tokenizer", "Vocab", "VocabConfig"]
