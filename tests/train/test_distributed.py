"""Two CPU ranks (torchrun, gloo) on a split global batch train exactly like one process with the whole batch.
Run: pytest tests/train/test_distributed.py  (each case launches torchrun: ~15 s)"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from acemusic.train.config import TrainConfig
from acemusic.train.loop import train

WORKER = """
import sys, torch
from acemusic.train.config import TrainConfig
from acemusic.train.loop import train
from acemusic.train.distributed import teardown
torch.set_num_threads(1)
train(TrainConfig.from_json(open(sys.argv[1]).read()), quiet=True)
teardown()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _torchrun(tmp_path: Path, cfg: TrainConfig) -> subprocess.CompletedProcess:
    script, cfg_path = tmp_path / "worker.py", tmp_path / f"{Path(cfg.out).name}.json"
    script.write_text(WORKER)
    cfg.save(cfg_path)
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    cmd = [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(script), str(cfg_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_ranks_match_one_process(data_dir, tmp_path, fsdp):
    torch.set_num_threads(1)
    base = dict(data=str(data_dir), max_steps=4, eval_interval=4, ckpt_interval=4, log_interval=1, bf16=False,
                fim_rate=0.2)
    one = train(TrainConfig.preset("tiny", out=str(tmp_path / "one"), **base), quiet=True)
    cfg = TrainConfig.preset("tiny", out=str(tmp_path / "two"), fsdp=fsdp, **base)
    proc = _torchrun(tmp_path, cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = _losses(tmp_path / "two")
    assert sorted(two) == [1, 2, 3, 4]
    for s in two:
        assert two[s] == pytest.approx(one.losses[s], rel=1e-5, abs=1e-5), (s, two[s], one.losses[s])
    val_two = [json.loads(x)["val_loss"] for x in (tmp_path / "two" / "log.jsonl").read_text().splitlines()
               if "val_loss" in x][-1]
    assert val_two == pytest.approx(one.val_loss, rel=1e-4)
    # the exported weights agree too (rank 0 gathers the full model under FSDP)
    from safetensors.torch import load_file

    w1 = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k].float(), w2[k].float(), rtol=2e-3, atol=2e-3)
