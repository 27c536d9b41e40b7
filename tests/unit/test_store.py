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
from storage.invocations import LOST_MESSAGE, Invocations
from storage.listing import ListQuery
from storage.metadata import DEFAULT_SETTINGS, Metadata
from storage.migrations import MIGRATIONS
from storage.shared import SharedStorage
from storage.store import StoreService

OWNER, OTHER = Caller(1, "owner", admin=False), Caller(2, "other", admin=False)
ADMIN = None  # with auth off, any caller (no token) acts as the admin
# The plan a Planner sends with the first progress report of each run of a job.
RUN = {"steps": []}


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
        assert await invocations.stopped(uuid, 0.05) is False  # the long poll's end: still active
        watcher = asyncio.ensure_future(invocations.stopped(uuid, 30))
        await asyncio.sleep(0.05)
        assert not watcher.done()
        await asyncio.to_thread(invocations.cancel, uuid, OWNER)  # as the Store's thread pool would
        assert await asyncio.wait_for(watcher, timeout=1) is True

    asyncio.run(watch_then_cancel())
    assert asyncio.run(asyncio.wait_for(invocations.stopped(uuid, 30), timeout=1))  # already over: at once


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


def _restarted(path: Path, clock: list[float]) -> tuple[Metadata, Invocations]:
    from storage.leases import Leases

    db = Metadata.open(path / "db.duckdb")
    return db, Invocations(db, SharedStorage.from_url(path), Leases(lambda: clock[0]))


def test_status_survives_a_restart_and_unfinished_work_is_queued_again(tmp_path: Path) -> None:
    from storage.leases import LEASE_S, RESTART_GRACE_S

    clock = [0.0]
    db, invocations = _restarted(tmp_path, clock)
    done = invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    invocations.complete(done, [f"{done}_0.png"], 1)
    running = invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    invocations.progress(running, 1, 4, RUN)
    queued = invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    assert invocations.adopt(10) == []  # every one still leased to the Planner it went to
    db.close()

    db, restarted = _restarted(tmp_path, clock)
    assert restarted.status(done, OWNER)["status"] == "completed"
    again = restarted.status(running, OWNER)
    assert (again["status"], again["step"], again["attempts"]) == ("queued", None, 1)
    assert restarted.counts() == {"queued": 2, "processing": 0}
    # A Planner still holding one (the Store alone restarted) has a moment to say so: two renewal
    # rounds for one that waited, a whole lease for one that ran (it most likely runs still).
    assert restarted.adopt(10) == []
    clock[0] += RESTART_GRACE_S + 1
    assert restarted.expire() == 1
    # Then no Planner holds it: the first to ask adopts it; nobody else gets it.
    assert restarted.adopt(10) == [queued]
    assert restarted.adopt(10) == []
    clock[0] = LEASE_S + 1
    assert restarted.expire() == 1
    assert restarted.adopt(10) == [running]
    assert restarted.adopt(10) == []
    restarted.progress(running, 1, 4, RUN)
    assert restarted.status(running, OWNER)["attempts"] == 2
    db.close()


def test_a_planner_still_running_a_job_keeps_it_through_a_store_restart(tmp_path: Path) -> None:
    from storage.leases import RESTART_GRACE_S

    clock = [0.0]
    db, invocations = _restarted(tmp_path, clock)
    uuid = invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    invocations.progress(uuid, 1, 4, RUN)
    db.close()
    db, restarted = _restarted(tmp_path, clock)
    restarted.renew([uuid])
    clock[0] += RESTART_GRACE_S + 1
    assert restarted.expire() == 0 and restarted.adopt(10) == []  # it is held: not run twice
    # Its next report (without a plan: the run goes on) makes it processing again, not a new attempt.
    assert restarted.progress(uuid, 2, 4)
    status = restarted.status(uuid, OWNER)
    assert (status["status"], status["step"], status["attempts"]) == ("processing", 2, 1)
    assert restarted.complete(uuid, [f"{uuid}_0.png"], 4)
    db.close()


def test_an_invocation_that_keeps_losing_its_planner_ends_after_the_last_attempt(tmp_path: Path) -> None:
    from storage.leases import LEASE_S

    clock = [0.0]
    db, invocations = _restarted(tmp_path, clock)
    db.write_settings(db._connection, {"max_invocation_attempts": 2})  # noqa: SLF001 - a test's setup
    uuid = invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    for attempt in (1, 2):
        invocations.progress(uuid, 1, 4, RUN)
        db.close()
        db, invocations = _restarted(tmp_path, clock)
        status = invocations.status(uuid, OWNER)
        assert status["attempts"] == attempt
        if attempt == 1:
            clock[0] += LEASE_S + 1
            assert invocations.expire() == 1
            assert status["status"] == "queued" and invocations.adopt(1) == [uuid]
    assert status["status"] == "error" and status["message"] == LOST_MESSAGE
    db.close()


def test_history_is_newest_first_with_a_count(invocations: Invocations) -> None:
    uuids = [invocations.admit(OWNER.id, {"prompt": str(index)}, limit=4)["uuid"] for index in range(3)]
    rows, count = invocations.history(OWNER.id, ListQuery(limit=2))
    assert count == 3
    assert [row["attributes"]["id"] for row in rows] == uuids[::-1][:2]
    assert rows[0]["type"] == "DiffusionInvocation"
    assert invocations.history(OWNER.id, ListQuery(limit=0, offset=2))[0][0]["attributes"]["id"] == uuids[0]


def test_an_invocation_whose_planner_stopped_renewing_is_queued_again(tmp_path: Path) -> None:
    from storage.leases import ADMISSION_GRACE_S, LEASE_S, Leases

    clock = [0.0]
    db = Metadata.open(tmp_path / "db.duckdb")
    invocations = Invocations(db, SharedStorage.from_url(tmp_path), Leases(lambda: clock[0]))
    held = invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    lost = invocations.admit(OWNER.id, {}, limit=4)["uuid"]
    invocations.progress(held, 1, 10, RUN)
    clock[0] = ADMISSION_GRACE_S - 1
    invocations.renew([held])  # the Planner still holds this one; the other's died before it started
    assert invocations.expire() == 0 and invocations.adopt(4) == []
    clock[0] = ADMISSION_GRACE_S + 1
    assert invocations.expire() == 1
    assert invocations.status(lost, OWNER)["status"] == "queued"
    assert invocations.status(held, OWNER)["status"] == "processing"
    assert invocations.adopt(4) == [lost]
    clock[0] += LEASE_S + 1  # both Planners lost now: the started one goes back to the queue too
    assert invocations.expire() == 2
    status = invocations.status(held, OWNER)
    assert (status["status"], status["step"], status["attempts"]) == ("queued", None, 1)
    assert invocations.counts() == {"queued": 2, "processing": 0}
    assert invocations.adopt(4) == [held, lost]
    invocations.cancel(held, OWNER)
    invocations.renew([held])  # too late: an ended invocation is not revived
    assert invocations.status(held, OWNER)["status"] == "cancelled" and invocations.adopt(4) == []
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
