"""Fréchet audio distance: the formula against closed forms on Gaussians, sample estimates, the classic embedder
on synthetic audio, folders and `acemusic fad`.

Run: `.venv/bin/python -m pytest tests/audio/test_fad.py -q` (~10 s; librosa features of a few seconds of tones).
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import acemusic.cli.fad  # noqa: F401  registers the command
from acemusic.cli.app import app
from acemusic.errors import InputError
from acemusic.eval.fad import (
    ClassicEmbedder,
    fad_dirs,
    fad_from_embeddings,
    frechet_distance,
    gaussian,
    get_embedder,
)

sf = pytest.importorskip("soundfile")
pytest.importorskip("librosa")


def test_frechet_distance_matches_closed_forms():
    rng = np.random.default_rng(0)
    # Diagonal covariances commute: FD = |mu_a - mu_b|^2 + sum (sqrt(s_a) - sqrt(s_b))^2.
    mu_a, mu_b = rng.normal(size=5), rng.normal(size=5)
    s_a, s_b = rng.uniform(0.2, 3, 5), rng.uniform(0.2, 3, 5)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(s_a) - np.sqrt(s_b)) ** 2)
    assert abs(frechet_distance(mu_a, np.diag(s_a), mu_b, np.diag(s_b)) - expected) < 1e-9
    # A general pair against scipy's sqrtm of the symmetric form S_a^1/2 S_b S_a^1/2 (same trace).
    from scipy.linalg import sqrtm

    m = rng.normal(size=(4, 4))
    c_a = m @ m.T + 0.1 * np.eye(4)
    m = rng.normal(size=(4, 4))
    c_b = m @ m.T + 0.1 * np.eye(4)
    ra = np.real(sqrtm(c_a))
    ref = np.trace(c_a) + np.trace(c_b) - 2 * np.trace(np.real(sqrtm(ra @ c_b @ ra)))
    assert abs(frechet_distance(np.zeros(4), c_a, np.zeros(4), c_b) - ref) < 1e-7
    assert frechet_distance(mu_a, np.diag(s_a), mu_a, np.diag(s_a)) < 1e-9
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def test_sample_estimate_self_zero_and_grows_with_shift():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 3)) * [1.0, 2.0, 0.5]
    assert fad_from_embeddings(x, x) < 1e-8
    y = rng.normal(size=(4000, 3)) * [1.0, 2.0, 0.5]
    same = fad_from_embeddings(y, x, standardize=False)
    assert same < 0.02  # two samples of one distribution: only finite-sample bias
    shifts = [fad_from_embeddings(y + np.array([d, 0, 0]), x, standardize=False) for d in (0.5, 1.0, 2.0)]
    assert shifts == sorted(shifts) and abs(shifts[-1] - 4.0) < 0.1  # |shift|^2
    # Standardised by the reference's spread: a shift of one reference std in dim 1 (std 2) costs ~1.
    assert abs(fad_from_embeddings(y + np.array([0, 2.0, 0]), x) - 1.0) < 0.1
    mu, cov = gaussian(x)
    assert mu.shape == (3,) and cov.shape == (3, 3)


def _write(path, y, sr=22050):
    sf.write(str(path), y.astype(np.float32), sr)
    return path


def _notes(freqs, sr=22050, seconds=0.5, kind="sine"):
    t = np.arange(int(seconds * sr)) / sr
    out = []
    for f in freqs:
        wave = np.sin(2 * np.pi * f * t) if kind == "sine" else np.sign(np.sin(2 * np.pi * f * t))
        out.append(0.3 * wave * np.exp(-3 * t))
    return np.concatenate(out)


def test_classic_embedder_and_folders(tmp_path):
    emb = get_embedder("classic")
    assert isinstance(emb, ClassicEmbedder)
    y = _notes([220, 330, 440, 550, 660, 440])  # 3 s
    e = emb.embed(np.concatenate([y, np.zeros(22050)]), 22050)  # a silent 4th second is dropped
    assert e.shape == (3, 90) and np.isfinite(e).all()
    assert emb.embed(y[::2].copy(), 11025).shape == (3, 90)  # resampled on the way in
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (a, b, c):
        d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        f = rng.uniform(200, 600, 8)
        _write(a / f"{i}.wav", _notes(f))
        _write(b / f"{i}.wav", _notes(rng.uniform(200, 600, 8)))
        _write(c / f"{i}.wav", _notes(f, kind="square"))
    same = fad_dirs(a, a)
    assert same.fad < 1e-6 and same.n_files_a == 4 and same.dim == 90
    near, far = fad_dirs(b, a).fad, fad_dirs(c, a).fad
    assert near < far  # other sine notes are closer to sines than the same notes as square waves
    _write(c / "silent.wav", np.zeros(22050))
    (c / "junk.wav").write_text("not audio")
    res = fad_dirs(c, a)
    assert {s["reason"] for s in res.skipped} >= {"silent"} and len(res.skipped) == 2 and res.n_files_a == 4
    runner = CliRunner()
    out = tmp_path / "fad.json"
    r = runner.invoke(app, ["fad", str(b), str(a), "--out", str(out)])
    assert r.exit_code == 0 and "FAD (classic)" in r.output, r.output
    assert abs(__import__("json").loads(out.read_text())["fad"] - near) < 1e-6
    one = tmp_path / "one"
    one.mkdir()
    _write(one / "x.wav", y)
    for args, msg in (([str(one), str(a)], "at least 2"), ([str(tmp_path / "no"), str(a)], "no such folder"),
                      ([str(a), str(a), "--embedder", "vggish"], "unknown embedder"),
                      ([str(b), str(a), "--out", str(out)], "exists")):
        r = runner.invoke(app, ["fad", *args])
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output, r.output
    with pytest.raises(InputError):
        get_embedder("nope")


def test_align_embedder_windows_and_errors(tmp_path):
    torch = pytest.importorskip("torch")
    from acemusic.audio.align import AlignConfig, AlignModel, save_align
    from acemusic.eval.fad import AlignEmbedder

    with pytest.raises(InputError):
        AlignEmbedder(tmp_path / "no-checkpoint")
    torch.manual_seed(0)
    cfg = AlignConfig(d_sym=32, sym_layers=1, sym_heads=2, audio_channels=16, audio_layers=2, d_embed=16)
    ckpt = save_align(AlignModel(cfg), tmp_path / "align")
    emb = AlignEmbedder(ckpt)
    assert emb.sr == cfg.sr
    y = _notes(np.linspace(200, 600, 26), sr=16000)  # 13 s: windows at 0 and 6 s; the 1 s rest (< half) is dropped
    e = emb.embed(y, 16000)
    assert e.shape == (2, 16) and np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)
    with_silence = np.concatenate([np.zeros(6 * 16000), y])
    assert emb.embed(with_silence, 16000).shape == (2, 16)  # the silent first window is dropped
    assert emb.embed(y[:8000], 16000).shape == (1, 16)  # shorter than a window: one segment
    assert emb.embed(y[::2].copy(), 8000).shape == (2, 16)  # resampled on the way in
    d = tmp_path / "clips"
    d.mkdir()
    for i in range(3):
        _write(d / f"{i}.wav", np.roll(y, 4000 * i), sr=16000)
    runner = CliRunner()
    r = runner.invoke(app, ["fad", str(d), str(d), "--embedder", "align", "--checkpoint", str(ckpt)])
    assert r.exit_code == 0 and "FAD (align) = 0.0000" in r.output and "128 dims" not in r.output, r.output
    r = runner.invoke(app, ["fad", str(d), str(d), "--checkpoint", str(ckpt)])
    assert r.exit_code == 1 and "no weights" in r.output
