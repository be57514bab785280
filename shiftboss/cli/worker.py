"""`shiftboss worker start`: the worker daemon, with the seeds' options."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from pathlib import Path

import click

from shiftboss.settings import load_settings


@click.command("start")
@click.option("-p", "--pool", required=True, help="The work pool the worker serves.")
@click.option("-n", "--name", default=None, help="Name of the worker (default: host name and a random suffix).")
@click.option("-q", "--work-queue", "queues", multiple=True, help="A queue to serve; repeat for several (default: all of the pool's).")
@click.option("-t", "--type", "worker_type", default="", help="Worker type; creates the pool if it is missing (default: the pool's type).")
@click.option("-l", "--limit", type=int, default=None, help="Most runs in flight at once.")
@click.option("--prefetch-seconds", type=float, default=None, help="Take runs this long before their start (SHIFTBOSS_PREFETCH_SECONDS).")
@click.option("--run-once", is_flag=True, help="Take the runs due now, run them to the end and exit.")
@click.option("--with-healthcheck", is_flag=True, help="Serve GET /health (SHIFTBOSS_WORKER_HEALTHCHECK_HOST/_PORT).")
@click.option("--base-job-template", type=click.Path(dir_okay=False), default=None, help="Template (JSON file) for a pool this worker creates.")
@click.option(
    "--allow-entrypoint", "allow_entrypoints", multiple=True,
    help="Also run flows of this module (pkg or pkg.flows) or folder, beyond the working directory; '*' for any. Repeat for several.",
)
@click.option("--allow-command", is_flag=True, help="Let a job configuration choose the command that runs a flow.")
@click.option("--preload", "preload", multiple=True, help="Import this module once for every run (warm starts); repeat for several.")
@click.option("--no-preload", is_flag=True, help="Start each run in a new Python (cold starts), not forked from a warm one.")
def start(
    pool: str,
    name: str | None,
    queues: tuple[str, ...],
    worker_type: str,
    limit: int | None,
    prefetch_seconds: float | None,
    run_once: bool,
    with_healthcheck: bool,
    base_job_template: str | None,
    allow_entrypoints: tuple[str, ...],
    allow_command: bool,
    preload: tuple[str, ...],
    no_preload: bool,
) -> None:
    """Start a worker: hold a stream to the scheduler and run what it pushes."""
    from shiftboss.errors import ShiftbossError
    from shiftboss.workers.daemon import Daemon, Options
    from shiftboss.cli.telemetry import configure_telemetry
    from shiftboss.workers.infrastructure import backend_for
    from shiftboss.workers.telemetry import WorkerTelemetry

    settings = load_settings()
    if limit is not None and limit < 1:
        raise click.BadParameter(f"must be at least 1, got {limit}", param_hint="--limit")
    if no_preload and preload:
        raise click.BadParameter("--preload imports modules for warm starts; --no-preload turns them off: give one", param_hint="--preload")
    if prefetch_seconds is not None and prefetch_seconds < 0:
        raise click.BadParameter(f"must not be negative, got {prefetch_seconds:g}", param_hint="--prefetch-seconds")
    if worker_type:
        try:
            backend_for(worker_type)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--type") from None
    template = None
    if base_job_template:
        if not worker_type:
            raise click.BadParameter("needs --type: the template is used when the worker creates the pool", param_hint="--base-job-template")
        path = Path(base_job_template)
        if not path.is_file():
            raise click.BadParameter(f"{base_job_template}: no such file", param_hint="--base-job-template")
        try:
            template = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"{base_job_template} is not valid JSON: {exc}", param_hint="--base-job-template") from None
    options = Options(
        pool=pool,
        name=name or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}",
        queues=list(queues),
        type=worker_type,
        limit=limit or 0,
        prefetch_seconds=settings.prefetch_seconds if prefetch_seconds is None else prefetch_seconds,
        run_once=run_once,
        base_job_template=template,
        address=settings.api_address,
        grace_seconds=settings.worker_grace_seconds,
        connect_timeout=settings.worker_connect_timeout,
        healthcheck=(settings.worker_healthcheck_host, settings.worker_healthcheck_port) if with_healthcheck else None,
        healthcheck_down_seconds=settings.worker_healthcheck_down_seconds,
        allowed_entrypoints=[a.strip() for a in allow_entrypoints if a.strip()],
        allow_command=allow_command,
        warm_start=not no_preload,
        preload=[m for m in preload if m.strip()],
    )
    daemon = Daemon(options)
    if settings.log_format != "text":
        from shiftboss._json_logs import JsonConsole, configure_logging

        try:
            configure_logging(settings.log_format)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        daemon.console = JsonConsole()  # type: ignore[assignment]
    telemetry = configure_telemetry(settings, "shiftboss-worker")
    if telemetry is not None:
        daemon.telemetry = WorkerTelemetry(telemetry, options.pool, options.name)
    try:
        code = asyncio.run(daemon.run())
    except ShiftbossError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        raise SystemExit(1) from None
    except ValueError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(1) from None
    finally:
        if telemetry is not None:
            telemetry.shutdown()
    raise SystemExit(code)
