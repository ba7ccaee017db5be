"""The LSTM baseline at a tiny size: it learns, its held-out NLL is exact (batching and padding change nothing),
it saves and loads, and it samples valid pieces under the grammar.

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/eval/test_lstm.py -q`
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acemusic.eval.baselines.lstm import (
    LSTMConfig,
    LSTMSession,
    LSTMTrainConfig,
    load_lstm,
    lstm_nll,
    save_lstm,
    train_lstm,
)
from acemusic.eval.baselines.sampler import sample_constrained
from acemusic.eval.suite import ModelFreeContext
from acemusic.generate.constraints import Grammar, GrammarState
from acemusic.generate.prompt import PromptSpec
from acemusic.generate.tasks.compose import ComposeTask
from acemusic.tokenizer import Tokenizer

from .tiny_data import melody


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(scope="module")
def seqs(tok) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [tok.encode(melody(rng, int(rng.integers(12)), m, 8)) for m in ("major", "minor") * 4]


@pytest.fixture(scope="module")
def trained(tok, seqs):
    torch.set_num_threads(1)  # module fixtures run before the function-scoped autouse one
    cfg = LSTMConfig(len(tok.vocab), d_model=32, n_layers=2, dropout=0.0)
    return train_lstm(seqs, cfg, LSTMTrainConfig(seq_len=48, batch_size=8, lr=1e-2, warmup=5, max_steps=60,
                                                 minutes=5, log_every=10))


def test_training_lowers_the_loss(trained) -> None:
    _, log = trained
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < losses[0] - 1.0
    assert log[-1]["final"] and log[-1]["step"] == 60


def test_nll_is_exact_and_independent_of_batching(trained, seqs) -> None:
    model, _ = trained
    starts = [6] * len(seqs)
    total, n = lstm_nll(model, seqs, starts)
    assert n == sum(len(s) - 6 for s in seqs)
    # one piece at a time, computed directly from the logits
    by_hand = 0.0
    with torch.no_grad():
        for s in seqs:
            logp = torch.log_softmax(model(torch.from_numpy(s[None, :-1]))[0][0], -1)
            by_hand -= float(logp[torch.arange(5, len(s) - 1), torch.from_numpy(s[6:])].sum())
    assert total == pytest.approx(by_hand, rel=1e-5)
    small, n2 = lstm_nll(model, seqs, starts, max_batch_tokens=1)  # every piece alone
    assert n2 == n and small == pytest.approx(total, rel=1e-5)


def test_save_load_round_trip(tmp_path, trained, seqs) -> None:
    model, _ = trained
    save_lstm(model, tmp_path / "lstm", {"note": "test"})
    again = load_lstm(tmp_path / "lstm")
    starts = [6] * len(seqs)
    assert lstm_nll(again, seqs, starts) == pytest.approx(lstm_nll(model, seqs, starts))


def test_session_matches_full_forward_and_samples_valid_pieces(tok, trained, seqs) -> None:
    model, _ = trained
    s = seqs[0]
    sess = LSTMSession(model)
    sess.start(s[:10])
    for t in s[10:20].tolist():
        sess.push(t)
    with torch.no_grad():
        full = torch.softmax(model(torch.from_numpy(s[None, :20]))[0][0, -1].double(), -1).numpy()
    assert np.allclose(sess.probs(), full, atol=1e-6)

    task = ComposeTask(PromptSpec(key=0, mode="major", tempo=120.0, meter=(4, 4), instruments=(73,)), bars=3)
    req = task.build(ModelFreeContext(tok))
    g = Grammar(tok.vocab)
    ids = sample_constrained(LSTMSession(model), req.prompt, req.controls, g, seed=0,
                             max_new_tokens=task.max_new_tokens())
    out = np.concatenate([req.prompt, ids])
    assert GrammarState(g, req.controls).accepts(out) is None
    assert int((out == tok.vocab.bar).sum()) == 3 and ids[-1] == tok.vocab.eos
    assert tok.decode(out).note_num() > 0


def test_step_budget_alone_has_no_time_limit(tok, seqs) -> None:
    """minutes=None: exactly max_steps steps, the schedule decays by steps; with neither budget it refuses."""
    cfg = LSTMConfig(len(tok.vocab), d_model=16, n_layers=1, dropout=0.0)
    _, log = train_lstm(seqs, cfg, LSTMTrainConfig(seq_len=32, batch_size=4, lr=1e-2, warmup=2, max_steps=12,
                                                   minutes=None, log_every=1))
    assert log[-1]["step"] == 12
    steps = [r for r in log if "lr" in r]
    assert steps[-1]["lr"] < steps[2]["lr"]  # decays with the step fraction, not with (unbounded) time
    with pytest.raises(ValueError, match="budget"):
        train_lstm(seqs, cfg, LSTMTrainConfig(minutes=None, max_steps=None))
