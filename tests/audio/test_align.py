"""Shared symbolic-audio embedding: shapes, recall@k, InfoNCE learning a toy pairing, the embed_* API with bad
input, checkpoint round trip, and paired excerpts (program remapping; a real render when FluidSynth is present).

Run: `.venv/bin/python -m pytest tests/audio/test_align.py -q`. Tiny configs and synthetic tones; the slow test
uses the shipped checkpoints/acemusic-align.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from acemusic.audio.align import (
    AlignConfig,
    AlignModel,
    audio_features,
    batch_mels,
    batch_tokens,
    default_align_checkpoint,
    embed_audio,
    embed_symbolic,
    info_nce,
    load_align,
    recall_at_k,
    save_align,
)
from acemusic.audio.align_train import AlignTrainConfig, retrieval_metrics, spec_augment
from acemusic.audio.excerpts import PROGRAMS, make_excerpts, read_index, remap_programs
from acemusic.errors import InputError
from acemusic.tokenizer import Tokenizer
from acemusic.tokenizer.vocab import T

SR = 16000
SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "acemusic-align"


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a shared, loaded CPU two threads spin on each other (40x slower measured)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_cfg() -> AlignConfig:
    return AlignConfig(d_sym=32, sym_layers=1, sym_heads=2, max_tokens=64, n_mels=32, audio_channels=32,
                       audio_layers=2, d_embed=16, max_seconds=2.0)


def tone(pitch: int, seconds: float = 1.0, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    f = 440.0 * 2 ** ((pitch - 69) / 12)
    return (amp * sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3))).astype(np.float32)


def toy_pairs(n: int = 8):
    """Pair i: tokens naming pitch 48 + 3i, audio of that pitch. Learnable only by matching the two."""
    tok = Tokenizer()
    o = tok._t
    pitches = [48 + 3 * i for i in range(n)]
    seqs = [[o["Bar"], o["Position"], o["Pitch"] + p, o["Duration"] + 11] for p in pitches]
    mels = [audio_features(tone(p), tiny_cfg()) for p in pitches]
    return seqs, mels


def test_shapes_and_unit_norm():
    torch.manual_seed(0)
    m = AlignModel(tiny_cfg())
    seqs, mels = toy_pairs(3)
    s = m.embed_symbolic(batch_tokens(seqs, 64))
    a = m.embed_audio(*batch_mels(mels))
    assert s.shape == (3, 16) and a.shape == (3, 16)
    assert torch.allclose(s.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(a.norm(dim=1), torch.ones(3), atol=1e-5)
    # padding must not change an embedding: a short clip alone and in a batch with a long one agree
    long = audio_features(tone(60, 2.0), tiny_cfg())
    alone = m.eval().embed_audio(*batch_mels([mels[0]]))
    together = m.embed_audio(*batch_mels([mels[0], long]))[:1]
    assert torch.allclose(alone, together, atol=1e-4)
    ids = batch_tokens([seqs[0], seqs[0] * 3], 64)
    assert torch.allclose(m.embed_symbolic(ids[:1, :4]), m.embed_symbolic(ids)[:1], atol=1e-5)


def test_recall_at_k_and_metrics():
    sim = np.eye(5)
    assert recall_at_k(sim, 1) == 1.0
    sim = np.array([[0.0, 1.0, 0.5], [1.0, 0.5, 0.0], [0.0, 1.0, 2.0]])  # own columns rank 3rd, 2nd, 1st
    assert recall_at_k(sim, 1) == pytest.approx(1 / 3)
    assert recall_at_k(sim, 2) == pytest.approx(2 / 3)
    assert recall_at_k(sim, 3) == 1.0
    m = retrieval_metrics(np.eye(4), np.eye(4))
    assert m["sym_to_audio"]["r@1"] == 1.0 and m["chance"]["r@1"] == 0.25 and m["chance"]["r@10"] == 1.0


def test_info_nce_learns_a_toy_pairing():
    torch.manual_seed(0)
    m = AlignModel(tiny_cfg())
    seqs, mels = toy_pairs(8)
    ids, (mel, mask) = batch_tokens(seqs, 64), batch_mels(mels)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        m.train()
        loss = m.loss(m.embed_symbolic(ids), m.embed_audio(mel, mask))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    m.eval()
    sim = (m.embed_symbolic(ids) @ m.embed_audio(mel, mask).T).detach().numpy()
    assert recall_at_k(sim, 1) >= 0.75  # chance is 1/8


def test_info_nce_value():
    s = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    assert float(info_nce(s, s, 100.0)) < 1e-3  # perfectly paired, sharp temperature: ~0
    assert abs(float(info_nce(s, s, 0.0)) - np.log(4)) < 1e-5  # no signal: log(batch size)


def test_spec_augment_masks_but_keeps_shape():
    cfg = AlignTrainConfig(time_masks=1, time_mask_frac=0.5, freq_masks=1, freq_mask_bands=8)
    mel = torch.ones(32, 100)
    out = spec_augment(mel, np.random.default_rng(0), cfg)
    assert out.shape == mel.shape and float(out.sum()) < 3200 and float(mel.sum()) == 3200  # input untouched


def test_embed_api_paths_arrays_and_bad_input(tmp_path):
    import soundfile as sf

    torch.manual_seed(0)
    m = AlignModel(tiny_cfg()).eval()
    x = tone(60)
    sf.write(str(tmp_path / "a.wav"), x, SR)
    from_path = embed_audio([tmp_path / "a.wav"], model=m)
    from_array = embed_audio([x], sr=SR, model=m)
    assert from_path.shape == (1, 16) and np.allclose(from_path, from_array, atol=2e-3)  # 16-bit file
    x32 = np.interp(np.arange(2 * len(x)) / 2, np.arange(len(x)), x).astype(np.float32)  # same audio at 32 kHz
    assert float((embed_audio([x32], sr=32000, model=m) @ from_array.T)[0, 0]) > 0.98
    assert float((embed_audio([4 * x], sr=SR, model=m) @ from_array.T)[0, 0]) > 0.99  # loudness barely matters
    with pytest.raises(InputError, match="no audio"):
        embed_audio([], model=m)
    with pytest.raises(InputError, match="sample rate"):
        embed_audio([x], model=m)
    with pytest.raises(InputError, match="non-finite"):
        embed_audio([np.array([np.nan, 0.0], np.float32)], sr=SR, model=m)
    with pytest.raises(InputError, match="no such audio"):
        embed_audio([tmp_path / "missing.wav"], model=m)
    seqs, _ = toy_pairs(2)
    assert embed_symbolic(seqs, model=m).shape == (2, 16)
    with pytest.raises(InputError, match="token ids"):
        embed_symbolic([[5000]], model=m)
    with pytest.raises(InputError, match="empty"):
        embed_symbolic([[]], model=m)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    m = AlignModel(tiny_cfg()).eval()
    save_align(m, tmp_path / "ck", {"k": 1}, dtype=torch.float16)
    m2, meta = load_align(tmp_path / "ck")
    assert meta == {"k": 1}
    seqs, _mels = toy_pairs(2)
    a = embed_symbolic(seqs, model=m)
    b = embed_symbolic(seqs, model=m2)
    assert np.abs(a - b).max() < 1e-2  # fp16 weights
    with pytest.raises(InputError, match="no such"):
        load_align(tmp_path / "none")
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(InputError, match="cannot load"):
        load_align(tmp_path / "ck")


# ---- excerpts -------------------------------------------------------------------------------------------------
def test_excerpt_program_remap():
    tok = Tokenizer()
    v, o = tok.vocab, tok._t
    seq = np.array([o["Bar"], o["Position"], o["Program"] + 0, o["Pitch"] + 60, o["Duration"] + 11,
                    o["Program"] + 128, o["Pitch"] + 36, o["Duration"] + 2, o["Program"] + 73, o["Pitch"] + 72,
                    o["Duration"] + 11])
    out, progs = remap_programs(seq, np.random.default_rng(0), v)
    got = v.value_of[out[v.type_of[out] == T["Program"]]].tolist()
    assert got[1] == 128  # drums stay drums
    assert got[0] in PROGRAMS and got[2] in PROGRAMS and got[0] != got[2]  # two melodic programs: two timbres
    assert sorted({got[0], got[2]}) == progs
    keep = v.type_of[seq] != T["Program"]
    assert np.array_equal(out[keep], seq[keep])  # notes untouched


class _TinyDataset:
    """TokenDataset's read interface over a few scores."""

    def __init__(self, paths: list[Path]) -> None:
        tok = Tokenizer()
        self.bodies = [tok.encode_body(tok.load_score(p)) for p in paths]

    def __len__(self) -> int:
        return len(self.bodies)

    def piece(self, i: int) -> np.ndarray:
        return self.bodies[i]

    def meta(self, i: int) -> dict:
        return {"id": f"piece{i}"}


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth is not installed")
def test_make_excerpts_renders_pairs_and_resumes(tmp_path):
    import soundfile as sf

    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "midi"
    ds = _TinyDataset([fixtures / "bach_bwv66_6.mid", fixtures / "band.mid"])
    assert make_excerpts(ds, tmp_path, n=1, bars=2, seed=0, max_seconds=3.0) == 1
    assert make_excerpts(ds, tmp_path, n=2, bars=2, seed=0, max_seconds=3.0) == 2  # resume adds the second
    rows = read_index(tmp_path)
    assert len({r["piece"] for r in rows}) == 2  # one excerpt per piece
    tok = Tokenizer()
    for r in rows:
        audio, sr = sf.read(str(tmp_path / r["wav"]))
        assert sr == SR and audio.ndim == 1 and 0 < len(audio) <= 3 * SR and np.abs(audio).max() > 1e-3
        score = tok.decode(r["tokens"])
        assert len(tok.bar_starts(np.array(r["tokens"]))) == r["bars"] <= 2
        assert {t.program for t in score.tracks if not t.is_drum} <= set(PROGRAMS)


# ---- shipped checkpoint ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no shipped alignment checkpoint")
def test_shipped_align_embeds_audio_for_fad():
    model, meta = load_align()
    assert default_align_checkpoint() == SHIPPED and meta["test"]["n_pairs"] > 0
    clips = [tone(60, 2.0), tone(60, 2.0, amp=0.05), tone(79, 2.0)]
    e = embed_audio(clips, sr=SR, model=model)
    assert e.shape == (3, model.cfg.d_embed) and np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2])  # a quieter copy is nearer than another pitch


# ---- CLI ------------------------------------------------------------------------------------------------------
def _toy_excerpt_dir(d: Path, n: int = 6) -> Path:
    """An excerpt directory (index.jsonl + 16 kHz WAVs) of toy pairs, as `acemusic codec excerpts` writes."""
    import json

    import soundfile as sf

    seqs, _ = toy_pairs(n)
    d.mkdir(parents=True)
    with (d / "index.jsonl").open("w") as f:
        for i, s in enumerate(seqs):
            sf.write(str(d / f"{i:05d}.wav"), tone(48 + 3 * i, 1.0), SR)
            f.write(json.dumps({"id": i, "piece": f"p{i}", "bar": 0, "bars": 1, "programs": [0], "seconds": 1.0,
                                "wav": f"{i:05d}.wav", "tokens": s}) + "\n")
    return d


def test_align_cli_train_eval_export_embed(tmp_path):
    import json

    from typer.testing import CliRunner

    import acemusic.cli.align  # noqa: F401  registers the commands
    from acemusic.cli.app import app

    runner = CliRunner()
    data = _toy_excerpt_dir(tmp_path / "ex")
    run = tmp_path / "run"
    r = runner.invoke(app, ["align", "train", "--train", str(data), "--val", str(data), "--out", str(run),
                            "--steps", "3", "--batch", "4"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["align", "train", "--train", str(data), "--out", str(run), "--steps", "3"])
    assert r.exit_code == 1 and "--force" in r.output  # a finished run is not overwritten
    res = tmp_path / "res.json"
    r = runner.invoke(app, ["align", "eval", "--data", str(data), "--checkpoint", str(run / "final"), "--out",
                            str(res)])
    assert r.exit_code == 0, r.output
    m = json.loads(res.read_text())
    assert m["n_pairs"] == 6 and m["chance"]["r@1"] == pytest.approx(1 / 6) and m["train_steps"] == 3
    ship = tmp_path / "ship"
    r = runner.invoke(app, ["align", "export", str(run / "final"), "-o", str(ship), "--test-results", str(res)])
    assert r.exit_code == 0, r.output
    _, meta = load_align(ship)
    assert meta["test"]["n_pairs"] == 6
    emb = tmp_path / "emb.npy"
    r = runner.invoke(app, ["align", "embed", str(data / "00000.wav"), str(data / "00001.wav"), "-o", str(emb),
                            "--checkpoint", str(ship)])
    assert r.exit_code == 0, r.output
    assert np.load(emb).shape == (2, AlignConfig().d_embed)
    r = runner.invoke(app, ["align", "eval", "--data", str(tmp_path / "nodir"), "--checkpoint", str(ship)])
    assert r.exit_code == 1 and "not an excerpt directory" in r.output


def test_same_group_recall():
    from acemusic.audio.align_train import same_group_recall

    sim = np.array([[1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    # groups {0, 1} and {2, 3}: row 0's distractor 2 is in the other group, so within its group row 0 is right
    r1, chance, n = same_group_recall(sim, [("a",), ("a",), ("b",), ("b",)], 1)
    assert (r1, chance, n) == (1.0, 0.5, 4)
    r1, _, _ = same_group_recall(sim, [("a",)] * 4, 1)
    assert r1 == 0.75  # one group: row 0 loses to column 2
