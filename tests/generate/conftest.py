"""Shared fixtures for the generation tests: tokenizer, grammar, tiny random model, a tiny saved checkpoint, and
real pieces (fixture MIDI files, music21 chorales / folk tunes / Palestrina) encoded by the tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from acemusic.generate.constraints import Controls, Grammar, GrammarState
from acemusic.tokenizer import Tokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "midi"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tok() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(scope="session")
def grammar(tok) -> Grammar:
    return Grammar(tok.vocab)


@pytest.fixture(scope="session")
def tiny_model(tok):
    from acemusic.model import ModelConfig, MusicTransformer

    torch.manual_seed(0)
    return MusicTransformer(ModelConfig.preset("tiny", vocab_size=len(tok.vocab))).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model, tok) -> Path:
    from acemusic.model.checkpoint import save

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    save(tiny_model, out, {"vocab": tok.vocab.config.to_dict()})
    return out


def sample_uniform(grammar: Grammar, controls: Controls, prefix: np.ndarray, rng: np.random.Generator,
                   max_tokens: int = 5000) -> tuple[np.ndarray, GrammarState]:
    """Constrained sampling from uniform logits: a random allowed token each step until EOS. The prefix is closed
    with a Bar (as tasks do), so the Inst set is the one asked."""
    prefix = np.append(prefix, grammar.bar)
    st = GrammarState(grammar, controls)
    for t in prefix.tolist():
        st.advance(t)
    out = list(prefix.tolist())
    for i in range(max_tokens):
        if max_tokens - i < 40:
            st.closing = True
        allowed = np.flatnonzero(st.allowed())
        assert len(allowed), f"dead end after {[grammar.vocab.token(t) for t in out[-8:]]}"
        t = int(rng.choice(allowed))
        st.advance(t)
        out.append(t)
        if st.done:
            break
    return np.asarray(out, np.int64), st


def _m21_pieces(n_chorales: int, n_folk: int, n_palestrina: int) -> list[tuple[str, object]]:
    from music21 import converter, corpus

    from acemusic.data.corpus import read_text, split_abc
    from acemusic.data.m21 import stream_to_score

    out = []
    for i, ch in enumerate(corpus.chorales.Iterator()):
        if i >= n_chorales:
            break
        out.append((f"chorale {i}", stream_to_score(ch, "bach")))
    for name in ("essenFolksong/altdeu10.abc", "oneills1850/0001-0050.abc"):
        path = corpus.getWork(name)
        header, tunes = split_abc(read_text(Path(path)))
        for j, tune in enumerate(tunes[: n_folk // 2]):
            s = converter.parse(header + tune, format="abc")
            out.append((f"{name} tune {j}", stream_to_score(s, "folk_essen")))
    for p in corpus.getComposer("palestrina")[:n_palestrina]:
        out.append((str(p), stream_to_score(corpus.parse(p), "palestrina")))
    return out


def real_sequences(tok: Tokenizer, n_chorales: int, n_folk: int, n_palestrina: int) -> list[tuple[str, np.ndarray]]:
    """(name, prefix + body + EOS) for fixture MIDI files and music21 pieces."""
    seqs = []
    for f in ("bach_bwv66_6.mid", "band.mid"):
        seqs.append((f, tok.encode(tok.load_score(FIXTURES / f))))
    for name, score in _m21_pieces(n_chorales, n_folk, n_palestrina):
        if score.note_num() > 0:
            seqs.append((name, tok.encode(score)))
    return seqs


@pytest.fixture(scope="session")
def real_small(tok):
    return real_sequences(tok, n_chorales=4, n_folk=6, n_palestrina=1)
