"""End-to-end training on the tiny preset: logs, export, exact resume, out-dir safety, SIGTERM.
Run: pytest tests/train/test_loop.py"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from acemusic.errors import InputError
from acemusic.train.config import TrainConfig
from acemusic.train.loop import train


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _cfg(data_dir, out, **kw) -> TrainConfig:
    base = dict(data=str(data_dir), out=str(out), max_steps=8, eval_interval=4, ckpt_interval=4, log_interval=1)
    return TrainConfig.preset("tiny", **{**base, **kw})


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_train_logs_learns_and_exports(data_dir, tmp_path):
    from acemusic.model.checkpoint import load

    out = tmp_path / "run"
    res = train(_cfg(data_dir, out, max_steps=14, eval_interval=7), quiet=True)
    assert res.step == 14 and not res.stopped
    steps = [r for r in _log(out) if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 15))
    for r in steps:
        assert {"loss", "lr", "grad_norm", "tokens_per_s", "tokens_seen"} <= set(r) and r["tokens_per_s"] > 0
    vals = [r for r in _log(out) if "val_loss" in r]
    assert [r["step"] for r in vals] == [7, 14]
    assert steps[-1]["loss"] < steps[0]["loss"] - 0.5  # 14 steps take the tiny model well below ln(V) = 6.6
    assert vals[-1]["val_loss"] < vals[0]["val_loss"]
    _, meta = load(out / "model", expected_vocab_size=736)
    assert meta["steps"] == 14 and meta["completed"] and meta["val_loss"] == pytest.approx(res.val_loss)
    assert meta["train"]["model_preset"] == "tiny" and meta["vocab"]["n_tempo_bins"] == 40
    assert meta["tokens_seen"] == res.tokens_seen > 0
    assert json.loads((out / "model" / "config.json").read_text())["dtype"] == "float16"
    assert TrainConfig.load(out / "train_config.json").max_steps == 14


def test_resume_reproduces_the_uninterrupted_run(data_dir, tmp_path):
    full = train(_cfg(data_dir, tmp_path / "full", fim_rate=0.2), quiet=True)
    part = train(_cfg(data_dir, tmp_path / "part", fim_rate=0.2), quiet=True, stop_at=3)
    assert part.stopped and part.step == 3
    state = torch.load(tmp_path / "part" / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == 3
    with (tmp_path / "part" / "log.jsonl").open("a") as f:  # as if killed after logging a step it never saved
        f.write(json.dumps({"step": 4, "loss": 0.0}) + "\n")
    rest = train(_cfg(data_dir, tmp_path / "part", fim_rate=0.2), resume=True, quiet=True)
    logged = [r["step"] for r in _log(tmp_path / "part") if "loss" in r]
    assert logged == list(range(1, 9))
    assert rest.step == 8
    for s in range(4, 9):
        assert rest.losses[s] == full.losses[s], s  # bitwise: same batches, same optimizer state
    assert rest.tokens_seen == full.tokens_seen
    assert rest.val_loss == pytest.approx(full.val_loss, abs=1e-6)


def test_out_dir_safety(data_dir, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        train(_cfg(data_dir, out, max_steps=1), quiet=True)
    with pytest.raises(InputError, match="nothing to resume"):
        train(_cfg(data_dir, out, max_steps=1), resume=True, quiet=True)
    train(_cfg(data_dir, out, max_steps=1), force=True, quiet=True)
    assert (out / "notes.txt").read_text() == "mine"  # --force replaces our files only
    assert (out / "checkpoint" / "state.pt").is_file()
    with pytest.raises(InputError, match="does not exist"):
        train(_cfg(tmp_path / "nodata", tmp_path / "x", max_steps=1), quiet=True)


def test_sigterm_checkpoints_and_exits_cleanly(data_dir, tmp_path):
    out = tmp_path / "sig"
    cfg = _cfg(data_dir, out, max_steps=100000, ckpt_interval=100000, eval_interval=100000)
    code = ("import sys, torch; torch.set_num_threads(1)\n"
            "from acemusic.train.config import TrainConfig\nfrom acemusic.train.loop import train\n"
            "r = train(TrainConfig.from_json(sys.argv[1]), quiet=True)\nsys.exit(0 if r.stopped else 3)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, cfg.to_json()], env=env)
    try:
        deadline = time.time() + 120
        while not ((out / "log.jsonl").exists() and (out / "log.jsonl").read_text().count("\n") >= 2):
            assert proc.poll() is None and time.time() < deadline, "training did not start"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=False)
    logged = max(r["step"] for r in _log(out) if "loss" in r)
    assert 2 <= state["step"] == logged < 100000
    meta = json.loads((out / "model" / "config.json").read_text())["meta"]
    assert meta["completed"] is False and meta["steps"] == state["step"]


def test_grad_accum_matches_one_big_batch(data_dir, tmp_path):
    kw = dict(max_steps=3, bf16=False, eval_interval=100, ckpt_interval=100)
    one = train(_cfg(data_dir, tmp_path / "a", **kw), quiet=True)
    two = train(_cfg(data_dir, tmp_path / "b", grad_accum=2, **kw), quiet=True)
    for s in (1, 2, 3):
        assert two.losses[s] == pytest.approx(one.losses[s], rel=1e-5)
