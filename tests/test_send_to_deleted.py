"""A message whose destination is deleted while it is being sent (garbage collection or
delete_workflows between the send's existence check and its insert) is a send to a workflow that
does not exist, DBOSNonExistentWorkflowError as in DBOS, not a database error. A trigger deletes
the destination inside the send's own statement, so the foreign key fails every time."""

from __future__ import annotations

import psycopg
import pytest

from runtime import DBOS, DBOSClient, DBOSNonExistentWorkflowError, SendMessage

DELETE_ON_SEND = """
CREATE FUNCTION delete_destination() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM dbos.workflow_status WHERE workflow_uuid = NEW.destination_uuid;
    RETURN NEW;
END $$;
CREATE TRIGGER delete_destination BEFORE INSERT ON dbos.notifications
    FOR EACH ROW EXECUTE FUNCTION delete_destination();
"""


def _destination(db_url: str, wid: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs, created_at) "
            "VALUES (%s, 'PENDING', 'w', '{}', 0)",
            (wid,),
        )


def test_sends_from_outside_to_a_destination_deleted_mid_send(
    db_url: str, client: DBOSClient
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(DELETE_ON_SEND)
    for n, send in enumerate(
        [
            lambda wid: client.send(wid, "m"),
            lambda wid: client.send(wid, "m", idempotency_key="k"),
        ]
    ):
        wid = f"gone-{n}"
        _destination(db_url, wid)
        with pytest.raises(DBOSNonExistentWorkflowError, match=wid):
            send(wid)


def test_a_send_from_a_workflow_to_a_destination_deleted_mid_send(
    db_url: str, launch_dbos: object
) -> None:
    @DBOS.workflow()
    def sender(dest: str, bulk: bool) -> str:
        try:
            if bulk:
                DBOS.send_bulk([SendMessage(dest, "m"), SendMessage(dest, "n")])
            else:
                DBOS.send(dest, "m")
        except DBOSNonExistentWorkflowError:
            return "gone"
        return "sent"

    launch_dbos()  # type: ignore[operator]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(DELETE_ON_SEND)
    for bulk in (False, True):
        _destination(db_url, f"gone-{bulk}")
        assert sender(f"gone-{bulk}", bulk) == "gone"
    # Outside a workflow, the bulk send.
    _destination(db_url, "gone-outside")
    with pytest.raises(DBOSNonExistentWorkflowError, match="gone-outside"):
        DBOS.send_bulk([SendMessage("gone-outside", "m")])
