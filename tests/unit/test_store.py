"""The Store without Ray: DuckDB schema, settings, admission, progress, cancel, restarts."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from PIL import Image

from serve_app.errors import BadRequestError, NotFoundError, TooManyRequestsError
from storage.listing import ListQuery
from storage.metadata import DEFAULT_SETTINGS, Metadata
from storage.migrations import MIGRATIONS
from storage.store import RESTART_MESSAGE, StoreService

OWNER, OTHER = 1, 2


@pytest.fixture
def store(tmp_path: Path) -> StoreService:
    return StoreService(str(tmp_path), "test")


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
    assert store.settings() == DEFAULT_SETTINGS
    assert store.update_settings({"max_queued_invocations": 2, "cache_mode": None})["cache_mode"] is None
    store._db.close()
    assert StoreService(str(tmp_path), "test").settings()["max_queued_invocations"] == 2


def test_queue_limit_answers_too_many_requests(store: StoreService) -> None:
    store.update_settings({"max_queued_invocations": 2})
    store.admit(OWNER, {})
    store.admit(OWNER, {})
    with pytest.raises(TooManyRequestsError) as raised:
        store.admit(OWNER, {})
    assert raised.value.retry_after > 0


def test_started_invocations_leave_the_queue(store: StoreService) -> None:
    store.update_settings({"max_queued_invocations": 1})
    first = store.admit(OWNER, {})
    assert store.report_progress(first["uuid"], 0, 4)
    assert store.status(first["uuid"], OWNER)["status"] == "processing"
    store.admit(OWNER, {})  # the queue has room again


def test_progress_complete_and_image(store: StoreService, tmp_path: Path) -> None:
    uuid = store.admit(OWNER, {"prompt": "x"})["uuid"]
    store.report_progress(uuid, 0, 4)
    store.report_progress(uuid, 2, 4)
    running = store.status(uuid, OWNER)
    assert (running["status"], running["step"], running["total"], running["progress"]) == ("processing", 2, 4, 0.5)
    store.report_progress(uuid, 4, 4)
    assert store.complete(uuid, [Image.new("RGB", (8, 8), "red")], {"plan": {"seed": 1}})
    done = store.status(uuid, OWNER)
    assert done["status"] == "completed" and done["progress"] == 1.0
    assert done["images"] == [f"images/{uuid}_0.png"]
    png = store.image(f"{uuid}_0.png", OWNER)
    assert png.startswith(b"\x89PNG") and (tmp_path / "images" / f"{uuid}_0.png").read_bytes() == png


def test_other_users_see_nothing(store: StoreService) -> None:
    uuid = store.admit(OWNER, {})["uuid"]
    store.complete(uuid, [Image.new("RGB", (8, 8))], {})
    for call in (
        lambda: store.status(uuid, OTHER),
        lambda: store.cancel(uuid, OTHER),
        lambda: store.delete(uuid, OTHER),
        lambda: store.image(f"{uuid}_0.png", OTHER),
    ):
        with pytest.raises(NotFoundError):
            call()
    assert store.history(OTHER, ListQuery()) == ([], 0)
    assert store.status(uuid, OWNER)["status"] == "completed"


@pytest.mark.parametrize("name", ["../enfugue.duckdb", "x.png", "0" * 32 + "_0.png/../../etc"])
def test_image_names_are_checked(store: StoreService, name: str) -> None:
    with pytest.raises((BadRequestError, NotFoundError)):
        store.image(name, OWNER)


def test_cancel_stops_progress_and_discards_late_results(store: StoreService) -> None:
    uuid = store.admit(OWNER, {})["uuid"]
    assert store.report_progress(uuid, 1, 4)
    assert store.cancel(uuid, OWNER)["status"] == "cancelled"
    assert not store.report_progress(uuid, 2, 4)
    assert not store.complete(uuid, [Image.new("RGB", (8, 8))], {})
    assert store.status(uuid, OWNER)["images"] is None


def test_delete_removes_record_and_files(store: StoreService, tmp_path: Path) -> None:
    uuid = store.admit(OWNER, {})["uuid"]
    store.complete(uuid, [Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8))], {})
    store.delete(uuid, OWNER)
    assert list((tmp_path / "images").iterdir()) == []
    with pytest.raises(NotFoundError):
        store.status(uuid, OWNER)


def test_status_survives_a_restart_and_unfinished_work_is_marked(tmp_path: Path) -> None:
    store = StoreService(str(tmp_path), "test")
    done = store.admit(OWNER, {})["uuid"]
    store.complete(done, [Image.new("RGB", (8, 8))], {})
    running = store.admit(OWNER, {})["uuid"]
    store.report_progress(running, 1, 4)
    store._db.close()

    restarted = StoreService(str(tmp_path), "test")
    assert restarted.status(done, OWNER)["status"] == "completed"
    interrupted = restarted.status(running, OWNER)
    assert interrupted["status"] == "error" and interrupted["message"] == RESTART_MESSAGE


def test_history_is_newest_first_with_a_count(store: StoreService) -> None:
    uuids = [store.admit(OWNER, {"prompt": str(index)})["uuid"] for index in range(3)]
    rows, count = store.history(OWNER, ListQuery(limit=2))
    assert count == 3
    assert [row["attributes"]["id"] for row in rows] == uuids[::-1][:2]
    assert rows[0]["type"] == "DiffusionInvocation"
    assert store.history(OWNER, ListQuery(limit=0, offset=2))[0][0]["attributes"]["id"] == uuids[0]
