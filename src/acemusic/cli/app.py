"""The typer application every command module registers on. Keep imports here light: cold start matters."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

app = typer.Typer(
    name="acemusic",
    help="acemusic: an open music foundation model (compose, tokenize, train, evaluate).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error to stderr and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def check_writable(path: Path, force: bool) -> None:
    """Refuse to overwrite a user's file unless --force was given."""
    if path.exists() and not force:
        fail(f"{path} exists; pass --force to overwrite it")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
