"""Codec: shapes and frame rate, encode/decode consistency at every level count, checkpoint round trip (fp16
export), a short training run whose loss falls, the spectral metrics, and the `acemusic codec` CLI with bad input.

Run: `.venv/bin/python -m pytest tests/audio/test_codec.py -q`. A tiny codec config; the slow test uses the shipped
checkpoints/acemusic-codec.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import acemusic.cli.codec as codec_cli
from acemusic.audio.codec import Codec, CodecConfig, load_codec, save_codec
from acemusic.audio.codec_train import CodecTrainConfig, codec_loss
from acemusic.audio.rvq import RVQConfig
from acemusic.audio.spectral import log_mel, mel_distance, mel_filterbank, si_sdr
from acemusic.cli.app import app
from acemusic.errors import InputError

SR = 16000
SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "acemusic-codec"


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a shared, loaded CPU two threads spin on each other (40x slower measured)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_config() -> CodecConfig:
    return CodecConfig(channels=16, enc_blocks=(1, 1), dec_blocks=(1, 1), mlp_ratio=2,
                       rvq=RVQConfig(dim=8, n_levels=4, codebook_size=16))


def tiny_codec(seed: int = 0) -> Codec:
    torch.manual_seed(seed)
    return Codec(tiny_config())


def tones(seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Two decaying harmonic notes: a deterministic music-like test signal."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for f0 in rng.uniform(150, 600, size=2):
        x += sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5)) * np.exp(-3 * t)
    return torch.from_numpy((0.2 * x / np.abs(x).max()).astype(np.float32))


# ---- model ----------------------------------------------------------------------------------------------------
def test_frame_rate_and_bitrate():
    cfg = CodecConfig()
    assert cfg.frame_hop == 320 and cfg.frame_rate == 50.0
    assert cfg.bitrate() == 6000.0 and cfg.bitrate(1) == 500.0 and cfg.bitrate(8) == 4000.0


@pytest.mark.parametrize("n_samples", [320, 1000, 8000])
def test_shapes_pad_to_whole_frames(n_samples):
    codec = tiny_codec().eval()
    codes = codec.encode(torch.randn(2, n_samples) * 0.1)
    frames = -(-n_samples // 320)
    assert codes.shape == (2, 4, frames) and codes.dtype == torch.int64
    assert codec.decode(codes).shape == (2, frames * 320)


def test_encode_decode_consistent_at_every_level_count():
    codec = tiny_codec().eval()
    x = tones()[None]
    full = codec.encode(x)
    for n in range(1, 5):
        codes = codec.encode(x, n)
        assert torch.equal(codes, full[:, :n])  # level n's code does not depend on how many follow
        recon, q = codec(x, n)
        assert torch.equal(q.codes, codes)
        assert torch.allclose(codec.decode(codes), recon, atol=1e-5)  # decode == the training forward pass


def test_bad_input():
    codec = tiny_codec().eval()
    with pytest.raises(InputError, match="no samples"):
        codec.encode(torch.zeros(1, 0))
    with pytest.raises(InputError, match="mono"):
        codec.encode(torch.zeros(1, 2, 320))
    with pytest.raises(InputError, match="levels"):
        codec.encode(torch.zeros(1, 320), 5)
    with pytest.raises(InputError, match="code values"):
        codec.decode(torch.full((1, 2, 3), 99))


def test_loss_falls_on_a_toy_set():
    codec = tiny_codec().train()
    cfg = CodecTrainConfig(codec=codec.cfg)
    x = torch.stack([tones(0.4, s) for s in range(4)])
    opt = torch.optim.AdamW(codec.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, terms = codec_loss(codec, x, cfg, n_levels=4)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(terms["mel"])
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_checkpoint_round_trip_and_fp16_export(tmp_path):
    codec = tiny_codec().train()
    codec(tones()[None])  # initialise codebooks from data
    codec.eval()
    save_codec(codec, tmp_path / "fp32", {"note": "x"})
    save_codec(codec, tmp_path / "fp16", dtype=torch.float16, inference_only=True)
    x = tones()[None]
    ref = codec.decode(codec.encode(x))
    a, meta = load_codec(tmp_path / "fp32")
    assert meta == {"note": "x"}
    assert torch.allclose(a.decode(a.encode(x)), ref, atol=1e-5)
    b, _ = load_codec(tmp_path / "fp16")
    assert mel_distance(ref[0], b.decode(codec.encode(x))[0], SR) < 0.05  # fp16 weights: near-identical audio
    assert (tmp_path / "fp16" / "model.safetensors").stat().st_size < (tmp_path / "fp32" / "model.safetensors"
                                                                        ).stat().st_size * 0.55


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="no such"):
        load_codec(tmp_path / "nope")
    d = tmp_path / "bad"
    d.mkdir()
    with pytest.raises(InputError, match="missing"):
        load_codec(d)
    (d / "config.json").write_text(json.dumps({"format": "acemusic-model"}))
    (d / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(InputError, match="not an acemusic codec"):
        load_codec(d)
    save_codec(tiny_codec(), d)
    (d / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(InputError, match="cannot load"):
        load_codec(d)


# ---- spectral metrics -----------------------------------------------------------------------------------------
def test_spectral_metrics():
    fb = mel_filterbank(SR, 1024, 80)
    assert fb.shape == (80, 513) and float(fb.max()) <= 1.0 + 1e-6 and bool((fb.sum(1) > 0).all())
    x = tones(1.0)
    assert log_mel(x, SR).shape[:2] == (1, 80)
    assert mel_distance(x, x, SR) == 0.0
    noisy = x + 0.01 * torch.randn_like(x)
    assert 0 < mel_distance(x, noisy, SR) < mel_distance(x, x + 0.1 * torch.randn_like(x), SR)
    assert si_sdr(x, 3.0 * x) > 100  # scale-invariant: a louder copy is perfect
    s = si_sdr(x, noisy)
    snr = 10 * np.log10(float(x.pow(2).sum()) / float((noisy - x).pow(2).sum()))
    assert abs(s - snr) < 0.5


# ---- CLI ------------------------------------------------------------------------------------------------------
@pytest.fixture
def ckpt(tmp_path) -> Path:
    codec = tiny_codec().train()
    codec(tones()[None])
    return save_codec(codec.eval(), tmp_path / "ckpt", dtype=torch.float16, inference_only=True)


def _wav(path: Path, x: np.ndarray, sr: int = SR) -> Path:
    import soundfile as sf

    sf.write(str(path), x, sr)
    return path


def test_cli_encode_decode(tmp_path, ckpt):
    runner = CliRunner()
    stereo44 = np.stack([tones(0.5).numpy()] * 2, axis=1)
    stereo44 = np.repeat(stereo44, 2, axis=0)[: int(0.5 * 32000)]  # 32 kHz stereo: resampled and mixed down
    wav = _wav(tmp_path / "in.wav", stereo44, 32000)
    codes = tmp_path / "codes.npy"
    r = runner.invoke(app, ["codec", "encode", str(wav), "-o", str(codes), "--checkpoint", str(ckpt),
                            "--levels", "3"])
    assert r.exit_code == 0, r.output
    arr = np.load(codes)
    assert arr.shape == (3, 25) and arr.dtype == np.uint16
    assert "0.6 kbps" in r.output  # 3 levels x 4 bits (16 codes) x 50 frames/s
    out = tmp_path / "out.wav"
    r = runner.invoke(app, ["codec", "decode", str(codes), "-o", str(out), "--checkpoint", str(ckpt),
                            "--levels", "2"])
    assert r.exit_code == 0, r.output
    import soundfile as sf

    y, sr = sf.read(str(out))
    assert sr == SR and len(y) == 25 * 320
    # the file round trip gives what the library gives
    codec, _ = load_codec(ckpt)
    ref = codec.decode(torch.from_numpy(arr[:2].astype(np.int64)))[0].numpy()
    assert np.abs(y - ref).max() < 1e-3
    r = runner.invoke(app, ["codec", "decode", str(codes), "-o", str(out), "--checkpoint", str(ckpt)])
    assert r.exit_code == 1 and "--force" in r.output


def test_cli_bad_input(tmp_path, ckpt):
    runner = CliRunner()
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    cases = [
        (["codec", "encode", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "c.npy")], "no such audio"),
        (["codec", "encode", str(junk), "-o", str(tmp_path / "c.npy")], "not a readable audio"),
        (["codec", "encode", str(_wav(tmp_path / "e.wav", np.zeros(0, np.float32))), "-o",
          str(tmp_path / "c.npy")], "no audio samples"),
        (["codec", "encode", str(_wav(tmp_path / "ok.wav", tones(0.1).numpy())), "-o", str(tmp_path / "c.npy"),
          "--kbps", "99"], "kbps"),
        (["codec", "decode", str(junk), "-o", str(tmp_path / "o.wav")], "not a .npy"),
        (["codec", "decode", str(tmp_path / "none.npy"), "-o", str(tmp_path / "o.wav")], "no such codes"),
    ]
    np.save(tmp_path / "f.npy", np.zeros((2, 3), np.float32))
    cases.append((["codec", "decode", str(tmp_path / "f.npy"), "-o", str(tmp_path / "o.wav")], "integer"))
    np.save(tmp_path / "big.npy", np.full((2, 3), 999, np.uint16))
    cases.append((["codec", "decode", str(tmp_path / "big.npy"), "-o", str(tmp_path / "o.wav")], "code values"))
    cases.append((["codec", "encode", str(tmp_path / "ok.wav"), "-o", str(tmp_path / "c.npy"), "--checkpoint",
                   str(tmp_path / "nockpt")], "no such codec checkpoint"))
    for args, msg in cases:
        if "--checkpoint" not in args:
            args = [*args, "--checkpoint", str(ckpt)]
        r = runner.invoke(app, args)
        assert r.exit_code == 1, (args, r.output)
        assert msg in r.output and "Traceback" not in r.output, (args, r.output)


# ---- shipped checkpoint ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no shipped codec checkpoint")
@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth is not installed")
def test_shipped_codec_on_a_render(tmp_path):
    """In distribution (a SoundFont render of a Bach chorale), 0.5 and 6 kbps both decode closer than the 0.68
    mean mel distance Opus reaches at 6 kbps on the held-out renders (benchmarks/results/codec.json)."""
    import soundfile as sf

    from acemusic.audio.render import render

    codec, _ = load_codec(SHIPPED)
    assert codec.cfg.bitrate() == 6000.0 and codec_cli.default_codec_checkpoint() == SHIPPED
    wav = render(Path(__file__).resolve().parents[1] / "fixtures" / "midi" / "bach_bwv66_6.mid", tmp_path / "b.wav",
                 sr=SR)
    x = torch.from_numpy(sf.read(str(wav), dtype="float32")[0].mean(axis=1)[2 * SR: 6 * SR])  # render is stereo
    codes = codec.encode(x[None])
    d = [mel_distance(x, codec.decode(codes[:, :n])[0], SR) for n in (1, 12)]
    print("mel distance at 1 and 12 levels:", d)
    # The shipped model is decoder-limited: every level count lands near the same distance (README), so only the
    # level-independent claim is tested: each decodes closer than Opus 6 kbps does on average.
    assert max(d) < 0.68, d
