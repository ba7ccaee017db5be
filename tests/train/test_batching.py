"""Windows, augmentation bookkeeping, dynamic batches, determinism, FIM layout.
Run: pytest tests/train/test_batching.py"""

from __future__ import annotations

import numpy as np
import pytest

from acemusic.data import augment
from acemusic.data.shards import TokenDataset
from acemusic.train.batching import BatchStream, WindowMaker, collate, fim_sequence, pack, val_batches
from acemusic.train.config import CurriculumStage, TrainConfig

NO_DROPOUT = dict(text_dropout_p=0.0, tag_dropout_p=0.0, uncond_p=0.0)


@pytest.fixture(scope="module")
def ds(data_dir):
    return TokenDataset(data_dir, "train")


def _types(tok, ids):
    return [tok.vocab.tokens[i].split("_")[0] for i in ids]


def test_examples_fit_and_are_well_formed(ds, tok):
    cfg = TrainConfig.preset("tiny", seq_len=96, fim_rate=0.0)
    maker = WindowMaker(ds, tok, cfg)
    rng = np.random.default_rng(0)
    v = tok.vocab
    for _ in range(60):
        i = int(rng.integers(len(ds)))
        e = maker.example(i, rng)
        assert len(e.ids) <= cfg.seq_len
        assert e.ids[0] == v.bos and e.ids[e.n_prefix] == v.bar
        assert _types(tok, e.ids[1:5]) == ["Style", "Key", "Mode", "Density"]
        assert all(t == "Inst" for t in _types(tok, e.ids[5:e.n_prefix]))
        bi, p, g = tok.structure(e.ids)
        np.testing.assert_array_equal(e.bar_idx, bi)
        np.testing.assert_array_equal(e.pos, p)
        np.testing.assert_array_equal(e.is_global, g)
        # every body Program is announced in the prefix
        insts = {int(v.value_of[t]) for t in e.ids[5:e.n_prefix]}
        assert set(augment.programs_in(e.ids[e.n_prefix:], v)) <= insts
        body = e.ids[e.n_prefix:]
        assert (body == v.eos).sum() <= 1 and (body[:-1] != v.eos).all()
        # the window decodes to notes (self-contained)
        assert len(tok.note_table(tok.decode(e.ids))) > 0


def test_eos_exactly_when_window_reaches_the_end(ds, tok):
    cfg = TrainConfig.preset("tiny", seq_len=1024, tokens_per_batch=2048, transpose_p=0.0, tempo_shift_bins=0,
                             program_remap_p=0.0, **NO_DROPOUT)
    maker = WindowMaker(ds, tok, cfg)
    for i in range(len(ds)):
        e = maker.example(i, np.random.default_rng(i))
        body = ds.piece(i).astype(np.int64)
        if len(body) + e.n_prefix + 1 <= cfg.seq_len:  # the whole piece fits: window = piece + EOS
            np.testing.assert_array_equal(e.ids[e.n_prefix:], np.append(body, tok.vocab.eos))
    long = int(np.argmax([len(ds.piece(i)) for i in range(len(ds))]))
    short_cfg = cfg.replace(seq_len=128)
    maker = WindowMaker(ds, tok, short_cfg)
    ends = [maker.example(long, np.random.default_rng(s)).ids[-1] == tok.vocab.eos for s in range(40)]
    assert any(ends) and not all(ends)


def test_prefix_follows_augmentation(ds, tok):
    """Transposition shifts the Key token; remapping changes the Inst tokens; captions switch to core ones."""
    v = tok.vocab
    cfg = TrainConfig.preset("tiny", seq_len=1024, tokens_per_batch=2048, transpose_p=1.0, tempo_shift_bins=0,
                             program_remap_p=0.0, **NO_DROPOUT)
    maker = WindowMaker(ds, tok, cfg)
    seen_shift = False
    for i in range(len(ds)):
        meta = ds.meta(i)
        body = ds.piece(i).astype(np.int64)
        if len(body) + 8 > cfg.seq_len or meta["key"] is None:
            continue
        e = maker.example(i, np.random.default_rng(100 + i))
        w = e.ids[e.n_prefix:-1]
        m = augment.pitched_mask(body, v)
        shift = int(v.value_of[w[m]][0] - v.value_of[body[m]][0])
        assert (v.value_of[w[m]] - v.value_of[body[m]] == shift).all()
        assert int(v.value_of[e.ids[2]]) - 1 == (meta["key"] + shift) % 12
        if shift:
            seen_shift = True
            k_used = [k for k in range(4) if np.array_equal(e.text, ds.captions[i, k].astype(np.float32))]
            assert k_used and k_used[0] >= meta["n_full_captions"]
    assert seen_shift
    remap = WindowMaker(ds, tok, cfg.replace(transpose_p=0.0, program_remap_p=1.0))
    band = next(i for i in range(len(ds)) if ds.meta(i)["id"] == "test:band")
    e = remap.example(band, np.random.default_rng(3))
    insts = [int(v.value_of[t]) for t in e.ids[5:e.n_prefix]]
    assert insts == augment.programs_in(e.ids[e.n_prefix:], v) and insts != [0, 33, 128] and insts[-1] == 128


def test_tag_dropout_and_uncond(ds, tok):
    v = tok.vocab
    cfg = TrainConfig.preset("tiny", uncond_p=1.0)
    e = WindowMaker(ds, tok, cfg).example(0, np.random.default_rng(0))
    assert e.text is None
    assert [int(v.value_of[t]) for t in e.ids[1:5]] == [0, 0, 0, 0]  # Style/Key/Mode/Density _none
    cfg = TrainConfig.preset("tiny", uncond_p=0.0, tag_dropout_p=0.5, text_dropout_p=0.5)
    maker = WindowMaker(ds, tok, cfg)
    rng = np.random.default_rng(1)
    ex = [maker.example(0, rng) for _ in range(200)]
    none_frac = np.mean([[int(v.value_of[t]) == 0 for t in e.ids[1:5]] for e in ex], axis=0)
    assert np.all((none_frac > 0.35) & (none_frac < 0.65))
    assert 0.35 < np.mean([e.text is None for e in ex]) < 0.65


def test_collate_masks_prefix_and_pad(ds, tok):
    cfg = TrainConfig.preset("tiny")
    maker = WindowMaker(ds, tok, cfg)
    ex = [maker.example(i, np.random.default_rng(i)) for i in range(3)]
    b = collate(ex, tok.vocab.pad)
    for r, e in enumerate(ex):
        n = len(e.ids)
        np.testing.assert_array_equal(b.ids[r, :n - 1], e.ids[:-1])
        np.testing.assert_array_equal(b.targets[r, :n - 1], e.ids[1:])
        assert not b.loss_mask[r, :e.n_prefix - 1].any()  # targets inside the prefix
        assert b.loss_mask[r, e.n_prefix - 1:n - 1].all()  # first body token onward
        assert not b.loss_mask[r, n - 1:].any() and b.pad_mask[r, n:].all() and not b.pad_mask[r, :n].any()
        assert b.cond_mask[r] == (e.text is not None)
    assert b.n_tokens == sum(len(e.ids) - e.n_prefix for e in ex)


def test_pack_respects_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 128, 500)
    groups = pack(lengths, 1024, multiple=2)
    used = np.concatenate(groups)
    assert len(set(used.tolist())) == len(used)
    assert len(lengths) - len(used) < 2  # at most an odd leftover is dropped
    for g in groups:
        assert len(g) % 2 == 0 and len(g) * lengths[g].max() <= 1024
    # similar lengths end up together: padding stays small
    pad = sum(len(g) * lengths[g].max() - lengths[g].sum() for g in groups) / lengths.sum()
    assert pad < 0.05


def test_stream_is_deterministic_and_resumable(ds, tok):
    cfg = TrainConfig.preset("tiny", fim_rate=0.2)
    a, b = BatchStream(ds, tok, cfg), BatchStream(ds, tok, cfg)
    seq_a = [a.next(s) for s in range(12)]
    seq_b = [b.next(s) for s in range(12)]
    for x, y in zip(seq_a, seq_b, strict=True):
        np.testing.assert_array_equal(x.ids, y.ids)
        np.testing.assert_array_equal(x.text_emb, y.text_emb)
    other = BatchStream(ds, tok, cfg.replace(seed=99)).next(0)
    assert other.ids.shape != seq_a[0].ids.shape or not np.array_equal(other.ids, seq_a[0].ids)
    # resume from the state after 5 batches: the same batches follow
    c = BatchStream(ds, tok, cfg)
    for s in range(5):
        c.next(s)
    d = BatchStream(ds, tok, cfg)
    d.load_state_dict(c.state_dict())
    for s in range(5, 12):
        np.testing.assert_array_equal(d.next(s).ids, seq_a[s].ids)
    for x in seq_a:
        assert x.ids.shape[0] * x.ids.shape[1] <= cfg.tokens_per_batch or x.ids.shape[0] == 2


def test_shards_partition_the_batch(ds, tok):
    b = BatchStream(ds, tok, TrainConfig.preset("tiny"), n_shards=2).next(0)
    s0, s1 = b.shard(0, 2), b.shard(1, 2)
    assert s0.ids.shape[0] + s1.ids.shape[0] == b.ids.shape[0]
    assert s0.n_tokens + s1.n_tokens == b.n_tokens
    np.testing.assert_array_equal(s1.ids, b.ids[1::2, :s1.ids.shape[1]])
    assert not b.ids[1::2, s1.ids.shape[1]:].any() or (b.pad_mask[1::2, s1.ids.shape[1]:]).all()


def test_curriculum_stages(ds, tok):
    stages = [CurriculumStage(0.5, {"monophonic": 1.0, "polyphonic": 0.0, "multi-instrument": 0.0}),
              CurriculumStage(1.0, {"monophonic": 0.0, "polyphonic": 1.0, "multi-instrument": 1.0})]
    stream = BatchStream(ds, tok, TrainConfig.preset("tiny", curriculum=stages))
    rng = np.random.default_rng(0)
    cls = np.array([ds.meta(i)["polyphony"] for i in range(len(ds))])
    early = stream.sampler.draw(0.1, 300, rng)
    late = stream.sampler.draw(0.9, 300, rng)
    assert set(cls[early]) == {"monophonic"}
    assert set(cls[late]) == {"polyphonic", "multi-instrument"}
    # within a stage, longer pieces are drawn more often (sampling by windows, i.e. by tokens)
    natural = BatchStream(ds, tok, TrainConfig.preset("tiny")).sampler
    counts = np.bincount(natural.draw(1.0, 20000, rng), minlength=len(ds))
    lengths = np.array([ds.meta(i)["n_tokens"] for i in range(len(ds))])
    assert counts[np.argmax(lengths)] > counts[np.argmin(lengths)]


def test_fim_layout(ds, tok):
    v = tok.vocab
    cfg = TrainConfig.preset("tiny", seq_len=256, tokens_per_batch=512, fim_rate=1.0)
    maker = WindowMaker(ds, tok, cfg)
    i = int(np.argmax([len(ds.piece(j)) for j in range(len(ds))]))
    w = tok.slice_bars(ds.piece(i).astype(np.int64), 2, 8)
    prefix = tok.cond_prefix(tok.conditions_of(tok.decode(w)))
    for seed in range(10):
        e = maker._fim(prefix, w, None, np.random.default_rng(seed), i)
        fs, sep, fe = (int(np.flatnonzero(e.ids == v.id(n))[0]) for n in ("FillStart", "Sep", "FillEnd"))
        assert len(prefix) <= fs < sep < fe == len(e.ids) - 1
        pre, suf, mid = e.ids[len(prefix):fs], e.ids[fs + 1:sep], e.ids[sep + 1:fe]
        a, n_mid = int((pre == v.bar).sum()), int((mid == v.bar).sum())
        assert n_mid >= 1 and (a > 0 or len(suf) > 0)
        # pre + middle + suffix plays the same notes as the window
        whole = np.concatenate([pre, mid, suf])
        np.testing.assert_array_equal(tok.note_table(tok.decode(whole)), tok.note_table(tok.decode(w)))
        # each segment keeps its true bar numbers; sentinels are global
        bars = e.bar_idx[e.ids == v.bar]
        assert bars.tolist() == [*range(1, a + 1), *range(a + n_mid + 1, a + n_mid + 1 + int((suf == v.bar).sum())),
                                 *range(a + 1, a + n_mid + 1)]
        assert e.is_global[[fs, sep, fe]].all()
        assert e.no_loss == (fs, sep)
    # the infill prompt is the training sequence up to Sep, with the same structure
    a, bb = 1, 3
    full = fim_sequence(tok, prefix, w, a, bb)
    prompt = fim_sequence(tok, prefix, w, a, bb, with_middle=False)
    n = len(prompt[0])
    assert prompt[0][-1] == v.id("Sep") and n < len(full[0])
    for x, y in zip(prompt[:4], full[:4], strict=True):
        np.testing.assert_array_equal(x, y[:n])
    b = collate([e], v.pad)
    assert not b.loss_mask[0, fs - 1] and not b.loss_mask[0, sep - 1] and b.loss_mask[0, fe - 1]


def test_val_batches_fixed_and_clean(data_dir, tok):
    val = TokenDataset(data_dir, "val")
    cfg = TrainConfig.preset("tiny")
    a, b = val_batches(val, tok, cfg), val_batches(val, tok, cfg)
    assert a and all(np.array_equal(x.ids, y.ids) for x, y in zip(a, b, strict=True))
    rows = sum(x.ids.shape[0] for x in a)
    assert rows == len(val) - len(val) % 2  # one window per piece (eval_windows >= pieces), rows packed by 2
    for x in a:
        assert x.cond_mask.all()  # no caption dropout in validation
        keys = tok.vocab.value_of[x.ids[:, 2]]
        assert (keys > 0).all() or any(val.meta(j)["key"] is None for j in range(len(val)))
