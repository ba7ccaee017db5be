"""`acemusic train` command: runs, refuses to clobber, resumes from the saved config.
Run: pytest tests/train/test_cli.py"""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import acemusic.cli.train  # noqa: F401  registers the command on the app
from acemusic.cli.app import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_train_then_refuse_then_resume(data_dir, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(data_dir), "--preset", "tiny", "--out", str(out), "--steps", "3",
            "--log-interval", "1", "--no-bf16", "--lr", "0.002", "--threads", "1"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["max_steps"] == 3 and cfg["bf16"] is False and cfg["lr"] == 0.002 and cfg["model_preset"] == "tiny"
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "not empty" in r.output
    r = runner.invoke(app, ["train", "--out", str(out), "--resume", "--steps", "5"])
    assert r.exit_code == 0, r.output
    steps = [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert steps == [1, 2, 3, 4, 5]
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["max_steps"] == 5 and cfg["lr"] == 0.002  # saved config kept, --steps overrides


@pytest.mark.parametrize("args, message", [
    (["--preset", "huge"], "--preset must be one of"),
    (["--preset", "tiny"], "--data is required"),
    (["--preset", "tiny", "--data", "DATA", "--lr", "0.001", "--min-lr", "0.01"], "min_lr"),
    (["--preset", "tiny", "--resume"], "nothing to resume"),
    (["--preset", "tiny", "--data", "/nonexistent/dataset"], "does not exist"),
])
def test_bad_arguments_are_one_line_errors(data_dir, tmp_path, args, message):
    args = [str(data_dir) if a == "DATA" else a for a in args]
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "o"), *args])
    assert r.exit_code == 1
    assert message in r.output and "Traceback" not in r.output
