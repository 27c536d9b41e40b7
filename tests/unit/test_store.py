"""The Store without Ray: DuckDB schema, settings, admission, progress, cancel, restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import pytest

from serve_app.errors import (
    AccessDeniedError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    TooManyRequestsError,
)
from storage.accounts import Caller
from storage.invocations import RESTART_MESSAGE, Invocations
from storage.listing import ListQuery
from storage.metadata import DEFAULT_SETTINGS, Metadata
from storage.migrations import MIGRATIONS
from storage.shared import SharedStorage
from storage.store import StoreService

OWNER, OTHER = Caller(1, "owner", admin=False), Caller(2, "other", admin=False)
ADMIN = None  # with auth off, any caller (no token) acts as the admin


@pytest.fixture
def store(tmp_path: Path) -> StoreService:
    return StoreService(str(tmp_path), "test")


@pytest.fixture
def invocations(store: StoreService) -> Invocations:
    return store.invocations


def test_migrations_run_once_and_anticipate_every_table(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    Metadata.open(path).close()
    Metadata.open(path).close()
    connection = duckdb.connect(str(path))
    tables = {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"users", "tokens", "settings", "models", "invocations", "schema_version"} <= tables
    assert connection.execute("SELECT count(*) FROM schema_version").fetchone() == (len(MIGRATIONS),)
    assert connection.execute("SELECT username, admin FROM users").fetchall() == [("enfugue", True)]


def test_settings_default_then_persist(tmp_path: Path) -> None:
    store = StoreService(str(tmp_path), "test")
    assert store.settings(ADMIN) == DEFAULT_SETTINGS
    assert store.update_settings(ADMIN, {"max_queued_invocations": 2, "cache_mode": None})["cache_mode"] is None
    store.close()
    assert StoreService(str(tmp_path), "test").settings(ADMIN)["max_queued_invocations"] == 2


def test_a_settings_change_lands_whole_or_not_at_all(store: StoreService) -> None:
    with pytest.raises(KeyError):
        store.update_settings(ADMIN, {"max_queued_invocations": 9, "no_such_setting": 1})
    assert store.settings(ADMIN)["max_queued_invocations"] == DEFAULT_SETTINGS["max_queued_invocations"]


def test_every_call_for_a_caller_checks_its_token(store: StoreService) -> None:
    store.update_settings(ADMIN, {"auth": True})
    with pytest.raises(AuthenticationError):
        store.status(None, "0" * 32)
    store.accounts.create("alice", "alice-pw", None, None, False)
    token = store.login("alice", "alice-pw", "127.0.0.1")["attributes"]["access_token"]
    assert store.session(token) == {"id": 2, "username": "alice", "admin": False}
    with pytest.raises(AccessDeniedError):
        store.settings(token)
    # A new password and the revocation of the old tokens land in one transaction.
    store.accounts.update("alice", {"new_password": "new-pw"})
    with pytest.raises(AuthenticationError):
        store.session(token)


def test_queue_limit_answers_too_many_requests(invocations: Invocations) -> None:
    invocations.admit(OWNER.id, {}, limit=2)
    invocations.admit(OWNER.id, {}, limit=2)
    with pytest.raises(TooManyRequestsError) as raised:
        invocations.admit(OWNER.id, {}, limit=2)
    assert raised.value.retry_after > 0


def test_started_invocations_leave_the_queue(invocations: Invocations) -> None:
    first = invocations.admit(OWNER.id, {}, limit=1)
    assert invocations.progress(first["uuid"], 0, 4)
    assert invocations.status(first["uuid"], OWNER)["status"] == "processing"
    invocations.admit(OWNER.id, {}, limit=1)  # the queue has room again


def test_progress_then_complete(invocations: Invocations) -> None:
    uuid = invocations.admit(OWNER.id, {"prompt": "x"}, limit=4)["uuid"]
    invocations.progress(uuid, 0, 4)
    invocations.progress(uuid, 2, 4)
    running = invocations.status(uuid, OWNER)
    assert (running["status"], running["step"], running["total"], running["progress"]) == ("processing", 2, 4, 0.5)
    assert invocations.complete(uuid, [f"{uuid}_0.png"], 4)
    done = invocations.status(uuid, OWNER)
    assert done["status"] == "completed" and done["progress"] == 1.0 and done["step"] == 4
    assert done["images"] == [f"images/{uuid}_0.png"]
    assert invocations.readable_image(f"{uuid}_0.png", OWNER) == f"{uuid}_0.png"


def test_other_users_see_nothing(invocations: Invocations) -> None:
    uuid = invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    invocations.complete(uuid, [f"{uuid}_0.png"], 1)
    for call in (
        lambda: invocations.status(uuid, OTHER),
        lambda: invocations.cancel(uuid, OTHER),
        lambda: invocations.delete(uuid, OTHER),
        lambda: invocations.readable_image(f"{uuid}_0.png", OTHER),
    ):
        with pytest.raises(NotFoundError):
            call()
    assert invocations.history(OTHER.id, ListQuery()) == ([], 0)
    assert invocations.status(uuid, OWNER)["status"] == "completed"
    administrator = Caller(3, "root", admin=True)
    assert invocations.readable_image(f"{uuid}_0.png", administrator) == f"{uuid}_0.png"
    assert invocations.cancel(uuid, administrator)["status"] == "completed"  # over already


def test_one_user_cannot_fill_the_queue(invocations: Invocations) -> None:
    invocations.admit(OWNER.id, {}, limit=4, per_user=2)
    invocations.admit(OWNER.id, {}, limit=4, per_user=2)
    with pytest.raises(TooManyRequestsError, match="You have 2 invocations waiting"):
        invocations.admit(OWNER.id, {}, limit=4, per_user=2)
    invocations.admit(OTHER.id, {}, limit=4, per_user=2)


@pytest.mark.parametrize("name", ["../enfugue.duckdb", "x.png", "0" * 32 + "_0.png/../../etc"])
def test_image_names_are_checked(invocations: Invocations, name: str) -> None:
    with pytest.raises((BadRequestError, NotFoundError)):
        invocations.readable_image(name, OWNER)


def test_cancel_stops_progress_and_refuses_late_results(invocations: Invocations) -> None:
    uuid = invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    assert invocations.progress(uuid, 1, 4)
    assert invocations.cancel(uuid, OWNER)["status"] == "cancelled"
    assert not invocations.progress(uuid, 2, 4)
    assert not invocations.complete(uuid, [f"{uuid}_0.png"], 4)
    assert invocations.status(uuid, OWNER)["images"] is None


def test_a_watcher_learns_of_a_cancel_at_once(invocations: Invocations) -> None:
    uuid = invocations.admit(OWNER.id, {}, limit=4)["uuid"]

    async def watch_then_cancel() -> None:
        watcher = asyncio.ensure_future(invocations.stopped(uuid))
        await asyncio.sleep(0.05)
        assert not watcher.done()
        await asyncio.to_thread(invocations.cancel, uuid, OWNER)  # as the Store's thread pool would
        await asyncio.wait_for(watcher, timeout=1)

    asyncio.run(watch_then_cancel())
    asyncio.run(asyncio.wait_for(invocations.stopped(uuid), timeout=1))  # already over: returns at once


def test_delete_removes_record_and_files(invocations: Invocations, tmp_path: Path) -> None:
    uuid = invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    names = [f"{uuid}_0.png", f"{uuid}_1.png"]
    for name in names:
        (tmp_path / "images" / name).write_bytes(b"png")
    invocations.complete(uuid, names, 1)
    invocations.delete(uuid, OWNER)
    assert list((tmp_path / "images").iterdir()) == []
    with pytest.raises(NotFoundError):
        invocations.status(uuid, OWNER)


def test_status_survives_a_restart_and_unfinished_work_is_marked(tmp_path: Path) -> None:
    store = StoreService(str(tmp_path), "test")
    done = store.invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    store.invocations.complete(done, [f"{done}_0.png"], 1)
    running = store.invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    store.invocations.progress(running, 1, 4)
    store.close()

    restarted = StoreService(str(tmp_path), "test")
    assert restarted.status(ADMIN, done)["status"] == "completed"
    interrupted = restarted.status(ADMIN, running)
    assert interrupted["status"] == "error" and interrupted["message"] == RESTART_MESSAGE


def test_history_is_newest_first_with_a_count(invocations: Invocations) -> None:
    uuids = [invocations.admit(OWNER.id, {"prompt": str(index)}, limit=4)["uuid"] for index in range(3)]
    rows, count = invocations.history(OWNER.id, ListQuery(limit=2))
    assert count == 3
    assert [row["attributes"]["id"] for row in rows] == uuids[::-1][:2]
    assert rows[0]["type"] == "DiffusionInvocation"
    assert invocations.history(OWNER.id, ListQuery(limit=0, offset=2))[0][0]["attributes"]["id"] == uuids[0]


def test_an_invocation_whose_planner_stopped_renewing_ends_in_error(tmp_path: Path) -> None:
    from storage.invocations import LOST_MESSAGE
    from storage.leases import ADMISSION_GRACE_S, LEASE_S, Leases

    clock = [0.0]
    db = Metadata.open(tmp_path / "db.duckdb")
    invocations = Invocations(db, SharedStorage.from_url(tmp_path), Leases(lambda: clock[0]))
    held = invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    lost = invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    invocations.progress(held, 1, 10)
    clock[0] = ADMISSION_GRACE_S - 1
    invocations.renew([held])  # the Planner still holds this one; the other's died
    assert invocations.expire() == 0
    clock[0] = ADMISSION_GRACE_S + 1
    assert invocations.expire() == 1
    assert invocations.status(lost, OWNER)["status"] == "error"
    assert invocations.status(lost, OWNER)["message"] == LOST_MESSAGE
    assert invocations.status(held, OWNER)["status"] == "processing"
    assert invocations.counts() == {"queued": 0, "processing": 1}  # the lost one left the queue
    clock[0] += LEASE_S + 1
    assert invocations.expire() == 1 and invocations.status(held, OWNER)["status"] == "error"
    invocations.renew([held])  # too late: an ended invocation is not revived
    assert invocations.status(held, OWNER)["status"] == "error"
    db.close()


def test_stop_cancels_the_callers_work_and_an_administrators_stops_all(invocations: Invocations) -> None:
    mine = invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    theirs = invocations.admit(OTHER.id, {}, limit=4)["uuid"]
    assert invocations.cancel_all(OWNER.id) == [mine]
    assert invocations.status(theirs, OTHER)["status"] == "queued"
    assert invocations.cancel_all(None) == [theirs]
    recent = invocations.recent(Caller(9, "root", admin=True))
    assert {status["uuid"] for status in recent} == {mine, theirs}
    assert [status["uuid"] for status in invocations.recent(OWNER)] == [mine]
