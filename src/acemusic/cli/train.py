"""`acemusic train`: train a model on a dataset built by `acemusic data build`.

    acemusic train --data data/m21 --preset mini --out runs/mini       # the shipped acemusic-mini recipe
    acemusic train --out runs/mini --resume                      # continue exactly where it stopped
    torchrun --nproc_per_node 2 -m acemusic.cli.train --data data/m21 --preset mini --out runs/mini

The torchrun form runs this module directly (same options, no `train` word); `torchrun ... $(which acemusic) train`
works too. With --resume the run's saved train_config.json is the base and the options given override it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, fail

PRESETS = ("tiny", "mini", "small", "base", "large")  # as acemusic.train.config.PRESETS (no import at start)


@app.command("train")
def train_cmd(
    out: Annotated[Path, typer.Option("--out", help="Run directory: checkpoints, log.jsonl, exported model/.")],
    data: Annotated[Path | None, typer.Option("--data", help="Dataset directory (acemusic data build).")] = None,
    preset: Annotated[str | None, typer.Option(
        "--preset", help="tiny | mini (default, shipped) | small | base | large")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TrainConfig JSON instead of a preset.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Total optimizer steps (sets the cosine).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint/state.pt.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Start over in a non-empty OUT.")] = False,
    bf16: Annotated[bool | None, typer.Option("--bf16/--no-bf16", help="bf16 autocast (default on).")] = None,
    grad_checkpointing: Annotated[bool | None, typer.Option("--grad-checkpointing/--no-grad-checkpointing")] = None,
    fsdp: Annotated[bool | None, typer.Option("--fsdp/--no-fsdp", help="Shard the model across ranks.")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", help="Max tokens per sequence.")] = None,
    tokens_per_batch: Annotated[int | None, typer.Option("--tokens-per-batch", help="Global tokens/step.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    min_lr: Annotated[float | None, typer.Option("--min-lr", help="Final learning rate.")] = None,
    warmup: Annotated[int | None, typer.Option("--warmup", help="Linear warmup steps.")] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay")] = None,
    grad_clip: Annotated[float | None, typer.Option("--grad-clip", help="Max grad norm (0 = off).")] = None,
    grad_accum: Annotated[int | None, typer.Option("--grad-accum", help="Micro-batches per step and rank.")] = None,
    fim_rate: Annotated[float | None, typer.Option("--fim-rate", help="Fill-in-the-middle fraction.")] = None,
    eval_interval: Annotated[int | None, typer.Option("--eval-interval")] = None,
    ckpt_interval: Annotated[int | None, typer.Option("--ckpt-interval")] = None,
    log_interval: Annotated[int | None, typer.Option("--log-interval")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="torch threads per rank.")] = None,
) -> None:
    """Train the music model: AdamW + cosine, bf16 autocast, curriculum, augmentation, exact resume."""
    from acemusic.errors import AcemusicError
    from acemusic.train.config import TrainConfig

    saved = out / "train_config.json"
    try:
        if resume:
            if not saved.is_file():
                fail(f"{out}: nothing to resume ({saved} does not exist)")
            cfg = TrainConfig.load(saved)
        elif config is not None:
            if not config.is_file():
                fail(f"{config}: no such config file")
            cfg = TrainConfig.load(config)
        else:
            name = preset or "mini"
            if name not in PRESETS:
                fail(f"--preset must be one of {', '.join(PRESETS)}, not {name!r}")
            cfg = TrainConfig.preset(name)
        if preset is not None and (resume or config is not None):
            cfg.model_preset = preset
        overrides = {
            "data": None if data is None else str(data), "out": str(out), "max_steps": steps, "bf16": bf16,
            "grad_checkpointing": grad_checkpointing, "fsdp": fsdp, "seq_len": seq_len,
            "tokens_per_batch": tokens_per_batch, "lr": lr, "min_lr": min_lr, "warmup_steps": warmup,
            "weight_decay": weight_decay, "grad_clip": grad_clip, "grad_accum": grad_accum, "fim_rate": fim_rate,
            "eval_interval": eval_interval, "ckpt_interval": ckpt_interval, "log_interval": log_interval,
            "seed": seed, "num_threads": threads,
        }
        cfg = cfg.replace(**{k: v for k, v in overrides.items() if v is not None})
    except (ValueError, TypeError, KeyError) as e:
        fail(f"bad training configuration: {e}")
    if not cfg.data:
        fail("--data is required (a directory built by `acemusic data build`)")

    from acemusic.train.loop import train

    try:
        result = train(cfg, resume=resume, force=force)
    except AcemusicError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted (second Ctrl-C): no checkpoint written for the current step", code=130)
    finally:
        from acemusic.train.distributed import teardown

        teardown()
    if result.stopped:
        raise typer.Exit(0)


def main() -> None:
    """`python -m acemusic.cli.train ...` (what torchrun launches): the train command on its own."""
    typer.run(train_cmd)


if __name__ == "__main__":
    main()
