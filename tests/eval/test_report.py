"""`acemusic eval report` end to end on a tiny dataset, a tiny random checkpoint and a tiny LSTM: every system
answers every prompt with real MIDI, the report and figures are written, reruns reuse the cache, other settings in
the same folder are refused, and the CLI reports user errors in one line.

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/eval/test_report.py -q`
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from acemusic.errors import InputError
from acemusic.eval.report import ReportConfig, run_report
from acemusic.eval.suite import REFERENCE, SYSTEMS, Generator, first_bars, make_prompts
from acemusic.tokenizer import Tokenizer

from . import tiny_data

N, BARS = 3, 2


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    from acemusic.eval.baselines.lstm import LSTMConfig, LSTMTrainConfig, save_lstm, train_lstm
    from acemusic.eval.nll import sequences_for_split

    torch.set_num_threads(1)  # module fixtures run before the function-scoped autouse one
    root = tmp_path_factory.mktemp("report")
    data = tiny_data.build(root / "data")
    tok = Tokenizer()
    train, _ = sequences_for_split(data, "train", tok)
    model, _ = train_lstm(train, LSTMConfig(len(tok.vocab), 16, 1), LSTMTrainConfig(seq_len=32, batch_size=2,
                                                                                   max_steps=3))
    save_lstm(model, root / "lstm")
    cfg = ReportConfig(data=data, out=root / "out", n=N, bars=BARS, checkpoint=tiny_data.tiny_checkpoint(root / "ck"),
                       lstm=root / "lstm", cache_dir=root / "cache", text=False, n_resamples=50, oa_resamples=3,
                       behaviour_n=2)
    results = run_report(cfg)
    return {"root": root, "data": data, "cfg": cfg, "results": results, "tok": tok}


def test_every_system_answers_every_prompt(setup) -> None:
    out, tok = setup["cfg"].out, setup["tok"]
    prompts = make_prompts(setup["data"], N, BARS, 0)
    for system in (REFERENCE, *SYSTEMS):
        files = sorted((out / "gen" / system).glob("*.mid"))
        assert len(files) == N, system
        for p, f in zip(prompts, files, strict=True):
            score = tok.load_score(f)
            assert score.note_num() > 0, (system, f)
            if system in ("acemusic", "lstm", "kneser-ney", "unigram"):  # the asks hold for sampled systems
                body = tok.encode_body(score.resample(12, min_dur=1))
                assert int((body == tok.vocab.bar).sum()) <= p.bars
                assert {int(t.program) for t in score.tracks if t.note_num()} <= set(p.spec.instruments)
                ts = score.time_signatures[0]
                assert (ts.numerator, ts.denominator) == p.spec.meter


def test_reference_is_the_test_piece_itself(setup) -> None:
    from acemusic.data.shards import TokenDataset

    tok, out = setup["tok"], setup["cfg"].out
    ds = TokenDataset(setup["data"], "test")
    for k, p in enumerate(make_prompts(setup["data"], N, BARS, 0)):
        got = tok.encode_body(tok.load_score(out / "gen" / REFERENCE / f"{k:04d}.mid"))
        assert np.array_equal(got, first_bars(tok, ds.piece(p.index), BARS))


def test_report_files_and_results(setup) -> None:
    out, r = setup["cfg"].out, setup["results"]
    md = (out / "report.md").read_text()
    for system in SYSTEMS:
        assert f"| {system} |" in md
    for png in ("metrics.png", "pitch_classes.png", "piano_rolls.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "results.json").read_text())
    assert saved["n"] == N and set(saved["systems"]) == set(SYSTEMS)
    for system, row in r["systems"].items():
        for key in ("pch_overlap", "transition_distance", "structure", "bleu4_pitch", "pch_kl", "stats_oa"):
            c = row[key]
            assert np.isnan(c["lo"]) or c["lo"] <= c["hi"], (system, key)
        assert 0.0 <= row["pch_overlap"]["value"] <= 1.0
    assert set(r["nll"]) == {"acemusic", "lstm", "kneser-ney", "unigram"}
    for s, v in r["nll"].items():
        assert v["nll_per_token"] > 0 and v["nll_per_note"] > v["nll_per_token"], s  # > 1 token per note
    assert {"call_response_rhythm", "continuation_key", "mood_minor"} <= set(r["behaviour"]["tests"])
    # the reference compared with itself: perfect BLEU
    assert r["reference"]["bleu4_pitch"]["value"] == pytest.approx(1.0)


def test_rerun_reuses_the_cache(setup, monkeypatch) -> None:
    def boom(*a, **k):
        raise AssertionError("regenerated a cached piece")

    monkeypatch.setattr(Generator, "generate", boom)
    monkeypatch.setattr("acemusic.eval.behaviour.continue_piece", boom)
    monkeypatch.setattr("acemusic.eval.behaviour.compose_prompt", boom)
    cfg = setup["cfg"]
    before = {p: p.stat().st_mtime_ns for p in (cfg.out / "gen").rglob("*.mid")}
    again = run_report(cfg)
    assert {p: p.stat().st_mtime_ns for p in (cfg.out / "gen").rglob("*.mid")} == before
    assert again["systems"]["unigram"]["pch_overlap"] == setup["results"]["systems"]["unigram"]["pch_overlap"]


def test_other_settings_in_the_same_folder_are_refused(setup) -> None:
    cfg = setup["cfg"]
    other = ReportConfig(**{**cfg.__dict__, "bars": BARS + 1})
    with pytest.raises(InputError, match="other settings"):
        run_report(other)


def test_cli(setup) -> None:
    from acemusic.cli import app

    runner = CliRunner()
    root, data = setup["root"], setup["data"]
    r = runner.invoke(app, ["eval", "report", "--data", str(data), "--out", str(root / "cli"), "--lstm",
                            str(root / "nope")])
    assert r.exit_code == 1 and r.output.strip().startswith("error:") and len(r.output.strip().splitlines()) == 1
    r = runner.invoke(app, ["eval", "report", "--data", str(data), "--out", str(root / "cli"), "--n", "2",
                            "--bars", "2", "--systems", "unigram,copy-train", "--no-nll", "--behaviour-n", "0",
                            "--resamples", "20", "--oa-resamples", "2", "--cache-dir", str(root / "cache")])
    assert r.exit_code == 0, r.output
    assert "| unigram |" in (root / "cli" / "report.md").read_text()
    r = runner.invoke(app, ["eval", "report", "--data", str(root / "missing"), "--out", str(root / "cli2")])
    assert r.exit_code == 1 and "error:" in r.output
