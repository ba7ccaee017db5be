"""`acemusic eval report`: the model against every baseline and held-out real music, as a Markdown report.

    acemusic eval report --checkpoint checkpoints/acemusic-mini --data data/m21 --lstm runs/lstm \
        --n 200 --bars 16 --out runs/eval_report

Writes `report.md` (tables), `pitch_classes.png`, `metrics.png`, `piano_rolls.png`, `results.json` and the cached
generations (`gen/<system>/<i>.mid`, `behaviour/...`) to `--out`; a rerun reuses every cached file. The LSTM
baseline comes from `acemusic eval lstm` (or leave `lstm` out of `--systems`).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from acemusic.cli.app import fail
from acemusic.cli.eval import eval_app
from acemusic.cli.options import Checkpoint
from acemusic.errors import AcemusicError


@eval_app.command("report")
def report_cmd(
    out: Annotated[Path, typer.Option("--out", help="Report folder (cached generations live here too).")],
    checkpoint: Checkpoint = None,
    data: Annotated[Path, typer.Option("--data", help="Dataset directory from `acemusic data build`.")] = Path(
        "data/m21"),
    n: Annotated[int, typer.Option("--n", min=1, help="Prompts (test pieces) per system.")] = 200,
    bars: Annotated[int, typer.Option("--bars", min=1, max=64, help="Bars per piece (at most the piece's).")] = 16,
    seed: Annotated[int, typer.Option("--seed", help="Prompt i uses seed + i; also the bootstrap seed.")] = 0,
    systems: Annotated[str, typer.Option("--systems", help="Comma list of systems to compare.")] = ",".join(
        ("acemusic", "lstm", "kneser-ney", "unigram", "copy-train", "real-val")),
    lstm: Annotated[Path | None, typer.Option("--lstm", help="LSTM baseline dir (`acemusic eval lstm`).")] = Path(
        "runs/lstm"),
    cache_dir: Annotated[Path, typer.Option("--cache-dir", help="Where fitted n-gram/unigram tables are kept.")] = Path(
        "runs/eval"),
    cfg: Annotated[float, typer.Option("--cfg", help="acemusic classifier-free guidance scale.")] = 1.5,
    top_p: Annotated[float, typer.Option("--top-p", help="acemusic nucleus sampling.")] = 0.95,
    resamples: Annotated[int, typer.Option("--resamples", min=10, help="Bootstrap resamples.")] = 1000,
    oa_resamples: Annotated[int, typer.Option("--oa-resamples", min=0, help="Resamples for stats OA.")] = 100,
    nll: Annotated[bool, typer.Option("--nll/--no-nll", help="Score held-out NLL of the test split.")] = True,
    behaviour_n: Annotated[int, typer.Option("--behaviour-n", min=0, help="Items per behavioural test.")] = 40,
    threads: Annotated[int, typer.Option("--threads", min=0, help="torch CPU threads (0 = torch default).")] = 1,
    force: Annotated[bool, typer.Option("--force", help="Regenerate if --out holds other settings.")] = False,
) -> None:
    """Generate from the model and every baseline for the same prompts and seeds; every metric; a report."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from acemusic.eval.report import ReportConfig, main_table, run_report

    if not data.is_dir():
        fail(f"{data}: not a dataset directory")
    if checkpoint is not None and not checkpoint.is_dir():
        fail(f"{checkpoint}: not a checkpoint directory")
    chosen = tuple(s.strip() for s in systems.split(",") if s.strip())
    if not chosen:
        fail("--systems is empty")
    if "lstm" in chosen and (lstm is None or not (lstm / "lstm.safetensors").is_file()):
        fail(f"{lstm}: no LSTM baseline there; train one with `acemusic eval lstm --data {data} --out {lstm}` "
             "or leave lstm out of --systems")
    if out.exists() and not out.is_dir():
        fail(f"{out} exists and is not a folder")
    if threads:
        import torch

        torch.set_num_threads(threads)
    command = shlex.join(["acemusic", *sys.argv[1:]])
    config = ReportConfig(data=data, out=out, n=n, bars=bars, seed=seed, systems=chosen, checkpoint=checkpoint,
                          lstm=lstm, cache_dir=cache_dir, cfg=cfg, top_p=top_p, n_resamples=resamples,
                          oa_resamples=oa_resamples, nll=nll, behaviour_n=behaviour_n, force=force, command=command)
    console = Console()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("prompts", total=None)
            results = run_report(config, stage=lambda name, total: bar.reset(task, description=name, total=total),
                                 advance=lambda k: bar.advance(task, k))
    except AcemusicError as e:
        fail(str(e))
    console.print(main_table(results))
    console.print(f"wrote {out / 'report.md'}")
