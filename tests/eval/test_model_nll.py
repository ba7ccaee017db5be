"""Model NLL under the shared protocol: every target scored once, windows shaped like training windows, equal to a
direct forward when a piece fits one window, independent of batching, and the `acemusic eval nll` command.

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/eval/test_model_nll.py -q`
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch
from typer.testing import CliRunner

from acemusic.data.shards import ShardWriter, TokenDataset
from acemusic.eval import KneserNeyLM
from acemusic.eval.model_nll import first_captions, model_nll, piece_windows, score_model
from acemusic.eval.nll import n_scored, ngram_nll, sequences_for_split
from acemusic.model import ModelConfig, MusicTransformer
from acemusic.model.checkpoint import save
from acemusic.tokenizer import Tokenizer

SIZES = {"train": 10, "val": 2, "test": 5}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def random_score(rng: np.random.Generator, n_bars: int, dense_bar: int | None = None) -> symusic.Score:
    """Two instruments, changing velocities, a mid-bar tempo change and a 3/4 section: state for slice_bars to
    inject. `dense_bar` gets 40 notes, far more tokens than a short test window holds."""
    s = symusic.Score(12)
    s.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    s.time_signatures.append(symusic.TimeSignature(48 * (n_bars // 2), 3, 4))
    s.tempos.append(symusic.Tempo(0, 100.0))
    s.tempos.append(symusic.Tempo(48 * 2 + 6, 140.0))
    starts = [48 * b if b <= n_bars // 2 else 48 * (n_bars // 2) + 36 * (b - n_bars // 2) for b in range(n_bars)]
    for program in rng.choice([0, 33, 40, 73], size=2, replace=False):
        t = symusic.Track("t", int(program), False)
        for b, t0 in enumerate(starts):
            k = 40 if b == dense_bar else int(rng.integers(1, 5))
            for _ in range(k):
                t.notes.append(symusic.Note(t0 + 3 * int(rng.integers(0, 12)), int(rng.choice([3, 6, 12])),
                                            int(rng.integers(48, 80)), int(rng.choice([50, 80, 110]))))
        s.tracks.append(t)
    return s


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, tok: Tokenizer) -> Path:
    """A dataset in the docs/TOKENS.md layout; the last test piece has no caption (null memory)."""
    root = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    tok.vocab.save(root / "vocab.json")
    for split, n in SIZES.items():
        w, caps = ShardWriter(root, split), []
        for i in range(n):
            score = random_score(rng, int(rng.integers(4, 24)), dense_bar=2 if i == 0 else None)
            cond = tok.conditions_of(score)
            n_caps = 0 if (split == "test" and i == n - 1) else 2
            meta = {"id": f"{split}{i}", "style": ["bach", None][i % 2], "key": [2, None][i % 2],
                    "mode": ["minor", None][i % 2], "density": cond.density, "instruments": list(cond.instruments),
                    "captions": [f"caption {k}" for k in range(n_caps)], "n_full_captions": n_caps}
            w.add(tok.encode_body(score).astype(np.uint16), meta)
            e = rng.standard_normal((4, 384)).astype(np.float32)
            caps.append((e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float16))
        w.close()
        np.save(root / f"{split}.captions.npy", np.stack(caps))
    return root


@pytest.fixture(scope="module")
def model(tok: Tokenizer) -> MusicTransformer:
    torch.manual_seed(0)
    return MusicTransformer(ModelConfig.preset("tiny", len(tok.vocab))).eval()


@pytest.fixture(scope="module")
def split(data_dir: Path, tok: Tokenizer) -> tuple[list[np.ndarray], list[int], list]:
    seqs, starts = sequences_for_split(data_dir, "test", tok)
    return seqs, starts, first_captions(TokenDataset(data_dir, "test"))


def test_first_captions(split) -> None:
    *_, texts = split
    assert all(t is not None and t.dtype == np.float32 and t.shape == (384,) for t in texts[:-1])
    assert texts[-1] is None


@pytest.mark.parametrize("context, stride", [(512, 256), (64, 16), (48, 30), (40, 1)])
def test_windows_score_every_target_once(split, tok: Tokenizer, context: int, stride: int) -> None:
    seqs, starts, _ = split
    for i, (seq, st) in enumerate(zip(seqs, starts, strict=True)):
        ws = piece_windows(tok, seq, st, context, stride, piece=i)
        targets = np.concatenate([w.ids[w.score_at] for w in ws])
        np.testing.assert_array_equal(targets, seq[st:])  # in order, none twice, none left out
        for w in ws:
            assert len(w.ids) <= context and w.score_at.min() > st - 1 and w.piece == i
            np.testing.assert_array_equal(w.ids[:st], seq[:st])  # every window sees the conditioning prefix


def test_windows_are_shaped_like_training_windows(split, tok: Tokenizer) -> None:
    """Prefix + slice_bars from a bar line (state injected) with structure from tok.structure; mid-bar windows
    only where one bar is longer than the window allows, with positions taken from the whole piece."""
    seqs, starts, _ = split
    n_mid = 0
    for seq, st in zip(seqs, starts, strict=True):
        body = seq[st:-1]
        full_pos = tok.structure(body)[1]
        for w in piece_windows(tok, seq, st, 64, 16):
            bar_idx, pos, is_global = tok.structure(w.ids)
            np.testing.assert_array_equal(w.bar_idx, bar_idx)
            np.testing.assert_array_equal(w.is_global, is_global)
            rest = w.ids[st:]
            rest = rest[:-1] if rest[-1] == tok.vocab.eos else rest
            if not w.mid_bar:
                np.testing.assert_array_equal(w.pos, pos)
                np.testing.assert_array_equal(rest, tok.slice_bars(body, w.first_bar)[: len(rest)])
                assert w.bar_idx[st] == 1
                continue
            n_mid += 1
            lo = w.body_start
            bars = tok.bar_starts(body)
            assert bars[w.first_bar] < lo and (w.first_bar + 1 == len(bars) or bars[w.first_bar + 1] > lo)
            state = [int(body[:lo][tok.vocab.type_of[body[:lo]] == tok.vocab.type_of[tok.vocab.id(t)]][-1])
                     for t in ("TimeSig", "Tempo", "Program", "Velocity")]
            head = [tok.vocab.bar, *state]  # Bar + the running state: test piece 0 has notes before its dense bar
            np.testing.assert_array_equal(rest[: len(head)], head)
            k = len(rest) - len(head)  # body tokens in the window
            np.testing.assert_array_equal(rest[len(head):], body[lo: lo + k])
            np.testing.assert_array_equal(w.pos[st + len(head): st + len(rest)], full_pos[lo: lo + k])
    assert n_mid > 0  # the dense bar of test piece 0 forces some


def test_token_count_matches_ngram(split, data_dir: Path, tok: Tokenizer, model: MusicTransformer) -> None:
    seqs, starts, texts = split
    train, _ = sequences_for_split(data_dir, "train", tok)
    lm = KneserNeyLM(3).fit(train, vocab_size=len(tok.vocab))
    _, n_gram = ngram_nll(lm, seqs, starts)
    total, n = model_nll(model, tok, seqs, starts, context=64, stride=24, text_emb=texts, batch_size=3)
    assert n == n_gram == n_scored(seqs, starts)
    assert np.isfinite(total) and 0 < total / n < np.log(len(tok.vocab)) + 1  # a random model is near uniform


def direct_nll(model: MusicTransformer, tok: Tokenizer, seq: np.ndarray, start: int, text) -> float:
    """Summed NLL of seq[start:] from one forward over the whole sequence, as training computes it."""
    bar_idx, pos, is_global = (torch.from_numpy(x)[None, :-1] for x in tok.structure(seq))
    emb = None if text is None else torch.from_numpy(np.asarray(text, np.float32))[None]
    cond = None if text is None else torch.ones(1, dtype=torch.bool)
    with torch.no_grad():
        logits = model(torch.from_numpy(seq)[None, :-1], bar_idx, pos, is_global, emb, cond)[0].double()
    logp = torch.log_softmax(logits, -1)[torch.arange(len(seq) - 1), torch.from_numpy(seq[1:])]
    return float(-logp[start - 1:].sum())


def test_single_window_equals_direct_forward(split, tok: Tokenizer, model: MusicTransformer) -> None:
    seqs, starts, texts = split
    assert max(len(s) for s in seqs) > model.cfg.window  # the model's own sliding window is crossed
    context = max(len(s) for s in seqs) + 8
    for seq, st, text in zip(seqs, starts, texts, strict=True):
        assert len(piece_windows(tok, seq, st, context, 8)) == 1
        for t in (text, None):
            total, n = model_nll(model, tok, [seq], [st], context=context, stride=8, text_emb=[t])
            assert n == len(seq) - st
            assert total == pytest.approx(direct_nll(model, tok, seq, st, t), rel=1e-5)


def test_batching_and_text(split, tok: Tokenizer, model: MusicTransformer) -> None:
    seqs, starts, texts = split
    one = score_model(model, tok, seqs, starts, 48, 20, texts, batch_size=1)
    many = score_model(model, tok, seqs, starts, 48, 20, texts, batch_size=7)  # right padding changes nothing
    assert many.total_nll == pytest.approx(one.total_nll, rel=1e-5) and many.windows == one.windows > len(seqs)
    null, _ = model_nll(model, tok, seqs, starts, 48, 20, text_emb=None)
    assert abs(null - one.total_nll) > 1e-3  # the caption reaches the model
    last = len(seqs) - 1  # no caption: conditional and unconditional agree
    assert model_nll(model, tok, seqs[last:], starts[last:], 48, 20, [None])[0] == pytest.approx(
        model_nll(model, tok, seqs[last:], starts[last:], 48, 20)[0])


def test_stride_must_fit_the_context(split, tok: Tokenizer) -> None:
    seqs, starts, _ = split
    with pytest.raises(ValueError, match="stride"):
        piece_windows(tok, seqs[0], starts[0], 32, 30)


def test_cli_writes_json_and_refuses_overwrite(data_dir: Path, tok: Tokenizer, model: MusicTransformer,
                                               tmp_path: Path) -> None:
    import acemusic.cli.eval  # noqa: F401  registers `acemusic eval`
    from acemusic.cli.app import app
    from acemusic.eval.nll import evaluate_ngram

    ckpt = save(model, tmp_path / "model", {"vocab": tok.vocab.config.to_dict(), "steps": 3, "tokens_seen": 1234})
    out = tmp_path / "res" / "perplexity.json"
    args = ["eval", "nll", "--checkpoint", str(ckpt), "--data", str(data_dir), "--order", "3", "--context", "64",
            "--stride", "24", "--threads", "1", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["command"].startswith("acemusic eval nll --checkpoint")
    assert report["checkpoint"]["steps"] == 3 and report["checkpoint"]["tokens_seen"] == 1234
    assert report["torch"]["threads"] == 1 and report["pieces"] == SIZES["test"]
    _, ref = evaluate_ngram(data_dir, order=3, splits=("test",))
    assert report["ngram"]["nll_per_token"] == pytest.approx(ref["test"]["nll_per_token"])
    seqs, starts, texts = (list(x) for x in (*sequences_for_split(data_dir, "test", tok),
                                             first_captions(TokenDataset(data_dir, "test"))))
    for name, text in (("conditional", texts), ("unconditional", None)):
        r = report["model"][name]
        assert r["tokens"] == report["ngram"]["tokens"]
        total, n = model_nll(model, tok, seqs, starts, 64, 24, text)
        assert r["nll_per_token"] == pytest.approx(total / n, rel=1e-5)
        assert r["reduction_vs_ngram"] == pytest.approx(1 - r["nll_per_token"] / report["ngram"]["nll_per_token"])
    assert report["goal"]["measured_on"] == "conditional" and report["goal"]["met"] is False  # random model
    assert "perplexity" in res.output and "n-gram" in res.output

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "--force" in again.output
    forced = CliRunner().invoke(app, [*args[:-1], str(out), "--force", "--limit", "2", "--no-uncond"])
    assert forced.exit_code == 0, forced.output
    report = json.loads(out.read_text())
    assert report["pieces"] == 2 and list(report["model"]) == ["conditional"] and report["limit"] == 2


def test_cli_rejects_a_checkpoint_with_another_vocabulary(data_dir: Path, tok: Tokenizer, model: MusicTransformer,
                                                          tmp_path: Path) -> None:
    import acemusic.cli.eval  # noqa: F401
    from acemusic.cli.app import app

    vocab = {**tok.vocab.config.to_dict(), "n_tempo_bins": 7}
    ckpt = save(model, tmp_path / "other", {"vocab": vocab})
    res = CliRunner().invoke(app, ["eval", "nll", "--checkpoint", str(ckpt), "--data", str(data_dir)])
    assert res.exit_code == 1 and "vocabulary" in res.output
