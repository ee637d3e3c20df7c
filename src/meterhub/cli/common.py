"""What every command group shares: the typer app, the consoles, the options, how errors
become one line, and which store a command opens (and whether it may create it)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from meterhub.errors import MeterhubError, StoreNotFoundError
from meterhub.hub import Hub
from meterhub.hub import open as open_hub
from meterhub.model import CONTROL_PATTERN
from meterhub.store import DEFAULT_URL

if TYPE_CHECKING:
    from meterhub.config import Settings

app = typer.Typer(
    name="meterhub",
    help="One hub for sensor and meter data: import, store, query, aggregate and export "
         "readings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain help text: rich markup would eat [api] and [dsmr] (the config tables named)
    rich_markup_mode=None,
)
out = Console()
err = Console(stderr=True)

StoreOption = Annotated[str | None, typer.Option(
    "--store", envvar="METERHUB_STORE", metavar="URL",
    help="Store URL, e.g. duckdb:///meterhub.duckdb (env METERHUB_STORE; default: the "
         "configuration's [store] url, else ./meterhub.duckdb).")]
ConfigOption = Annotated[Path, typer.Option(
    "--config", envvar="METERHUB_CONFIG", metavar="FILE",
    help="Configuration file (env METERHUB_CONFIG).")]
OptionalConfig = Annotated[Path | None, typer.Option(
    "--config", envvar="METERHUB_CONFIG", metavar="FILE",
    help="Configuration file (env METERHUB_CONFIG; default ./meterhub.toml if present).")]
DeviceOption = Annotated[list[str] | None, typer.Option(
    "--device", "-d", metavar="ID", help="Device id; repeat for several. Default: all.")]
ChannelOption = Annotated[list[str] | None, typer.Option(
    "--channel", "-c", metavar="NAME",
    help="Channel name; repeat for several. Default: all.")]
StartOption = Annotated[str | None, typer.Option(
    metavar="TIME",
    help="Start, inclusive, ISO 8601 (naive times are UTC, or in --tz for aggregates).")]
EndOption = Annotated[str | None, typer.Option(metavar="TIME", help="End, exclusive, ISO 8601.")]
UnitOption = Annotated[str | None, typer.Option(
    metavar="UNIT", help="Convert values to this unit, e.g. degF, MJ, L, hPa.")]
HostOption = Annotated[str | None, typer.Option(
    metavar="ADDRESS", help="Address to listen on (default: [api] host, 127.0.0.1).")]
PortOption = Annotated[int | None, typer.Option(
    min=0, max=65535, metavar="PORT", help="Port; 0 picks a free one (default: [api] port, 8000).")]


def fail(message: str) -> typer.Exit:
    """Print ``message`` as the one error line; raise what this returns (exit code 1).

    Control characters in it (a value given, such as a device id with a line break) are
    written as escapes, so the line stays one line."""
    message = _CONTROL.sub(lambda found: repr(found.group())[1:-1], message)
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


_CONTROL = re.compile(CONTROL_PATTERN)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Any meterhub error becomes one line on stderr and exit code 1."""
    try:
        yield
    except StoreNotFoundError as exc:
        raise fail(f"{exc}: {_store_hint()}") from None
    except MeterhubError as exc:
        raise fail(str(exc)) from None


def _store_hint() -> str:
    here = sorted(p.name for p in Path().glob("*.duckdb"))
    hint = ("check --store (or METERHUB_STORE) and --config; `meterhub import`, `sync`, "
            "`sample` and `demo` make a store")
    if here:
        hint += "; stores in this folder: " + ", ".join(
            f"--store duckdb:///{name}" for name in here)
    return hint


def settings_of(config: Path | None) -> Settings:
    """Settings from --config; without it ./meterhub.toml if there is one, else defaults."""
    from meterhub.config import DEFAULT_PATH, Settings, load

    with user_errors():
        if config is None:
            return load(DEFAULT_PATH) if DEFAULT_PATH.is_file() else Settings()
        return load(config)


def store_url(store: str | None, config: Path | None) -> str:
    """Which store a command means: --store (or METERHUB_STORE), else the configuration's
    [store] url (--config, or ./meterhub.toml when present), else ./meterhub.duckdb."""
    if store:
        return store
    if config is not None or Path("meterhub.toml").is_file():
        return settings_of(config).store.url
    return DEFAULT_URL


@contextlib.contextmanager
def opened(url: str, *, create: bool) -> Iterator[Hub]:
    """The store at ``url`` as a Hub. Only commands that write pass ``create=True``: a read
    of a store that does not exist says so, with a hint, instead of making an empty one."""
    with user_errors():
        hub = open_hub(url, create=create)
        try:
            yield hub
        finally:
            hub.close()


def listen(host: str, port: int) -> tuple[Any, int]:
    """A listening socket (port 0 picks a free one) and its port; exit 1 if it cannot
    bind."""
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # listening before "listening on" is printed: a client that connects at once
        # waits in the backlog until the server accepts, instead of being refused
        sock.listen(2048)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock, int(sock.getsockname()[1])
