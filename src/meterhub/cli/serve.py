"""Commands that serve the store: serve, and the API keys it checks."""

from __future__ import annotations

from typing import Annotated

import pyarrow as pa
import typer

from meterhub.cli.common import (
    HostOption,
    OptionalConfig,
    PortOption,
    StoreOption,
    app,
    err,
    opened,
    out,
    settings_of,
    user_errors,
)
from meterhub.cli.output import FormatOption, chosen, emit
from meterhub.cli.sync import serve_api
from meterhub.errors import MeterhubError


@app.command()
def serve(config: OptionalConfig = None, store: StoreOption = None, host: HostOption = None,
          port: PortOption = None) -> None:
    """Serve the REST API (readings, aggregates, catalog, push, keys) over the store."""
    settings = settings_of(config)
    with opened(store or settings.store.url, create=True) as hub:
        serve_api(hub, settings, host, port)


keys_app = typer.Typer(help="Make, list and revoke API keys.", no_args_is_help=True,
                       rich_markup_mode=None)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for, e.g. datalogger.")],
    scope: Annotated[str, typer.Option(
        help="read (queries), write (also pushes readings) or admin (also manages keys).")
    ] = "read",
    rate_limit: Annotated[str | None, typer.Option(
        help="This key's own limit, e.g. 100/minute (default: [api] rate_limit).")] = None,
    config: OptionalConfig = None, store: StoreOption = None,
) -> None:
    """Make an API key. It is printed once, on stdout; only its hash is stored."""
    from meterhub.keys import new_key

    settings = settings_of(config)
    with user_errors():
        record, text = new_key(name, scope, rate_limit)
    with opened(store or settings.store.url, create=True) as hub, user_errors():
        hub.store.add_key(record)
    err.print(f"key {record.name!r} (id {record.key_id}, scope {record.scope.value}, "
              f"limit {record.rate_limit or settings.api.rate_limit}); it is shown only now, "
              "keep it somewhere safe:", soft_wrap=True, markup=False, highlight=False)
    print(text)


@keys_app.command("list")
def keys_list(config: OptionalConfig = None, store: StoreOption = None,
              fmt: FormatOption = None) -> None:
    """Every key: id, name, scope, limit, when made and revoked (never the key itself)."""
    settings = settings_of(config)
    with opened(store or settings.store.url, create=False) as hub:
        keys = hub.store.api_keys()
    table = pa.Table.from_pylist([
        {"id": k.key_id, "name": k.name, "scope": k.scope.value,
         "rate_limit": k.rate_limit or f"{settings.api.rate_limit} (default)",
         "created": k.created_at, "revoked": k.revoked_at} for k in keys],
        schema=pa.schema([("id", pa.string()), ("name", pa.string()),
                          ("scope", pa.string()), ("rate_limit", pa.string()),
                          ("created", pa.timestamp("us", "UTC")),
                          ("revoked", pa.timestamp("us", "UTC"))]))
    emit(table, chosen(fmt), {}, title="API keys", drop_first=["revoked", "created"])


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id, or the name of an active key.")],
    config: OptionalConfig = None, store: StoreOption = None,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    settings = settings_of(config)
    with opened(store or settings.store.url, create=False) as hub, user_errors():
        known = hub.store.api_keys()
        by_id = [k for k in known if k.key_id == key]
        by_name = [k for k in known if k.name == key and k.active]
        target = next(iter(by_id or by_name), None)
        if target is None:
            raise MeterhubError(f"no key with id or active name {key!r}: see `meterhub keys "
                                "list`")
        hub.store.revoke_key(target.key_id)
    out.print(f"revoked key {target.name!r} (id {target.key_id})", markup=False)
