"""`shiftboss server ...`: start the mesh, migrate its databases.

The services come with the `server` extra; without it (`pip install shiftboss` gives the
SDK, the CLI and the worker) these commands say so in one line, and nothing here imports
the server's stack until a command runs."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any

import click

from shiftboss.cli.output import Refusal
from shiftboss.cli.telemetry import configure_telemetry
from shiftboss.errors import ShiftbossError
from shiftboss.settings import load_settings

#: What the services import that `pip install shiftboss` does not bring.
SERVER_STACK = ("sqlalchemy", "alembic", "asyncpg", "aiosqlite", "jsonschema", "croniter", "grpc_health", "grpc_reflection", "opentelemetry.sdk")


def _require_server_extra() -> None:
    for module in SERVER_STACK:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # its parent package is missing
            found = False
        if not found:
            raise Refusal("shiftboss server needs the server extra: pip install 'shiftboss[server]'")


def _not_at_head(exc: Exception) -> Refusal:
    return Refusal(f"shiftboss: {exc}")


@click.group()
def server() -> None:
    """Run and administer the shiftboss server."""


@server.command()
@click.option("--host", default=None, help="Interface to listen on (SHIFTBOSS_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (SHIFTBOSS_PORT, default 4300).")
@click.option(
    "--service",
    "services",
    multiple=True,
    help="Run only this service (keys, pools, templates, heartbeats, scheduler); repeat for several. All by default.",
)
@click.option("--auth", is_flag=True, default=None, help="Require an API key on every call (SHIFTBOSS_AUTH=1).")
@click.option(
    "--insecure",
    is_flag=True,
    default=None,
    help="Serve a non-loopback address with neither auth nor TLS (refused otherwise).",
)
def start(host: str | None, port: int | None, services: tuple[str, ...], auth: bool | None, insecure: bool | None) -> None:
    """Start the services in this process: all of them on the embedded SQLite by default."""
    _require_server_extra()
    from shiftboss._json_logs import configure_logging
    from shiftboss.services.db import NotAtHead
    from shiftboss.services.mesh import Mesh

    settings = load_settings(host=host, port=port, auth=auth, insecure=insecure)
    try:
        configure_logging(settings.log_format)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.insecure and not (settings.auth or settings.tls_client_ca_file):
        click.echo("WARNING: --insecure: no API keys and no client certificates; anyone who reaches this port can run code on your workers", err=True)
    telemetry = configure_telemetry(settings, "shiftboss-server")

    async def run() -> None:
        try:
            mesh = Mesh(settings, list(services) or None)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--service") from None
        try:
            bound = await mesh.start()
        except Exception:
            await mesh.stop(0)
            raise
        await mesh.serve_until_signalled(
            lambda: click.echo(f"shiftboss serving {', '.join(mesh.names)} on {settings.host}:{bound}", err=True)
        )

    try:
        _serve(run())
    except NotAtHead as exc:  # before anything listens
        raise _not_at_head(exc) from None
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except ShiftbossError as exc:  # a TLS file that cannot be read
        raise click.ClickException(exc.message) from None
    finally:
        if telemetry is not None:
            telemetry.shutdown()


def _serve(main: Coroutine[Any, Any, None]) -> None:
    """Run the server on uvloop where it is installed (not on Windows): under load the event
    loop's own bookkeeping is a good share of the server's CPU, and uvloop's is smaller.
    Not the worker: uvloop starts a subprocess with fork(), which runs gRPC's fork handlers
    in the child (asyncio's loop starts it without them), and a flow process could die there."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


@server.command("create-admin-key")
@click.argument("name")
@click.option("--expires-in", type=float, default=None, help="Days until the key expires; never by default.")
def create_admin_key(name: str, expires_in: float | None) -> None:
    """Make the first admin key, straight in the server's database (no server needed).

    Only someone who holds the server's storage can do this. The key is the last line printed.
    """
    _require_server_extra()
    from shiftboss.services.db import NotAtHead
    from shiftboss.services.keys.service import create_admin_key as create

    try:
        key = asyncio.run(create(load_settings(), name, expires_in))
    except NotAtHead as exc:
        raise _not_at_head(exc) from None
    except ShiftbossError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"Created admin key '{name}'. It is printed below, once: keep it safe.", err=True)
    click.echo(key)


@server.group()
def database() -> None:
    """Administer the services' databases."""


@database.command()
@click.option("--service", "services", multiple=True, help="Only this service's tables; all by default.")
def upgrade(services: tuple[str, ...]) -> None:
    """Apply every pending migration."""
    _require_server_extra()
    from shiftboss.services.db import NotAtHead, has_migrations, open_database, release_database
    from shiftboss.services.mesh import SERVICE_NAMES, available_services

    settings = load_settings()
    unknown = sorted(set(services) - set(SERVICE_NAMES))
    if unknown:
        raise click.BadParameter(f"unknown service {', '.join(unknown)}", param_hint="--service")
    names = [n for n in available_services() if not services or n in services]

    async def run() -> None:
        for name in names:
            if not has_migrations(name):
                continue
            db = open_database(settings.database_url_for(name))
            try:
                await db.upgrade(name)
            finally:
                await release_database(db)
            click.echo(f"Upgraded {name} ({settings.database_url_for(name)})")

    try:
        asyncio.run(run())
    except NotAtHead as exc:
        raise _not_at_head(exc) from None
