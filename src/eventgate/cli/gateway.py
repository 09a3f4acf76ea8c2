"""`eventgate gateway export envoy|apisix`: the embedded gateway's declarations (the app's
route table, the config's consumers, scopes and limits) as the config of a dedicated
gateway in front of `serve commands` and `serve queries` (docs/envoy.md).

The config file holds only the SHA-256 of each API key; both Envoy and APISIX compare
plaintext keys, so the keys are read from `--keys-file` or EVENTGATE_KEY_<NAME>, each
checked against its hash, and written with the internal token into a file only its owner
can read. No key is ever printed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from eventgate.bootstrap import gateway_asyncapi, gateway_openapi, route_table
from eventgate.cli.common import AppOption, CliError, DataDir, app, checked, chosen_app, out
from eventgate.cli.serving import INTERNAL_TOKEN_ENV, check_exposure, internal_token
from eventgate.config import DEFAULT_DATA_DIR, broker_url
from eventgate.gateway.config import load_config
from eventgate.gateway.export.apisix import apisix_yaml
from eventgate.gateway.export.envoy import envoy_yaml
from eventgate.gateway.export.model import KEY_ENV_PREFIX, Export, build_export, read_keys

__all__ = ["export_apisix", "export_envoy", "write_private"]

gateway_app = typer.Typer(
    help="The gateway's routes, keys and limits for Envoy or APISIX.", no_args_is_help=True
)
export_app = typer.Typer(
    help="Write a dedicated gateway's config from the app and --config.", no_args_is_help=True
)
gateway_app.add_typer(export_app, name="export")
app.add_typer(gateway_app, name="gateway")

Urls = Annotated[
    list[str], typer.Option(help="Base URL of an instance of the service (repeatable).")
]
Host = Annotated[str, typer.Option(help="Interface the gateway listens on.")]
Port = Annotated[int, typer.Option(min=0, max=65535, help="Port the gateway listens on.")]
Config = Annotated[Path | None, typer.Option(help="TOML config: consumers, limits.")]
KeysFile = Annotated[
    Path | None,
    typer.Option(
        "--keys-file",
        help=f'TOML of each consumer\'s API key (name = "key"); else {KEY_ENV_PREFIX}<NAME>.',
    ),
]
Timeout = Annotated[float, typer.Option(min=0.1, max=300, help="Seconds to wait for a service.")]
Insecure = Annotated[bool, typer.Option(help="Allow a non-loopback host without API keys.")]


@export_app.command("envoy")
def export_envoy(
    commands: Urls,
    queries: Urls,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")] = Path(
        "envoy.yaml"
    ),
    host: Host = "127.0.0.1",
    port: Port = 8000,
    admin_port: Annotated[
        int, typer.Option(min=0, max=65535, help="Envoy's admin port, on 127.0.0.1.")
    ] = 9901,
    timeout: Timeout = 10.0,
    config: Config = None,
    keys_file: KeysFile = None,
    insecure: Insecure = False,
    app_option: AppOption = None,
    data: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """An Envoy (v3) bootstrap: `envoy -c envoy.yaml` in front of the services."""
    export = _export(commands, queries, host, port, timeout, config, keys_file, insecure,
                     app_option, data)  # fmt: skip
    _write(output, lambda: envoy_yaml(export, admin_port=admin_port), export)


@export_app.command("apisix")
def export_apisix(
    commands: Urls,
    queries: Urls,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")] = Path(
        "apisix.yaml"
    ),
    timeout: Timeout = 10.0,
    config: Config = None,
    keys_file: KeysFile = None,
    app_option: AppOption = None,
    data: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """An APISIX standalone apisix.yaml (the listener is APISIX's own config.yaml's)."""
    export = _export(commands, queries, "127.0.0.1", 9080, timeout, config, keys_file, False,
                     app_option, data)  # fmt: skip
    _write(output, lambda: apisix_yaml(export), export)


def _export(commands: list[str], queries: list[str], host: str, port: int, timeout: float,
            config: Path | None, keys_file: Path | None, insecure: bool,
            app_option: str | None, data: Path) -> Export:  # fmt: skip
    served = chosen_app(app_option, config, data)
    gateway_config = checked(load_config, config)
    exposed = gateway_config.auth_enabled
    checked(check_exposure, host, exposed, insecure, "no API keys ([[gateway.consumers]])")
    token = checked(internal_token)
    keys = checked(read_keys, gateway_config, keys_file, os.environ)
    return checked(
        lambda: build_export(
            served.name,
            route_table(served),
            gateway_openapi(served, gateway_config),
            gateway_config,
            {"commands": commands, "queries": queries},
            keys,
            host=host,
            port=port,
            timeout=timeout,
            internal_token=token,
            asyncapi=gateway_asyncapi(served, gateway_config, checked(broker_url, None, config)),
        )
    )


def _write(output: Path, render: Callable[[], str], export: Export) -> None:
    text = checked(render)
    checked(write_private, output, text)
    secrets = [f"{len(export.consumers)} API keys"] if export.consumers else []
    if export.internal_token is not None:
        secrets.append("the internal token")
    else:
        secrets.append(f"no internal token ({INTERNAL_TOKEN_ENV} is not set)")
    out.print(f"wrote {output} (mode 0600): {len(export.routes)} routes of app"
              f" {export.app}, {', '.join(secrets)}")  # fmt: skip


def write_private(path: Path, text: str) -> None:
    """`text` into `path`, readable by its owner only from the first byte (a temporary file
    beside it, 0600, renamed over it)."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(name, 0o600)
        os.replace(name, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise CliError(f"cannot write {path}: {e.strerror}") from None
