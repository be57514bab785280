"""The `shiftboss` command: the generated RPC commands plus the server's own commands."""

from __future__ import annotations

import click

from shiftboss.cli.deploy import deploy
from shiftboss.cli.generated import add_generated
from shiftboss.cli.server import server
from shiftboss.cli.telemetry import cli_client
from shiftboss.cli.worker import start as worker_start

__all__ = ["main", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shiftboss")
def cli() -> None:
    """shiftboss: work pools, work queues and workers.

    Commands connect to SHIFTBOSS_API_ADDRESS (default 127.0.0.1:4300).
    """


add_generated(cli, cli_client)
cli.add_command(server)
cli.add_command(deploy)
cli.commands["worker"].add_command(worker_start)  # type: ignore[attr-defined]


def main() -> None:
    cli(prog_name="shiftboss")
