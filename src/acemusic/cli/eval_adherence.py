"""`acemusic eval adherence`: compose the 50 evaluation prompts and report the share of asks met per field.

    acemusic eval adherence --checkpoint checkpoints/acemusic-mini --out benchmarks/results/adherence.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import check_writable, fail
from acemusic.cli.eval import eval_app
from acemusic.cli.options import Checkpoint
from acemusic.errors import AcemusicError


@eval_app.command("adherence")
def adherence_cmd(
    checkpoint: Checkpoint = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the report as JSON here.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for every prompt.")] = 0,
    bars: Annotated[int, typer.Option("--bars", min=1, max=256, help="Bars per piece.")] = 16,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N prompts.")] = None,
    cfg: Annotated[float, typer.Option("--cfg", help="Classifier-free guidance scale.")] = 1.5,
    key_strength: Annotated[float, typer.Option("--key-strength", help="Out-of-key logit penalty (0 = off).")] = 1.0,
    candidates: Annotated[int, typer.Option("--candidates", min=1, max=16,
                                            help="Best-of-N by key fit (compose's default is 8).")] = 8,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Prompt adherence of compose: key, mode, tempo, instrument and meter asks met."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from acemusic.api import load
    from acemusic.eval.adherence import evaluate

    if out is not None and out.exists() and not force:
        fail(f"{out} exists; pass --force to overwrite it")
    console = Console()
    try:
        bundle = load(checkpoint)
        with Progress(TextColumn("prompts"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("prompts", total=limit or 50)
            report = evaluate(bundle, seed=seed, bars=bars, limit=limit, cfg=cfg, key_strength=key_strength,
                              candidates=candidates,
                              on_prompt=lambda done, total: bar.update(task, completed=done, total=total))
    except AcemusicError as e:
        fail(str(e))
    report["checkpoint"] = str(bundle.path)
    report["checkpoint_meta"] = {k: bundle.meta.get(k) for k in ("steps", "val_loss", "completed")}
    table = Table(title=f"prompt adherence ({report['n_prompts']} prompts, seed {seed}, {bars} bars)")
    for col in ("field", "asked", "met", "share"):
        table.add_column(col, justify="left" if col == "field" else "right")
    for field, r in report["fields"].items():
        if r["asked"]:
            table.add_row(field, str(r["asked"]), str(r["met"]), f"{r['share']:.0%}")
    console.print(table)
    if out is not None:
        check_writable(out, force)
        out.write_text(json.dumps(report, indent=1) + "\n")
        console.print(f"wrote {out}")
