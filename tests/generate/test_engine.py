"""Engine: cached, constrained, seeded decoding on a tiny random model.

Run: `.venv/bin/python -m pytest tests/generate/test_engine.py -q`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acemusic.errors import InputError
from acemusic.generate.constraints import Controls, GrammarState
from acemusic.generate.engine import Engine, Request
from acemusic.generate.sampling import SamplingConfig
from acemusic.tokenizer import Conditions


def _prompt(tok, **cond) -> np.ndarray:
    return np.append(tok.cond_prefix(Conditions(**cond)), tok.vocab.bar)


def _request(tok, n_bars=4, guided=True, **cond) -> Request:
    cond.setdefault("instruments", (0, 40))
    prompt = _prompt(tok, key=2, mode="minor", **cond)
    uncond = _prompt(tok, instruments=cond["instruments"]) if guided else None
    text = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    return Request(prompt, Controls(n_bars=n_bars, strict_pitch_order=True), text / np.linalg.norm(text), uncond)


@pytest.fixture
def engine(tiny_model, tok) -> Engine:
    return Engine(tiny_model, tok)


def test_generates_valid_sequences_and_streams_their_notes(engine, tok, grammar):
    req = _request(tok, n_bars=4)
    steps = list(engine.stream([req], SamplingConfig(top_p=0.95, cfg=1.5), seed=3, max_new_tokens=2000))
    gen = np.array([s.tokens[0] for s in steps])
    seq = np.concatenate([req.prompt, gen])
    assert gen[-1] == tok.vocab.eos and steps[-1].finished.all()
    assert GrammarState(grammar, req.controls).accepts(seq) is None
    assert int((seq == tok.vocab.bar).sum()) == 4
    streamed = np.array([(n.onset, n.pitch, n.duration, n.program, n.velocity_bin)
                         for s in steps for n in s.notes])
    table = tok.note_table(tok.decode(seq))  # (onset, pitch, duration bin, program, velocity bin)
    assert len(streamed) == len(table) > 0
    streamed[:, 2] = tok.vocab.duration_bin(streamed[:, 2])
    assert np.array_equal(streamed[np.lexsort(streamed.T[::-1])], table)


def test_same_seed_same_music(engine, tok):
    req = _request(tok, n_bars=3)
    a = engine.generate([req], SamplingConfig(top_p=0.9, cfg=1.5), seed=11)[0]
    b = engine.generate([req], SamplingConfig(top_p=0.9, cfg=1.5), seed=11)[0]
    c = engine.generate([req], SamplingConfig(top_p=0.9, cfg=1.5), seed=12)[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    g1 = engine.generate([req], SamplingConfig(temperature=0.0), seed=1)[0]
    g2 = engine.generate([req], SamplingConfig(temperature=0.0), seed=2)[0]
    assert np.array_equal(g1, g2)  # greedy ignores the seed


def test_incremental_structure_matches_tokenizer(tiny_model, tok, monkeypatch):
    """What the engine feeds the decoder for each new token equals Tokenizer.structure of the whole sequence."""
    engine = Engine(tiny_model, tok, speculate=0)
    fed = []
    real = engine.decoder.step

    def spy(ids, bar_idx, pos, is_global, cache):
        fed.append(tuple(np.array(x) for x in (ids, bar_idx, pos, is_global)))
        return real(ids, bar_idx, pos, is_global, cache)

    monkeypatch.setattr(engine.decoder, "step", spy)
    req = _request(tok, n_bars=3)
    gen = engine.generate([req], SamplingConfig(cfg=2.0), seed=5)[0]
    seq = np.concatenate([req.prompt, gen])
    bar, pos, glob = tok.structure(seq)
    n = len(req.prompt)
    assert len(fed) == len(gen) - 1  # every token but the final EOS is fed back
    for i, (ids, b, p, g) in enumerate(fed):
        assert ids.shape == (2,) and ids[0] == ids[1] == seq[n + i]  # cond and uncond rows get the same token
        assert (b == bar[n + i]).all() and (p == pos[n + i]).all() and (g == bool(glob[n + i])).all()


@pytest.mark.parametrize("guided", [False, True])
def test_speculative_feeds_the_right_structure(tiny_model, tok, monkeypatch, guided):
    """Speculative decoding feeds drafts and rewinds rejected ones: the last token written at every position, with
    its structure, is the sequence's own (Tokenizer.structure), and rows of a guided pair get the same tokens."""
    engine = Engine(tiny_model, tok, speculate=4)
    written: dict[int, tuple] = {}
    real = engine.decoder.forward

    def spy(ids, bar_idx, pos, is_global, cache):
        assert (ids == ids[0]).all() and (is_global == is_global[0]).all()
        for j in range(ids.shape[1]):
            written[cache.pos + j] = (ids[0, j], bar_idx[0, j], pos[0, j], bool(is_global[0, j]))
        return real(ids, bar_idx, pos, is_global, cache)

    monkeypatch.setattr(engine.decoder, "forward", spy)
    req = _request(tok, n_bars=6, guided=guided)
    gen = engine.generate([req], SamplingConfig(temperature=0.0, cfg=1.5), seed=5)[0]
    assert engine.spec_stats["accepted"] > 0  # greedy decoding of a tiny model repeats itself: drafts are taken
    seq = np.concatenate([req.prompt, gen])
    bar, pos, glob = tok.structure(seq)
    n = len(req.prompt)
    kept = [written[n + i] for i in range(len(gen) - 1)]  # every token but the final EOS is fed
    assert kept == [(seq[n + i], bar[n + i], pos[n + i], bool(glob[n + i])) for i in range(len(gen) - 1)]


@pytest.mark.parametrize("guided", [False, True])
def test_speculative_greedy_equals_plain_greedy(tiny_model, tok, guided):
    req = _request(tok, n_bars=8, guided=guided)
    plain = Engine(tiny_model, tok, speculate=0).generate([req], SamplingConfig(temperature=0.0, cfg=1.5))[0]
    spec_engine = Engine(tiny_model, tok, speculate=4)
    spec = spec_engine.generate([req], SamplingConfig(temperature=0.0, cfg=1.5))[0]
    assert spec_engine.spec_stats["accepted"] > 10
    assert spec_engine.spec_stats["forwards"] < len(spec) - 10
    np.testing.assert_array_equal(spec, plain)


def test_cached_decoding_matches_full_forward(engine, tok, tiny_model):
    """Greedy decoding with the cache picks the argmax of the full (uncached) forward at every step."""
    req = _request(tok, n_bars=2, guided=False)
    gen = engine.generate([req], SamplingConfig(temperature=0.0), seed=0)[0]
    seq = np.concatenate([req.prompt, gen])
    bar, pos, glob = (torch.from_numpy(x)[None] for x in tok.structure(seq))
    with torch.no_grad():
        logits = tiny_model(torch.from_numpy(seq)[None], bar, pos, glob,
                            torch.from_numpy(req.text_emb)[None], torch.ones(1, dtype=torch.bool))[0]
    st = GrammarState(engine.grammar, req.controls)
    for t in req.prompt.tolist():
        st.advance(t)
    n = len(req.prompt)
    for i, t in enumerate(gen.tolist()):
        masked = logits[n - 1 + i].masked_fill(~torch.from_numpy(st.allowed()), float("-inf"))
        assert int(masked.argmax()) == t
        st.advance(t)


def test_guidance_batches_two_rows(engine, tok, tiny_model, monkeypatch):
    sizes = []
    real = tiny_model.prefill

    def spy(ids, *args):
        sizes.append(ids.shape[0])
        return real(ids, *args)

    monkeypatch.setattr(tiny_model, "prefill", spy)
    req = _request(tok, n_bars=1)
    engine.generate([req], SamplingConfig(cfg=1.0), seed=0)
    engine.generate([req], SamplingConfig(cfg=3.0), seed=0)
    engine.generate([req, _request(tok, n_bars=2)], SamplingConfig(cfg=3.0), seed=0)
    assert sizes == [1, 2, 4]


def test_batch_rows_are_independent_and_valid(engine, tok, grammar):
    reqs = [_request(tok, n_bars=2, instruments=(0, 40)), _request(tok, n_bars=5, instruments=(24, 73))]
    out = engine.generate(reqs, SamplingConfig(top_p=0.95, cfg=1.5), seed=0)
    for r, g in zip(reqs, out, strict=True):
        seq = np.concatenate([r.prompt, g])
        assert GrammarState(grammar, r.controls).accepts(seq) is None
        assert int((seq == tok.vocab.bar).sum()) == r.controls.n_bars
    with pytest.raises(InputError):
        engine.generate([_request(tok, instruments=(0,)), _request(tok, instruments=(0, 40))])


def test_length_guard_closes_the_piece(engine, tok, grammar):
    req = _request(tok, n_bars=6, guided=False)
    gen = engine.generate([req], SamplingConfig(), seed=0, max_new_tokens=40)[0]
    seq = np.concatenate([req.prompt, gen])
    assert len(gen) <= 40 and gen[-1] == tok.vocab.eos
    assert GrammarState(grammar, req.controls).accepts(seq) is None
    assert int((seq == tok.vocab.bar).sum()) == 6
    assert len(tok.note_table(tok.decode(seq))) > 0


def test_int8_engine(tiny_model, tok, grammar):
    """int8 decode weights: the caller's model stays float, outputs are seeded and keep the grammar (closeness of
    the int8 logits to the float ones: tests/model/test_fast_decode.py)."""
    engine = Engine(tiny_model, tok, quantize="int8")
    assert engine.decoder.int8 and isinstance(tiny_model.blocks[0].mlp.fc, torch.nn.Linear)
    req = _request(tok, n_bars=3)
    a = engine.generate([req], SamplingConfig(cfg=1.5), seed=4)[0]
    assert np.array_equal(a, engine.generate([req], SamplingConfig(cfg=1.5), seed=4)[0])
    assert GrammarState(grammar, req.controls).accepts(np.concatenate([req.prompt, a])) is None
    with pytest.raises(ValueError):
        Engine(tiny_model, tok, quantize="int4")


def test_batch_rows_with_bars_at_different_steps(engine, tok):
    """The cache holds a global slot for every step where any row has a Bar: rows out of step must fit."""
    reqs = [_request(tok, n_bars=24, guided=False, instruments=(0,)),
            _request(tok, n_bars=24, guided=False, instruments=(40,))]
    out = engine.generate(reqs, SamplingConfig(top_p=0.9), seed=2)
    assert [int((o == tok.vocab.bar).sum()) for o in out] == [23, 23]  # + the Bar closing each prompt = 24


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_default_keeps_torch_on_one_thread_whatever_the_global_setting(tiny_model, tok, monkeypatch, backend):
    """Reproducibility: the thread count changes torch's fp32 reduction order, so the default engine pins torch
    to 1 thread for the prefill and (torch backend) every decode step, whatever torch's global setting."""
    torch.set_num_threads(2)  # the autouse fixture sets 1 again for the next test
    engine = Engine(tiny_model, tok, backend=backend)
    assert engine.backend == backend
    seen = []
    real_prefill, real_forward = engine.model.prefill, engine.decoder.forward
    monkeypatch.setattr(engine.model, "prefill", lambda *a: seen.append(torch.get_num_threads()) or real_prefill(*a))
    monkeypatch.setattr(engine.decoder, "forward",
                        lambda *a: seen.append(torch.get_num_threads()) or real_forward(*a))
    engine.generate([_request(tok, n_bars=2)], SamplingConfig(cfg=1.5), seed=0)
    assert len(seen) > 5 and set(seen) == {1}
    assert torch.get_num_threads() == 2


def test_auto_threads_give_onnx_batches_the_idle_cores(tiny_model, tok, monkeypatch):
    """onnxruntime's outputs do not depend on its thread count (tests/model/test_fast_decode.py), so "auto" lets
    a guided pair or a batch use the idle cores, and keeps a lone row on one thread."""
    import acemusic.generate.engine as eng_mod

    monkeypatch.setattr(eng_mod, "auto_threads", lambda max_threads=None: 2)
    engine = Engine(tiny_model, tok, backend="onnx")
    seen = []
    real = engine.decoder.forward
    monkeypatch.setattr(engine.decoder, "forward", lambda *a: seen.append(engine.decoder.threads) or real(*a))
    guided = engine.generate([_request(tok, n_bars=2)], SamplingConfig(cfg=1.5), seed=0)[0]
    assert set(seen) == {2}
    seen.clear()
    engine.generate([_request(tok, n_bars=2, guided=False)], SamplingConfig(), seed=0)
    assert set(seen) == {1}
    engine.decode_threads = 1
    assert np.array_equal(engine.generate([_request(tok, n_bars=2)], SamplingConfig(cfg=1.5), seed=0)[0], guided)


def test_auto_backend_falls_back_to_torch(tiny_model, tok, monkeypatch):
    """Without onnxruntime, "auto" decodes with torch (and says so); asking for onnx explicitly is an error."""
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.warns(UserWarning, match="onnx decoding unavailable"):
        engine = Engine(tiny_model, tok)
    assert engine.backend == "torch"
    assert len(engine.generate([_request(tok, n_bars=2)], SamplingConfig(), seed=0)[0]) > 0
    with pytest.raises(ImportError):
        Engine(tiny_model, tok, backend="onnx")


def test_backends_agree(tiny_model, tok):
    """The torch and onnx decoders compute the same logits to float rounding: greedy decoding gives the same
    tokens, guided pair included."""
    outs = [Engine(tiny_model, tok, backend=b).generate([_request(tok, n_bars=3)], SamplingConfig(temperature=0,
                                                                                                  cfg=1.5))[0]
            for b in ("torch", "onnx")]
    assert len(outs[0]) > 20 and np.array_equal(*outs)
    with pytest.raises(ValueError, match="backend"):
        Engine(tiny_model, tok, backend="tensorrt")


def test_decode_threads_are_restored(tiny_model, tok):
    from acemusic.generate.engine import auto_threads

    torch.set_num_threads(2)  # the autouse fixture sets 1 again for the next test
    before = torch.get_num_threads()
    assert 1 <= auto_threads() <= before
    engine = Engine(tiny_model, tok, decode_threads=1)
    it = engine.stream([_request(tok, n_bars=1)], SamplingConfig(cfg=1.5))
    next(it)
    assert torch.get_num_threads() == 1
    it.close()
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("load,own,want", [
    (0.1, 0.0, 2),   # idle machine, fresh process
    (1.0, 1.0, 2),   # idle machine, but this process has been decoding: its own load is not a reason to back off
    (2.0, 1.0, 1),   # another process keeps a core busy while this one decodes
    (1.0, 0.05, 1),  # another process keeps a core busy, this one just started
    (6.0, 0.0, 1),   # heavily loaded: never below one thread
])
def test_threads_for_discounts_the_process_own_load(load, own, want):
    from acemusic.generate.engine import threads_for

    assert threads_for(load, own, cpus=2, max_threads=2) == want


def test_own_load_follows_cpu_use():
    import time

    from acemusic.generate.engine import _OwnLoad

    est = _OwnLoad()
    est.value = 0.0  # as if idle for minutes (a long test process may already have spent a lot of CPU)
    before = est.update()
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:  # keep one core busy for 0.3 s
        pass
    assert est.update() > before
