"""`acemusic eval ...`: held-out likelihood of the baselines (and, later, the model) on a dataset directory.

acemusic eval ngram --data data/tokens --order 5 --out results/ngram.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import app, check_writable, fail

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
