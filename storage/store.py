"""The Store deployment: the only process that opens the DuckDB file. Metadata only.

Exactly one replica. Calls that act for an HTTP caller take the caller's token first and are
authenticated and authorised here, in the same hop as the work: one Ray call per request.
Calls from the Planner (progress, completion) take no token. Image bytes never pass through.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from ray import serve

from serve_app.errors import AccessDeniedError, AuthenticationError, BadRequestError, NotFoundError
from serve_app.remote import errors_as_values
from serve_app.schemas import CONTROLNET_SETTINGS
from storage.accounts import DEFAULT_PASSWORD_WARNING, INVALID_CREDENTIALS, Accounts, Caller
from storage.files import DataPaths
from storage.invocations import Invocations
from storage.janitor import sweep
from storage.listing import ListQuery
from storage.metadata import Metadata
from storage.models import Models
from storage.shared import shared_storage
from storage.throttle import LoginThrottle

logger = logging.getLogger(__name__)

Params = ParamSpec("Params")
Result = TypeVar("Result")
Method = Callable[Concatenate["StoreService", Caller, Params], Result]
Authenticated = Callable[Concatenate["StoreService", str | None, Params], Result]


def for_user(method: Method[Params, Result]) -> Authenticated[Params, Result]:
    """The first argument is the caller's token (None: none presented); 401 unless it is valid."""

    @functools.wraps(method)
    def with_caller(self: StoreService, token: str | None, *args: Params.args, **kwargs: Params.kwargs) -> Result:
        # For an async method this returns its coroutine, authenticated before it is awaited.
        return method(self, self._caller(token), *args, **kwargs)

    return _keeping_kind(method, with_caller)


def for_admin(method: Method[Params, Result]) -> Authenticated[Params, Result]:
    """As ``for_user``, and 403 unless the caller is an administrator."""

    @functools.wraps(method)
    def with_admin(self: StoreService, token: str | None, *args: Params.args, **kwargs: Params.kwargs) -> Result:
        caller = self._caller(token)
        if not caller.admin:
            raise AccessDeniedError("This requires an administrator.")
        return method(self, caller, *args, **kwargs)

    return _keeping_kind(method, with_admin)


def _keeping_kind(method: Callable[..., Any], wrapper: Callable[..., Any]) -> Any:
    """``wrapper`` as an ``async def`` when ``method`` is one (Serve and errors_as_values look)."""
    if not inspect.iscoroutinefunction(method):
        return wrapper

    @functools.wraps(method)
    async def awaited(*args: Any, **kwargs: Any) -> Any:
        return await wrapper(*args, **kwargs)

    return awaited


def _found(page: tuple[list[Any], int], kind: str, name: str | None) -> tuple[list[Any], int]:
    """A page of a list; a scoped GET (``/api/models/{name}``) that matches nothing is a 404."""
    if name is not None and not page[0]:
        raise NotFoundError(f"{kind} {name!r:.80} not found.")
    return page


REAP_INTERVAL_S = 5.0
SWEEP_EVERY_ROUNDS = 60  # five minutes
# The throttle's "address" for password changes by logged-in users.
SELF_SERVICE = "password change"


class StoreService:
    """The Store's work, raising domain errors; the deployment below answers them as values."""

    def __init__(
        self,
        data_dir: str,
        version: str,
        token_days: float = 30,
        initial_password: str | None = None,
        auth: bool | None = None,
        intermediate_max_age_s: float = 3600,
        storage_url: str | None = None,
    ) -> None:
        paths = DataPaths(Path(data_dir)).ensure()
        self._storage = shared_storage(data_dir, storage_url).ensure()
        self._intermediate_max_age_s = intermediate_max_age_s
        self._version = version
        self._db = Metadata.open(paths.database)
        self.accounts = Accounts(self._db, timedelta(days=token_days), initial_password)
        self.preconfigured = Models(self._db)
        self.invocations = Invocations(self._db, self._storage)
        self._throttle = LoginThrottle()
        self._closed = threading.Event()
        threading.Thread(target=self._expire_leases, name="lease-reaper", daemon=True).start()
        if auth is not None:
            self._change_settings({"auth": auth})
        for warning in self._warnings():
            logger.warning(warning)

    def check_health(self) -> None:
        self._db.fetch("SELECT 1")

    def close(self) -> None:
        """Close the DuckDB file (the server is stopping; nothing is answered after this)."""
        self._closed.set()
        self._db.close()

    def _expire_leases(self) -> None:
        """Queue again the invocations whose Planner was lost, every few seconds, and sweep files
        now and then, until the Store closes."""
        rounds = 0
        while not self._closed.wait(REAP_INTERVAL_S):
            rounds += 1
            try:
                self.invocations.expire()
                if rounds % SWEEP_EVERY_ROUNDS == 0:
                    sweep(self._storage, self._db, self._intermediate_max_age_s)
            except Exception:  # keep going; the next round may succeed
                logger.exception("expiring leases or sweeping files failed")

    # who is calling

    def _caller(self, token: str | None) -> Caller:
        """The admin when auth is off; else the valid token's holder (401)."""
        if not self._db.settings()["auth"]:
            return self.accounts.admin()
        caller = self.accounts.authenticate(token) if token else None
        if caller is None:
            raise AuthenticationError(INVALID_CREDENTIALS)
        return caller

    @for_user
    def session(self, caller: Caller) -> dict[str, Any]:
        """Who the token's holder is (for routes that need nothing else of the Store)."""
        return caller.as_dict()

    def login(self, username: str, password: str, address: str) -> dict[str, Any]:
        """A token for the right password; failed tries from ``address`` slow down later ones."""
        self._throttle.check(username, address)
        try:
            token = self.accounts.login(username, password)
        except AuthenticationError:
            self._throttle.failed(username, address)
            raise
        self._throttle.succeeded(username, address)
        return token

    def logout(self, token: str) -> None:
        self.accounts.revoke(token)

    # settings and status

    @for_admin
    def settings(self, caller: Caller) -> dict[str, Any]:
        return self._db.settings()

    @for_admin
    def update_settings(self, caller: Caller, changes: dict[str, Any]) -> dict[str, Any]:
        settings = self._change_settings(changes)
        if changes.get("auth"):
            for warning in self._warnings():
                logger.warning(warning)
        return settings

    def _change_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        turning_auth_on = changes.get("auth") is True and not self._db.settings()["auth"]
        with self._db.transaction() as connection:
            self._db.write_settings(connection, changes)
            if turning_auth_on:
                # Tokens handed out while anyone could act as admin are not proof of anything.
                self.accounts.revoke_all(connection)
        return self._db.settings()

    @for_user
    def system(self, caller: Caller) -> dict[str, Any]:
        """What GET /api reports from here: invocation counts and warnings for the operator."""
        return {**self.invocations.counts(), "warnings": self._warnings()}

    def _warnings(self) -> list[str]:
        if self._db.settings()["auth"] and self.accounts.default_password_in_use:
            return [DEFAULT_PASSWORD_WARNING]
        return []

    # users

    @for_admin
    def users(self, caller: Caller, query: ListQuery, username: str | None = None) -> tuple[list[Any], int]:
        return _found(self.accounts.list(query, username), "User", username)

    @for_admin
    def create_user(self, caller: Caller, fields: dict[str, Any]) -> dict[str, Any]:
        return self.accounts.create(
            fields["username"], fields["new_password"], fields.get("first_name"), fields.get("last_name"),
            bool(fields.get("admin", False)),
        )  # fmt: skip

    @for_user
    def update_user(
        self, caller: Caller, username: str, changes: dict[str, Any], current_password: str | None = None
    ) -> dict[str, Any]:
        """An administrator changes anyone. A user changes their own names, and their password
        with the current one (wrong guesses are throttled as failed logins are)."""
        if not caller.admin:
            if caller.username != username:
                raise AccessDeniedError("This requires an administrator.")
            if "admin" in changes:
                raise AccessDeniedError("admin: only an administrator may change it")
            if "new_password" in changes:
                self._check_current_password(caller, current_password)
        return self.accounts.update(username, changes)

    def _check_current_password(self, caller: Caller, password: str | None) -> None:
        if password is None:
            raise BadRequestError("current_password: required to set a new password")
        self._throttle.check(caller.username, SELF_SERVICE)
        if not self.accounts.verify(caller.id, password):
            self._throttle.failed(caller.username, SELF_SERVICE)
            raise AccessDeniedError("current_password: is not the password of this account")

    @for_admin
    def delete_user(self, caller: Caller, username: str) -> None:
        """Remove the user; its running work is cancelled, its history stays on file."""
        self.invocations.cancel_all(self.accounts.delete(username))

    # preconfigured models

    @for_user
    def models(self, caller: Caller, query: ListQuery, name: str | None = None) -> tuple[list[Any], int]:
        return _found(self.preconfigured.list(query, name), "Model", name)

    @for_user
    def model(self, caller: Caller, name: str) -> dict[str, Any] | None:
        """Everything a preconfigured model sets, or None when there is no model of that name."""
        return self.preconfigured.find(name)

    @for_admin
    def create_model(self, caller: Caller, spec: dict[str, Any]) -> dict[str, Any]:
        return self.preconfigured.create(spec)

    @for_admin
    def update_model(self, caller: Caller, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.preconfigured.update(name, spec)

    @for_admin
    def delete_model(self, caller: Caller, name: str) -> None:
        self.preconfigured.delete(name)

    # invocations, for their owner

    @for_user
    def admit(self, caller: Caller, request: dict[str, Any], model: str | None) -> dict[str, Any]:
        """Queue an invocation, with what the ingress needs to resolve it (one hop for both): its
        status, the default checkpoint and the preconfigured ``model`` (None: no such model).
        A request the ingress then finds it cannot run is withdrawn."""
        settings = self._db.settings()
        for field in ("prompt", "negative_prompt"):
            length = len(request.get(field) or "")
            if length > settings["max_prompt_length"]:
                raise BadRequestError(
                    f"{field}: {length} characters; at most {settings['max_prompt_length']} are allowed "
                    "(the max_prompt_length setting)"
                )
        status = self.invocations.admit(
            caller.id, request, settings["max_queued_invocations"], settings["max_queued_invocations_per_user"]
        )
        return {
            "status": status,
            # Its place in line where jobs wait for a role (deployments/turns.py): ids count up.
            "turn": {"owner": caller.id, "admitted": status["id"]},
            "default_checkpoint": settings["default_checkpoint"],
            "model": self.preconfigured.find(model) if model is not None else None,
            "limits": {key: settings[key] for key in ("max_prompt_length", "max_pixels_per_step", "max_pixel_steps")},
            "intermediate_steps": settings["intermediate_steps"],
            "precision": settings["precision"],
            "safe": settings["safe"],
            "controlnets": {key: settings[key] for key in CONTROLNET_SETTINGS},
        }

    @for_user
    def withdraw(self, caller: Caller, uuid: str) -> None:
        """Forget an invocation that was admitted but never started (its request was refused)."""
        self.invocations.delete(uuid, caller)

    @for_user
    def status(self, caller: Caller, uuid: str) -> dict[str, Any]:
        return self.invocations.status(uuid, caller)

    @for_user
    async def watch(self, caller: Caller, uuid: str, seen: int | None, timeout: float) -> tuple[int, dict[str, Any]]:
        """(version, status) once the status changed from version ``seen`` (None: at once), or after
        ``timeout`` seconds unchanged: what a stream of the invocation's events sends."""
        return await self.invocations.watch(uuid, caller, seen, timeout)

    @for_user
    def recent(self, caller: Caller) -> list[dict[str, Any]]:
        return self.invocations.recent(caller)

    @for_user
    def stop(self, caller: Caller) -> list[str]:
        """Cancel the caller's queued and running invocations (an administrator's: everyone's)."""
        return self.invocations.cancel_all(None if caller.admin else caller.id)

    @for_user
    def cancel(self, caller: Caller, uuid: str) -> dict[str, Any]:
        return self.invocations.cancel(uuid, caller)

    @for_user
    def delete(self, caller: Caller, uuid: str) -> None:
        self.invocations.delete(uuid, caller)

    @for_user
    def history(self, caller: Caller, query: ListQuery) -> tuple[list[dict[str, Any]], int]:
        return self.invocations.history(caller.id, query)

    @for_user
    def readable_intermediate(self, caller: Caller, name: str) -> str:
        return self.invocations.readable_intermediate(name, caller)

    @for_user
    def readable_image(self, caller: Caller, name: str) -> str:
        """``name`` when the caller may read that output image (the ingress then streams the file)."""
        return self.invocations.readable_image(name, caller)

    # invocations, for the Planner

    def progress(
        self, uuid: str, step: int, total: int, plan: dict[str, Any] | None = None,
        intermediates: list[str] | None = None,
    ) -> bool:  # fmt: skip
        return self.invocations.progress(uuid, step, total, plan, intermediates)

    def complete(self, uuid: str, names: list[str], total: int, plan: dict[str, Any]) -> bool:
        return self.invocations.complete(uuid, names, total, plan)

    def fail(self, uuid: str, message: str, plan: dict[str, Any] | None = None) -> None:
        self.invocations.fail(uuid, message, plan)

    def renew(self, uuids: list[str]) -> None:
        self.invocations.renew(uuids)

    def adopt(self, limit: int) -> list[str]:
        """Invocations whose Planner was lost, now leased to the caller to run again."""
        return self.invocations.adopt(limit)

    def hand_back(self, uuids: list[str]) -> None:
        """A stopping Planner's unfinished invocations, queued again for another to adopt."""
        self.invocations.hand_back(uuids)

    async def stopped(self, uuid: str, timeout: float) -> bool:
        """A long poll, answered within ``timeout`` seconds: a Store asked to stop waits for the
        calls under way, and an endless one would hold it (and its DuckDB file) until Serve kills it."""
        return await self.invocations.stopped(uuid, timeout)


Store = serve.deployment(
    name="Store",
    num_replicas=1,
    max_ongoing_requests=1000,
    health_check_period_s=10,
    logging_config={"enable_access_log": False},
)(errors_as_values(StoreService))
