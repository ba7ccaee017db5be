"""`acemusic eval ...`: held-out likelihood of the baselines and the model on a dataset directory.

acemusic eval ngram --data data/tokens --order 5 --out results/ngram.json
acemusic eval nll --checkpoint runs/small/model --data data/m21 --out benchmarks/results/perplexity.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, check_writable, fail
from acemusic.errors import AcemusicError

eval_app = typer.Typer(help="Evaluate models and baselines on held-out data.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("ngram")
def ngram(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory from `acemusic data build`.")],
    order: Annotated[int, typer.Option("--order", min=1, max=6, help="n-gram order.")] = 5,
    discount: Annotated[
        float | None,
        typer.Option("--discount", help="One fixed discount in (0, 1]; default: modified KN discounts per order."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the results as JSON here.")] = None,
    save_model: Annotated[Path | None, typer.Option("--save-model", help="Save the fitted n-gram (.npz).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out / --save-model if they exist.")] = False,
) -> None:
    """Fit an interpolated modified Kneser-Ney n-gram on train; report val/test NLL per token and perplexity."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from acemusic.eval.nll import evaluate_ngram

    if not data.is_dir():
        fail(f"{data}: not a directory")
    if discount is not None and not 0.0 < discount <= 1.0:
        fail(f"--discount must be in (0, 1], got {discount}")
    for path in (out, save_model):
        if path is not None:
            check_writable(path, force)

    console = Console()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("n-gram", total=None)
        lm, report = evaluate_ngram(data, order, discount, on_stage=lambda s: bar.update(task, description=s))
    report["data"] = str(data)

    table = Table(
        title=f"Kneser-Ney {order}-gram (fit on {report['train_tokens']:,} train tokens in {report['fit_seconds']} s)"
    )
    for col in ("split", "pieces", "scored tokens", "NLL / token (nats)", "perplexity"):
        table.add_column(col, justify="right")
    for split in ("val", "test"):
        r = report[split]
        table.add_row(
            split, f"{r['pieces']:,}", f"{r['tokens']:,}", f"{r['nll_per_token']:.4f}", f"{r['perplexity']:.3f}"
        )
    console.print(table)

    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"wrote {out}")
    if save_model is not None:
        lm.save(save_model)
        console.print(f"saved the model to {save_model}")


@eval_app.command("nll")
def nll(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Model directory (safetensors + config.json).")],
    data: Annotated[Path, typer.Option("--data", help="Dataset directory from `acemusic data build`.")],
    split: Annotated[str, typer.Option("--split", help="Split to score: train, val or test.")] = "test",
    order: Annotated[int, typer.Option("--order", min=1, max=6, help="Order of the Kneser-Ney baseline.")] = 5,
    context: Annotated[int, typer.Option("--context", min=32, help="Ids per model window (training seq_len).")] = 512,
    stride: Annotated[int, typer.Option("--stride", min=1, help="New targets per window after the first.")] = 256,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N pieces of the split.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Windows per forward pass.")] = 8,
    uncond: Annotated[bool, typer.Option("--uncond/--no-uncond", help="Also score with the null text.")] = True,
    threads: Annotated[int, typer.Option("--threads", min=0, help="torch CPU threads (0 = torch default).")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Write the results as JSON here.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Held-out NLL per token and perplexity of a checkpoint against a Kneser-Ney n-gram, on the same tokens."""
    import shlex

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from acemusic.eval.model_nll import evaluate_perplexity

    for path, what in ((checkpoint, "checkpoint"), (data, "dataset")):
        if not path.is_dir():
            fail(f"{path}: not a {what} directory")
    if out is not None:
        check_writable(out, force)
    if threads:
        import torch

        torch.set_num_threads(threads)

    console = Console()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("load", total=None)

        def stage(name: str, total: int | None) -> None:
            bar.reset(task, description=name, total=total)

        try:
            report = evaluate_perplexity(checkpoint, data, split, order, context, stride, limit, batch_size, uncond,
                                         on_stage=stage, on_advance=lambda k: bar.advance(task, k))
        except (AcemusicError, ValueError) as e:  # bad checkpoint/dataset, or stride too long for the context
            fail(str(e))
    args = ["--checkpoint", str(checkpoint), "--data", str(data), "--split", split, "--order", str(order),
            "--context", str(context), "--stride", str(stride), "--batch-size", str(batch_size)]
    args += (["--limit", str(limit)] if limit else []) + ([] if uncond else ["--no-uncond"])
    args += (["--threads", str(threads)] if threads else []) + (["--out", str(out)] if out else [])
    report = {"command": shlex.join(["acemusic", "eval", "nll", *args]), **report}

    ck, ng = report["checkpoint"], report["ngram"]
    table = Table(title=f"{split} split: {report['pieces']:,} pieces; checkpoint {ck['steps']} steps, "
                        f"{ck['tokens_seen'] or 0:,} tokens seen; context {context}, stride {stride}")
    for col in ("model", "scored tokens", "NLL / token (nats)", "perplexity", "NLL reduction vs n-gram"):
        table.add_column(col, justify="right")
    table.add_row(f"Kneser-Ney {order}-gram", f"{ng['tokens']:,}", f"{ng['nll_per_token']:.4f}",
                  f"{ng['perplexity']:.3f}", "")
    for name, r in report["model"].items():
        table.add_row(f"transformer ({name})", f"{r['tokens']:,}", f"{r['nll_per_token']:.4f}",
                      f"{r['perplexity']:.3f}", f"{100 * r['reduction_vs_ngram']:.1f}%")
    console.print(table)
    goal = report["goal"]
    console.print(f"goal: {100 * goal['nll_reduction']:.0f}% lower NLL than the n-gram ({goal['measured_on']}): "
                  + ("met" if goal["met"] else "not met"))
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"wrote {out}")
