"""`meterhub migrate`: copy a whole store into another, resumable and verified."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from meterhub.cli.common import OptionalConfig, app, err, fail, opened, out, store_url
from meterhub.migrate import Progress as Done
from meterhub.migrate import migrate
from meterhub.store import same_store, shown_url


@app.command("migrate")
def migrate_(
    to: Annotated[str, typer.Option(
        "--to", metavar="URL", help="The store to copy into, e.g. "
        "clickhouse://host:8123/meterhub?cluster=NAME (made when missing).")],
    from_: Annotated[str | None, typer.Option(
        "--from", metavar="URL", envvar="METERHUB_STORE",
        help="The store to copy from (default: --config's [store] url, else "
             "./meterhub.duckdb).")] = None,
    config: OptionalConfig = None,
) -> None:
    """Copy a whole store (catalog, readings, cursors, state, API keys) into another, with a
    progress bar. Run it again after an interruption: series already copied are verified
    and skipped. Every series is checked by count and checksum in the target."""
    source_url = store_url(from_, config)
    if same_store(source_url, to):
        raise fail(f"--from and --to name the same store ({shown_url(to)})")
    started = time.perf_counter()
    with opened(source_url, create=False) as source, opened(to, create=True) as target:
        out.print(f"copying {shown_url(source_url)} into {shown_url(to)}", markup=False,
                  highlight=False, soft_wrap=True)
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed:,} readings"),
                      TimeRemainingColumn(), console=err, transient=True) as bar:
            task = bar.add_task("migrating", total=None)

            def show(done: Done) -> None:
                bar.update(task, total=done.readings_total, completed=done.readings,
                           description=f"series {done.series:,}/{done.series_total:,}")

            result = migrate(source.store, target.store, on_progress=show)
    seconds = time.perf_counter() - started
    moved = result.readings_copied
    out.print(f"{result.series_copied:,} series copied ({moved:,} readings, "
              f"{moved / seconds if seconds else 0:,.0f} readings/s), "
              f"{result.series_present:,} already there and verified "
              f"({result.readings_present:,} readings); {result.cursors} cursors, "
              f"{result.state_values} state values, {result.keys_copied} API keys copied "
              f"in {seconds:.1f} s", markup=False, highlight=False, soft_wrap=True)
    if result.mismatched:
        raise fail(f"{len(result.mismatched)} series differ in the target after the copy: "
                   + ", ".join(result.mismatched[:10])
                   + (" ..." if len(result.mismatched) > 10 else ""))
    out.print("verified: every series has the same count and checksum in both stores",
              markup=False, highlight=False)
