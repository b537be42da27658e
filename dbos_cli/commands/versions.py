"""`dbos version ...`: the application versions registered in the system tables, which is the
latest, and which ones live executors run; and the version options of `dbos workflow resume`,
`restart` and `fork` (moving a workflow to another version, and warning when no live executor
runs the version a workflow is on).

`dbos version` alone prints the CLI's version, as DBOS's `dbos version` does."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import typer

from dbos_cli import render
from dbos_cli.options import DbUrl, JsonFlag, open_client

if TYPE_CHECKING:
    from runtime.client import Change, DBOSClient

group = typer.Typer(
    help="Application versions: list them, show or set the latest.", invoke_without_command=True
)

LatestVersion = Annotated[
    bool,
    typer.Option(
        "--latest-version",
        help="Move the workflows to the latest registered application version (see `dbos "
        "version list`); use with DBOS.patch so their replay takes the old branches.",
    ),
]
ApplicationVersion = Annotated[
    str | None,
    typer.Option(
        "--application-version",
        "--app-version",
        "-v",
        help="Application version whose executors run the workflows.",
        show_default=False,
    ),
]


class _QuietUnserved(logging.Filter):
    """Drops the client's log line about a workflow no live executor runs: the CLI prints its
    own one-line warning for it (``report_unserved``)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def filter(self, record: logging.LogRecord) -> bool:
        return not hasattr(record, self.key)


def quiet_unserved_log() -> None:
    """Install ``_QuietUnserved`` on the ``dbos`` logger (once)."""
    from runtime.client import UNSERVED_LOG_KEY

    dbos_logger = logging.getLogger("dbos")
    if not any(isinstance(f, _QuietUnserved) for f in dbos_logger.filters):
        dbos_logger.addFilter(_QuietUnserved(UNSERVED_LOG_KEY))


def target_version(client: DBOSClient, version: str | None, latest: bool) -> str | None:
    """The version asked for with ``--application-version`` or ``--latest-version``, if any."""
    return client.resolve_application_version(version, latest)


# How many workflows of one command get their queue checked (one `why` each): a bulk resume of
# thousands must not make thousands of reads to print warnings.
QUEUE_CHECKS = 20


def report_unserved(client: DBOSClient, workflow_ids: Iterable[str]) -> None:
    """One warning line on stderr per workflow that no live process can run: its version has no
    live executor, or (for the first ``QUEUE_CHECKS``) it is enqueued on a queue no process has
    declared; each points to `dbos workflow why` (which lists the commands that would move it)."""
    ids = list(workflow_ids)
    unserved = client.unserved_workflows(ids)
    for item in unserved:
        render.warning(f"{item.message()}; see `dbos workflow why {item.workflow_id}`")
    warned = {item.workflow_id for item in unserved}
    for wid in [w for w in ids if w not in warned][:QUEUE_CHECKS]:
        why = client.explain_workflow(wid)
        if why.reason == "QUEUED" and any(label == "declared" for label, _ in why.facts):
            render.warning(
                f"workflow {wid} is {why.summary}: it waits until a process declares that "
                f"queue; see `dbos workflow why {wid}`"
            )


@group.callback()
def version_root(ctx: typer.Context) -> None:
    """Application versions: list them, show or set the latest. Alone: the CLI's version."""
    if ctx.invoked_subcommand is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            render.info(f"dbos {version('dbos-runtime')}")
        except PackageNotFoundError:
            render.info("dbos unknown")


@group.command("list")
def list_versions(db_url: DbUrl = None, json_output: JsonFlag = False) -> None:
    """List the registered application versions, latest first, and whether a live executor
    runs each."""
    client = open_client(db_url)
    try:
        versions = client.list_application_versions()
        live = client.live_application_versions()
    finally:
        client.destroy()
    if json_output:
        render.print_json([{**v, "live": v["version_name"] in live} for v in versions])
    else:
        render.versions_table([dict(v) for v in versions], live)


@group.command("latest")
def latest_version(db_url: DbUrl = None, json_output: JsonFlag = False) -> None:
    """Show the latest application version (new work should target it)."""
    client = open_client(db_url)
    try:
        latest = client.get_latest_application_version()
    finally:
        client.destroy()
    if json_output:
        render.print_json(dict(latest))
    else:
        render.info(latest["version_name"])


@group.command("set-latest")
def set_latest(
    version_name: Annotated[str, typer.Argument(help="A registered application version.")],
    db_url: DbUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Make a registered application version the latest."""
    client = open_client(db_url)
    try:
        client.set_latest_application_version(version_name)
        latest = client.get_latest_application_version()
    finally:
        client.destroy()
    if json_output:
        render.print_json(dict(latest))
    else:
        render.success(f"{version_name} is now the latest application version")


def register(app: typer.Typer) -> None:
    """Add `dbos version ...`."""
    app.add_typer(group, name="version")


def resume_on(
    client: DBOSClient,
    workflow_ids: list[str],
    version: str | None,
    latest: bool,
    *,
    dry_run: bool = False,
) -> list[Change]:
    """`dbos workflow resume`'s action: resume (on the version asked for, if any), then warn
    about each resumed workflow no live executor runs. ``dry_run``: what it would resume (a
    move to another version changes nothing about which ones), changing nothing."""
    quiet_unserved_log()
    target = target_version(client, version, latest)
    if dry_run:
        return client.resume_each(workflow_ids, dry_run=True)
    if target is None:
        changes = client.resume_each(workflow_ids)
    else:
        changes = client.resume_each_on(workflow_ids, target)
    report_unserved(client, [c.workflow_id for c in changes if c.changed])
    return changes
