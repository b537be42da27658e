"""The dashboard's actions (POST, CSRF-checked, confirmed on a page first): cancel, resume,
restart or fork one workflow, and cancel or resume every workflow matching the list's filters,
whose confirmation page counts what would really change (the runtime's dry run, the same
predicate as the real run and as the CLI's ``--dry-run``)."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from dbos_cli.ui import formatting
from dbos_cli.ui.pages import FILTER_KEYS, filters_of
from dbos_cli.ui.security import csrf_valid
from dbos_cli.ui.site import Site, echo, posted_form, step_number
from runtime.errors import DBOSException

ACTIONS = ("cancel", "resume", "restart", "fork")
BULK_ACTIONS = ("cancel", "resume")
# A bulk action looks at no more than this many matching workflows (newest first).
BULK_CAP = 10_000
# A form whose CSRF token does not match the session: most often one loaded before the dashboard
# restarted (its signing secret is per process), so say what to do, on a page.
EXPIRED = (
    "This page has expired (the dashboard restarted, or its session cookie changed), so nothing "
    "was done: go back, reload the page and try again."
)
PAST = {"cancel": "cancelled", "resume": "resumed"}


def csrf_ok(request: Request, form: FormData) -> bool:
    """Whether the form's CSRF field is the token signed for the session its cookie names."""
    return csrf_valid(request, form)


class Actions:
    """The POST handlers."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def one(self, request: Request, workflow_id: str, kind: str) -> Response:
        """An action on one workflow: the confirmation page, then (``confirmed=yes``) the act."""
        form = posted_form(request)
        if not csrf_ok(request, form):
            return self.site.error(request, 403, EXPIRED)
        if kind not in ACTIONS:
            return self.site.error(request, 404, f"unknown action {kind[:40]!r}")
        step = step_number(str(form.get("step") or "1")) if kind == "fork" else 1
        client = self.site.client()
        if "\x00" in workflow_id or client.get_workflow_status(workflow_id) is None:
            return self.site.error(request, 404, f"Workflow {echo(workflow_id)} does not exist")
        if form.get("confirmed") != "yes":
            return self.site.render(
                request, "confirm.html", wid=workflow_id, action=kind, step=step
            )
        target, message = workflow_id, ""
        try:
            if kind in BULK_ACTIONS:
                each = client.cancel_each if kind == "cancel" else client.resume_each
                [change] = each([workflow_id])
                message = PAST[kind] if change.changed else f"not {PAST[kind]}: {change.reason}"
            elif kind == "restart":
                target = client.restart_workflow(workflow_id).get_workflow_id()
                message = f"restarted from {workflow_id}"
            else:
                target = client.fork_workflow(workflow_id, step).get_workflow_id()
                message = f"forked from {workflow_id} at step {step}"
        except DBOSException as exc:
            message = f"failed: {exc}"
        return self.site.redirect(formatting.workflow_url(target), message)

    def bulk(self, request: Request, kind: str) -> Response:
        """Cancel or resume every workflow matching the filters the form carries."""
        form = posted_form(request)
        if not csrf_ok(request, form):
            return self.site.error(request, 403, EXPIRED)
        if kind not in BULK_ACTIONS:
            return self.site.error(request, 404, f"unknown bulk action {kind[:40]!r}")
        query = str(form.get("filters", ""))
        pairs = [
            (k, v) for k, v in parse_qsl(query) if k in FILTER_KEYS and k not in ("limit", "live")
        ]
        scoped = Request({**request.scope, "query_string": _encode(pairs)})
        filters = filters_of(scoped)
        client = self.site.client()
        matching = client.list_workflow_page(**filters, limit=BULK_CAP + 1, load_output=False)
        capped = len(matching) > BULK_CAP
        ids = [wf.workflow_id for wf in matching[:BULK_CAP]]
        each = client.cancel_each if kind == "cancel" else client.resume_each
        # The confirmation names exactly the workflows that would change (by a fingerprint of
        # their IDs); the confirmed POST acts on those or, when the selection moved in between
        # (workflows enqueued, finished...), asks again with the new count instead of acting.
        would = sorted(change.workflow_id for change in each(ids, dry_run=True) if change.changed)
        confirmed = form.get("confirmed") == "yes"
        if not confirmed or form.get("selection") != fingerprint(would):
            return self.site.render(
                request,
                "confirm_bulk.html",
                action=kind,
                would=len(would),
                matching=len(ids),
                capped=capped,
                cap=BULK_CAP,
                filters=_encode(pairs).decode(),  # re-encoded: no raw input in the form
                pairs=pairs,
                selection=fingerprint(would),
                moved=confirmed,
            )
        done = sum(1 for change in each(would) if change.changed)
        return self.site.redirect(
            "/workflows?" + _encode(pairs).decode(),
            f"{done} of the {len(ids)} matching workflows {PAST[kind]}",
        )


def fingerprint(workflow_ids: list[str]) -> str:
    """A digest of the sorted IDs a bulk confirmation names, so a confirmed POST can tell that it
    would act on exactly what its viewer was shown."""
    digest = hashlib.sha256()
    for wid in workflow_ids:
        digest.update(wid.encode("utf-8", "surrogatepass") + b"\x00")
    return digest.hexdigest()


def _encode(pairs: list[tuple[str, Any]]) -> bytes:
    return urlencode(pairs).encode()
