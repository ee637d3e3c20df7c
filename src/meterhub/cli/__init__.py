"""The ``meterhub`` command: a thin typer shell over `meterhub.Hub`, one module per group of
commands:

- `meterhub.cli.data`: import, export, query, devices, gaps, channels, compact, sample;
- `meterhub.cli.sync`: config check, sync, run, status;
- `meterhub.cli.serve`: serve and API keys;
- `meterhub.cli.dsmr`: p1 and energy (the smart meter);
- `meterhub.cli.emulate`: emulate and demo;
- `meterhub.cli.migrate`: migrate (a whole store into another).

What they share (options, errors, which store a command opens, output formats) is in
`meterhub.cli.common` and `meterhub.cli.output`.
"""

from __future__ import annotations

import shutil
from typing import Annotated

import typer

from meterhub import __version__
from meterhub.cli import data, dsmr, emulate, migrate, serve, sync
from meterhub.cli.common import app, err, out

__all__ = ["app", "data", "dsmr", "emulate", "main", "migrate", "serve", "sync"]


def _version(value: bool) -> None:
    if value:
        out.print(f"meterhub {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version.")] = False
          ) -> None:
    """meterhub: readings from many devices in one store."""
    # the width now, not when the module was imported (a COLUMNS of that moment would stick)
    for console in (out, err):
        console.width = shutil.get_terminal_size().columns


def main() -> None:
    """Console-script entry point."""
    app(prog_name="meterhub")
