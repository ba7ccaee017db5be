"""`acemusic eval lstm`: train the LSTM baseline on a dataset's train split and score val/test.

    acemusic eval lstm --data data/m21 --out runs/lstm --max-steps 1265 --threads 1   # the README's baseline
    acemusic eval lstm --data data/m21 --out runs/lstm --minutes 25                 # a time budget instead

Weights go to `--out` (lstm.safetensors + config.json, with the training log and held-out NLL); keep them out of
git. `acemusic eval report --lstm runs/lstm` samples from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import fail
from acemusic.cli.eval import eval_app
from acemusic.errors import AcemusicError


@eval_app.command("lstm")
def lstm_cmd(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory from `acemusic data build`.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the weights (outside git, e.g. runs/lstm).")],
    minutes: Annotated[float | None, typer.Option(
        "--minutes", min=0.01, help="Wall-time budget [default: 25, or none when --max-steps is given].")] = None,
    max_steps: Annotated[int | None, typer.Option(
        "--max-steps", min=1, help="Step budget (exact, load-independent).")] = None,
    d_model: Annotated[int, typer.Option("--d-model", min=8, help="Embedding and hidden size.")] = 256,
    layers: Annotated[int, typer.Option("--layers", min=1, max=6, help="LSTM layers.")] = 2,
    seq_len: Annotated[int, typer.Option("--seq-len", min=8, help="Truncated-BPTT window.")] = 256,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Windows per step.")] = 32,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate.")] = 3e-3,
    seed: Annotated[int, typer.Option("--seed", help="Seed for init and window sampling.")] = 0,
    threads: Annotated[int, typer.Option("--threads", min=0, help="torch CPU threads (0 = torch default).")] = 1,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing model in --out.")] = False,
) -> None:
    """Train a small LSTM LM on the train tokens (same sequences as the n-gram and the model)."""
    import shlex
    import sys

    import torch
    from rich.console import Console

    from acemusic.data.shards import TokenDataset
    from acemusic.eval.baselines.lstm import LSTMConfig, LSTMTrainConfig, lstm_nll, save_lstm, train_lstm
    from acemusic.eval.nll import sequences_for_split, summarize
    from acemusic.tokenizer import Tokenizer

    if not data.is_dir():
        fail(f"{data}: not a directory")
    if (out / "lstm.safetensors").exists() and not force:
        fail(f"{out / 'lstm.safetensors'} exists; pass --force to overwrite it")
    if threads:
        torch.set_num_threads(threads)
    console = Console()
    try:
        tok = Tokenizer(TokenDataset(data, "train").vocab.config)
        train, _ = sequences_for_split(data, "train", tok)
        val = sequences_for_split(data, "val", tok)
    except AcemusicError as e:
        fail(str(e))
    if minutes is None and max_steps is None:
        minutes = LSTMTrainConfig.minutes  # the dataclass default time budget
    cfg = LSTMConfig(len(tok.vocab), d_model, layers)
    tcfg = LSTMTrainConfig(seq_len=seq_len, batch_size=batch_size, lr=lr, minutes=minutes, max_steps=max_steps,
                           seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.jsonl"
    log_file = open(log_path, "w")  # noqa: SIM115  closed below

    def on_log(row: dict) -> None:
        log_file.write(json.dumps(row) + "\n")
        log_file.flush()
        console.print(row)

    try:
        model, log = train_lstm(train, cfg, tcfg, val=val, on_log=on_log)
    except ValueError as e:
        fail(str(e))
    finally:
        log_file.close()
    report = {"command": shlex.join(["acemusic", *sys.argv[1:]]) if sys.argv else "", "train": tcfg.__dict__,
              "params": sum(p.numel() for p in model.parameters()), "torch_threads": torch.get_num_threads(),
              "log": log[-1]}
    for split, (seqs, starts) in (("val", val), ("test", sequences_for_split(data, "test", tok))):
        report[split] = summarize(*lstm_nll(model, seqs, starts))
    save_lstm(model, out, report)
    console.print(f"val NLL/token {report['val']['nll_per_token']:.4f}, test {report['test']['nll_per_token']:.4f}; "
                  f"wrote {out}")
