"""The Store deployment: the only process that opens the DuckDB file and writes images.

Exactly one replica. Everything that must survive a restart goes to DuckDB; live progress
and cancel flags are held here in memory.
"""

from __future__ import annotations

import logging
import threading
import uuid as uuids
from datetime import timedelta
from pathlib import Path
from typing import Any

from PIL import Image
from ray import serve

from serve_app.errors import AuthenticationError, BadRequestError, NotFoundError, TooManyRequestsError
from serve_app.remote import errors_as_values
from storage.accounts import DEFAULT_PASSWORD_WARNING, INVALID_CREDENTIALS, Accounts
from storage.files import DataPaths
from storage.images import IMAGE_NAME, image_name, write_png
from storage.listing import ListQuery
from storage.metadata import ACTIVE_STATUSES, Metadata, utcnow
from storage.models import Models
from storage.status import LiveProgress, history_object, status_object

logger = logging.getLogger(__name__)

RESTART_MESSAGE = "The server restarted before this invocation finished."


class StoreService:
    """The Store's work, raising domain errors; the deployment below answers them as values."""

    def __init__(
        self,
        data_dir: str,
        version: str,
        token_days: float = 30,
        initial_password: str | None = None,
        auth: bool | None = None,
    ) -> None:
        self._paths = DataPaths(Path(data_dir)).ensure()
        self._version = version
        self._db = Metadata.open(self._paths.database)
        interrupted = self._db.interrupt_unfinished(RESTART_MESSAGE)
        if interrupted:
            logger.warning("marked %s unfinished invocations of a previous run as errors", interrupted)
        self._lock = threading.Lock()
        self._live: dict[str, LiveProgress] = {}
        self._accounts = Accounts(self._db, timedelta(days=token_days), initial_password)
        self._models = Models(self._db)
        if auth is not None:
            self.update_settings({"auth": auth})
        self._warn_about_default_password()

    def check_health(self) -> None:
        self._db.settings()

    # settings

    def settings(self) -> dict[str, Any]:
        return self._db.settings()

    def update_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        turning_auth_on = changes.get("auth") is True and not self._db.settings()["auth"]
        settings = self._db.update_settings(changes)
        if turning_auth_on:
            # Tokens handed out while anyone could act as admin are not proof of anything.
            self._accounts.revoke_all()
            self._warn_about_default_password()
        return settings

    def warnings(self) -> list[str]:
        if self._db.settings()["auth"] and self._accounts.default_password_in_use:
            return [DEFAULT_PASSWORD_WARNING]
        return []

    def _warn_about_default_password(self) -> None:
        for warning in self.warnings():
            logger.warning(warning)

    # authentication

    def authenticate(self, token: str | None) -> dict[str, Any]:
        """The user a request acts as: the admin when auth is off, else the token's holder (401)."""
        if not self._db.settings()["auth"]:
            return self._accounts.admin()
        user = self._accounts.authenticate(token) if token else None
        if user is None:
            raise AuthenticationError(INVALID_CREDENTIALS)
        return user

    def login(self, username: str, password: str) -> dict[str, Any]:
        return self._accounts.login(username, password)

    def logout(self, token: str) -> None:
        self._accounts.revoke(token)

    # users

    def users(self, query: ListQuery, username: str | None = None) -> tuple[list[dict[str, Any]], int]:
        rows, count = self._accounts.list(query, username)
        if username is not None and not rows:
            raise NotFoundError(f"User {username!r:.80} not found.")
        return rows, count

    def create_user(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self._accounts.create(
            fields["username"], fields["new_password"], fields.get("first_name"), fields.get("last_name"),
            bool(fields.get("admin", False)),
        )  # fmt: skip

    def update_user(self, username: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._accounts.update(username, changes)

    def delete_user(self, username: str) -> None:
        """Remove the user; its running work is cancelled, its history stays on file."""
        user_id = self._accounts.delete(username)
        for uuid in self._db.active_invocations(user_id):
            self.cancel(uuid, user_id)

    # preconfigured models

    def models(self, query: ListQuery, name: str | None = None) -> tuple[list[dict[str, Any]], int]:
        rows, count = self._models.list(query, name)
        if name is not None and not rows:
            raise NotFoundError(f"Model {name!r:.80} not found.")
        return rows, count

    def model(self, name: str) -> dict[str, Any] | None:
        """Everything a preconfigured model sets, or None when there is no model of that name."""
        try:
            return self._models.get(name)
        except NotFoundError:
            return None

    def create_model(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._models.create(spec)

    def update_model(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._models.update(name, changes)

    def delete_model(self, name: str) -> None:
        self._models.delete(name)

    # invocations

    def admit(self, user_id: int, request: dict[str, Any]) -> dict[str, Any]:
        """Record a new queued invocation, or refuse it when the queue is full."""
        with self._lock:
            limit = self._db.settings()["max_queued_invocations"]
            if self._db.count_invocations(("queued",)) >= limit:
                raise TooManyRequestsError(
                    f"The invocation queue is full ({limit} waiting); try again when one has started.",
                    retry_after=5,
                )
            record = self._db.create_invocation(uuids.uuid4().hex, user_id, request)
        return self._status(record)

    def record_plan(self, uuid: str, plan: dict[str, Any]) -> None:
        self._db.update_invocation(uuid, plan=plan)

    def report_progress(self, uuid: str, step: int, total: int) -> bool:
        """Called by model deployments every step; False tells them to stop."""
        with self._lock:
            live = self._live.get(uuid)
            if live is None:
                record = self._db.invocation(uuid)
                if record is None or record["status"] not in ACTIVE_STATUSES:
                    return False
                live = self._live[uuid] = LiveProgress(step=step, total=total, started=utcnow())
                self._db.update_invocation(uuid, status="processing", started=live.started)
            live.step, live.total = step, total
        return True

    def complete(self, uuid: str, images: list[Image.Image], metadata: dict[str, Any]) -> bool:
        """Save the outputs and mark the invocation completed; False if it was cancelled meanwhile."""
        names = [image_name(uuid, index) for index in range(len(images))]
        if not self._active(uuid):
            return False
        # PNG encoding is slow for large images: done outside the lock, checked again after.
        for name, image in zip(names, images, strict=True):
            write_png(self._paths.images, name, image, {"enfugue-serve": self._version, **metadata})
        with self._lock:
            if not self._active(uuid):
                for name in names:
                    (self._paths.images / name).unlink(missing_ok=True)
                return False
            live = self._live.pop(uuid, None)
            self._db.update_invocation(
                uuid,
                status="completed",
                ended=utcnow(),
                images=names,
                outputs=len(names),
                step=live.total if live else None,
                total=live.total if live else None,
            )
        return True

    def fail(self, uuid: str, message: str) -> None:
        with self._lock:
            if not self._active(uuid):
                return
            live = self._live.pop(uuid, None)
            self._db.update_invocation(
                uuid,
                status="error",
                error=message,
                ended=utcnow(),
                step=live.step if live else None,
                total=live.total if live else None,
            )

    def status(self, uuid: str, user_id: int) -> dict[str, Any]:
        return self._status(self._owned(uuid, user_id))

    def cancel(self, uuid: str, user_id: int) -> dict[str, Any]:
        with self._lock:
            record = self._owned(uuid, user_id)
            if record["status"] in ACTIVE_STATUSES:
                live = self._live.pop(uuid, None)
                self._db.update_invocation(
                    uuid,
                    status="cancelled",
                    ended=utcnow(),
                    step=live.step if live else None,
                    total=live.total if live else None,
                )
                record = self._db.invocation(uuid) or record
        return self._status(record)

    def delete(self, uuid: str, user_id: int) -> None:
        """Cancel if still running, then remove the record and its image files."""
        with self._lock:
            record = self._owned(uuid, user_id)
            self._live.pop(uuid, None)
            for name in record["images"] or []:
                (self._paths.images / name).unlink(missing_ok=True)
            self._db.delete_invocation(uuid)

    def history(self, user_id: int, query: ListQuery) -> tuple[list[dict[str, Any]], int]:
        records, count = self._db.user_invocations(user_id, query)
        return [history_object(record) for record in records], count

    def image(self, name: str, user_id: int) -> bytes:
        match = IMAGE_NAME.match(name)
        if match is None:
            raise BadRequestError(f"file: {name!r} is not an invocation image name (<uuid>_<n>.png)")
        record = self._owned(match["uuid"], user_id)
        if name not in (record["images"] or []):
            raise NotFoundError(f"Image {name} not found.")
        return (self._paths.images / name).read_bytes()

    def system(self) -> dict[str, Any]:
        """What GET /api reports from here: invocation counts and warnings for the operator."""
        return {
            "processing": self._db.count_invocations(("processing",)),
            "queued": self._db.count_invocations(("queued",)),
            "warnings": self.warnings(),
        }

    # helpers

    def _active(self, uuid: str) -> bool:
        record = self._db.invocation(uuid)
        return record is not None and record["status"] in ACTIVE_STATUSES

    def _owned(self, uuid: str, user_id: int) -> dict[str, Any]:
        """The record if it exists and belongs to the user; otherwise 404 (leaking nothing)."""
        record = self._db.invocation(uuid)
        if record is None or record["user_id"] != user_id:
            raise NotFoundError(f"Invocation {uuid} not found.")
        return record

    def _status(self, record: dict[str, Any]) -> dict[str, Any]:
        return status_object(record, self._live.get(record["uuid"]), utcnow())


Store = serve.deployment(name="Store", num_replicas=1, max_ongoing_requests=1000, health_check_period_s=10)(
    errors_as_values(StoreService)
)
