"""Evaluation protocol: sequences of a split, scored positions, windows, and the `acemusic eval ngram` command.

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/eval/test_nll.py -q`
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import symusic
from typer.testing import CliRunner

from acemusic.errors import InputError
from acemusic.eval import KneserNeyLM
from acemusic.eval.nll import (
    conditions_from_meta,
    evaluate_ngram,
    n_scored,
    ngram_nll,
    score_windows,
    sequences_for_split,
)
from acemusic.tokenizer import Conditions, Tokenizer


def scale_score(rng: np.random.Generator, n: int, program: int) -> symusic.Score:
    """A little random-walk melody on the sixteenth grid."""
    s = symusic.Score(12)
    t = symusic.Track("p", program, False)
    onsets = np.cumsum(rng.choice([3, 6, 12], size=n)) - 3
    pitches = 60 + np.cumsum(rng.integers(-2, 3, size=n))
    t.notes = symusic.core.NoteTickList.from_numpy(
        onsets.astype(np.int32), np.full(n, 6, np.int32), pitches.astype(np.int8), np.full(n, 80, np.int8)
    )
    s.tracks.append(t)
    return s


def write_dataset(root: Path, tok: Tokenizer, sizes: dict[str, int], seed: int = 0) -> dict[str, list]:
    """A dataset directory in the docs/TOKENS.md layout; returns the bodies and metas written per split."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    tok.vocab.save(root / "vocab.json")
    written = {}
    for split, n_pieces in sizes.items():
        bodies, metas = [], []
        for i in range(n_pieces):
            program = int(rng.choice([0, 40, 73]))
            bodies.append(tok.encode_body(scale_score(rng, int(rng.integers(8, 60)), program)))
            metas.append(
                {
                    "id": f"{split}{i}",
                    "style": ["bach", "folk_essen", None][i % 3],
                    "key": [2, None, 7][i % 3],
                    "mode": ["minor", None, "major"][i % 3],
                    "notes_per_bar": [5.0, None, 20.0][i % 3],
                    "instruments": [program],
                }
            )
        np.concatenate(bodies).astype(np.uint16).tofile(root / f"{split}.bin")
        np.save(root / f"{split}.idx.npy", np.concatenate([[0], np.cumsum([len(b) for b in bodies])]))
        (root / f"{split}.meta.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metas))
        written[split] = [bodies, metas]
    return written


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tok: Tokenizer) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("tokens")
    return root, write_dataset(root, tok, {"train": 40, "val": 6, "test": 5})


def test_conditions_from_meta(tok: Tokenizer) -> None:
    c = conditions_from_meta(
        {"style": "bach", "key": 2, "mode": "minor", "notes_per_bar": 5.0, "instruments": [40, 0]}, tok
    )
    assert c == Conditions(style="bach", key=2, mode="minor", density=1, instruments=(40, 0))
    assert conditions_from_meta({"density": 3}, tok) == Conditions(density=3)
    assert conditions_from_meta({}, tok) == Conditions()


def test_sequences_for_split(dataset, tok: Tokenizer) -> None:
    root, written = dataset
    seqs, starts = sequences_for_split(root, "val", tok)
    bodies, metas = written["val"]
    assert len(seqs) == len(starts) == 6
    for seq, st, body, meta in zip(seqs, starts, bodies, metas, strict=True):
        prefix = tok.cond_prefix(conditions_from_meta(meta, tok))
        assert st == len(prefix)
        np.testing.assert_array_equal(seq[:st], prefix)
        np.testing.assert_array_equal(seq[st:-1], body)
        assert seq[-1] == tok.vocab.eos and seq[0] == tok.vocab.bos
    assert n_scored(seqs, starts) == sum(len(b) + 1 for b in bodies)


def test_missing_split_is_input_error(tmp_path) -> None:
    with pytest.raises(InputError, match="missing"):
        sequences_for_split(tmp_path, "test")
    with pytest.raises(InputError, match="unknown split"):
        sequences_for_split(tmp_path, "dev")


def test_ngram_nll_scores_body_and_eos_only(dataset, tok: Tokenizer) -> None:
    root, _ = dataset
    train, _ = sequences_for_split(root, "train", tok)
    seqs, starts = sequences_for_split(root, "test", tok)
    lm = KneserNeyLM(order=3).fit(train, vocab_size=len(tok.vocab))
    total, n = ngram_nll(lm, seqs, starts)
    assert n == n_scored(seqs, starts)
    manual = sum(lm.nll(s, start=st).sum() for s, st in zip(seqs, starts, strict=True))
    assert total == pytest.approx(manual)
    assert total / n < np.log(len(tok.vocab)) / 2  # far better than uniform on such regular pieces


@pytest.mark.parametrize(
    "length, start, context, stride", [(10, 3, 4, 2), (50, 7, 16, 8), (30, 29, 8, 7), (5, 2, 64, 32), (40, 35, 6, 1)]
)
def test_score_windows_cover_each_target_once(length: int, start: int, context: int, stride: int) -> None:
    windows = score_windows(length, start, context, stride)
    targets = np.concatenate([np.arange(first, hi) for _, hi, first in windows])
    np.testing.assert_array_equal(targets, np.arange(start, length))
    for lo, hi, first in windows:
        assert 0 <= lo < first < hi <= length and hi - lo <= context
        assert first - lo >= min(first, context - stride)  # each target keeps at least context - stride of history
    with pytest.raises(ValueError):
        score_windows(10, 3, 4, 4)


def test_evaluate_ngram_and_cli(dataset, tmp_path) -> None:
    root, _ = dataset
    lm, report = evaluate_ngram(root, order=4)
    assert report["val"]["tokens"] > 0 and report["test"]["pieces"] == 5
    assert report["test"]["perplexity"] == pytest.approx(np.exp(report["test"]["nll_per_token"]))

    import acemusic.cli.eval  # noqa: F401  registers `acemusic eval`
    from acemusic.cli.app import app

    out = tmp_path / "res.json"
    model = tmp_path / "kn.npz"
    args = ["eval", "ngram", "--data", str(root), "--order", "4", "--out", str(out), "--save-model", str(model)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    assert saved["test"]["nll_per_token"] == pytest.approx(report["test"]["nll_per_token"])
    seqs, starts = sequences_for_split(root, "val")
    assert ngram_nll(KneserNeyLM.load(model), seqs, starts)[0] == pytest.approx(ngram_nll(lm, seqs, starts)[0])
    again = CliRunner().invoke(app, args)  # refuses to overwrite without --force
    assert again.exit_code == 1 and "--force" in again.output
