"""Users and their tokens: login, authentication, revocation, and the user REST resource."""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from serve_app.errors import AuthenticationError, NotFoundError, StateConflictError
from storage.listing import USERS, ListQuery
from storage.metadata import ADMIN_USER_ID, Metadata, utcnow
from storage.passwords import hash_password, new_token, token_digest, verify_password

logger = logging.getLogger(__name__)

DEFAULT_USERNAME = "enfugue"
DEFAULT_PASSWORD = "enfugue"
INVALID_CREDENTIALS = "Invalid or no credentials supplied."
DEFAULT_PASSWORD_WARNING = (
    f"The user {DEFAULT_USERNAME!r} still has its default password; change it with "
    f'PATCH /api/users/{DEFAULT_USERNAME} {{"new_password": ..., "repeat_password": ...}}.'
)

_USER_COLUMNS = "id, username, first_name, last_name, admin, last_login"


@functools.cache
def _dummy_hash() -> str:
    """Checked when the username is unknown, so a wrong name costs the time of a wrong password."""
    return hash_password("not a password anyone has")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _user(row: tuple[Any, ...]) -> dict[str, Any]:
    identifier, username, first_name, last_name, admin, last_login = row
    return {
        "type": "User",
        "attributes": {
            "id": identifier,
            "username": username,
            "first_name": first_name,
            "last_name": last_name,
            "admin": admin,
            "last_login": _iso(last_login),
        },
    }


@dataclass(frozen=True)
class Caller:
    """Who a request acts as."""

    id: int
    username: str
    admin: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Accounts:
    def __init__(self, db: Metadata, token_lifetime: timedelta, initial_password: str | None) -> None:
        self._db = db
        self._token_lifetime = token_lifetime
        rows = db.fetch("SELECT password_hash FROM users WHERE id = ?", [ADMIN_USER_ID])
        if rows and rows[0][0] is None:
            db.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?",
                [hash_password(initial_password or DEFAULT_PASSWORD), ADMIN_USER_ID],
            )
        self._default_password_in_use = self._check_default_password()

    @property
    def default_password_in_use(self) -> bool:
        return self._default_password_in_use

    def _check_default_password(self) -> bool:
        rows = self._db.fetch("SELECT password_hash FROM users WHERE id = ?", [ADMIN_USER_ID])
        return bool(rows) and verify_password(DEFAULT_PASSWORD, rows[0][0])

    # tokens

    def login(self, username: str, password: str) -> dict[str, Any]:
        rows = self._db.fetch("SELECT id, password_hash FROM users WHERE username = ?", [username])
        stored = rows[0][1] if rows else _dummy_hash()
        if not verify_password(password, stored) or not rows:
            raise AuthenticationError(INVALID_CREDENTIALS)
        user_id = rows[0][0]
        token, created = new_token(), utcnow()
        expires = created + self._token_lifetime
        with self._db.transaction() as connection:
            (token_id,) = connection.execute(
                "INSERT INTO tokens (user_id, token_hash, created, expires) VALUES (?, ?, ?, ?) RETURNING id",
                [user_id, token_digest(token), created, expires],
            ).fetchone()
            connection.execute("UPDATE users SET last_login = ? WHERE id = ?", [created, user_id])
        return {
            "type": "AuthenticationToken",
            "attributes": {
                "id": token_id,
                "access_token": token,
                "token_type": "Bearer",
                "created": created.isoformat(),
                "expires": expires.isoformat(),
                "user_id": user_id,
            },
        }

    def verify(self, user_id: int, password: str) -> bool:
        rows = self._db.fetch("SELECT password_hash FROM users WHERE id = ?", [user_id])
        return bool(rows) and verify_password(password, rows[0][0])

    def authenticate(self, token: str) -> Caller | None:
        """The user holding a valid (known, unexpired, unrevoked) token, or None."""
        rows = self._db.fetch(
            "SELECT users.id, users.username, users.admin FROM tokens JOIN users ON users.id = tokens.user_id "
            "WHERE tokens.token_hash = ? AND tokens.revoked IS NULL AND tokens.expires > ?",
            [token_digest(token), utcnow()],
        )
        if not rows:
            return None
        identifier, username, admin = rows[0]
        return Caller(id=identifier, username=username, admin=admin)

    def admin(self) -> Caller:
        return Caller(id=ADMIN_USER_ID, username=DEFAULT_USERNAME, admin=True)

    def revoke(self, token: str) -> None:
        self._db.execute(
            "UPDATE tokens SET revoked = ? WHERE token_hash = ? AND revoked IS NULL", [utcnow(), token_digest(token)]
        )

    @staticmethod
    def revoke_all(connection: duckdb.DuckDBPyConnection, user_id: int | None = None) -> None:
        """Revoke every token (of ``user_id``), inside the caller's transaction."""
        if user_id is None:
            connection.execute("UPDATE tokens SET revoked = ? WHERE revoked IS NULL", [utcnow()])
        else:
            connection.execute(
                "UPDATE tokens SET revoked = ? WHERE revoked IS NULL AND user_id = ?", [utcnow(), user_id]
            )

    # the user resource

    def list(self, query: ListQuery, username: str | None = None) -> tuple[list[dict[str, Any]], int]:
        scope = [("username = ?", username)] if username is not None else []
        where, params = USERS.where(query, scope)
        count = self._db.fetch(f"SELECT count(*) FROM users {where}", params)[0][0]
        order, page = USERS.order_and_page(query)
        rows = self._db.fetch(f"SELECT {_USER_COLUMNS} FROM users {where} {order}", params + page)
        return [_user(row) for row in rows], int(count)

    def get(self, username: str) -> dict[str, Any]:
        rows = self._db.fetch(f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", [username])
        if not rows:
            raise NotFoundError(f"User {username!r:.80} not found.")
        return _user(rows[0])

    def create(
        self, username: str, password: str, first_name: str | None, last_name: str | None, admin: bool
    ) -> dict[str, Any]:
        password_hash = hash_password(password)  # slow: outside the database lock
        with self._db.transaction() as connection:
            if connection.execute("SELECT 1 FROM users WHERE username = ?", [username]).fetchall():
                raise StateConflictError(f"User {username!r:.80} already exists.")
            connection.execute(
                "INSERT INTO users (username, password_hash, first_name, last_name, admin) VALUES (?, ?, ?, ?, ?)",
                [username, password_hash, first_name, last_name, admin],
            )
        return self.get(username)

    def update(self, username: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change names, admin flag and/or password (``new_password``); a new password revokes tokens."""
        user = self.get(username)["attributes"]
        if user["id"] == ADMIN_USER_ID and changes.get("admin") is False:
            raise StateConflictError(f"The default user {DEFAULT_USERNAME!r} cannot be demoted.")
        columns = {key: changes[key] for key in ("first_name", "last_name", "admin") if key in changes}
        if "new_password" in changes:
            columns["password_hash"] = hash_password(changes["new_password"])
        with self._db.transaction() as connection:
            if columns:
                assignments = ", ".join(f"{column} = ?" for column in columns)
                connection.execute(f"UPDATE users SET {assignments} WHERE id = ?", [*columns.values(), user["id"]])
            if "new_password" in changes:  # a new password and its revocations land together
                self.revoke_all(connection, user["id"])
        if "new_password" in changes and user["id"] == ADMIN_USER_ID:
            self._default_password_in_use = self._check_default_password()
        return self.get(username)

    def delete(self, username: str) -> int:
        """Remove the user and revoke its tokens; returns its id."""
        user_id = self.get(username)["attributes"]["id"]
        if user_id == ADMIN_USER_ID:
            raise StateConflictError(f"The default user {DEFAULT_USERNAME!r} cannot be deleted.")
        with self._db.transaction() as connection:
            connection.execute("DELETE FROM tokens WHERE user_id = ?", [user_id])
            connection.execute("DELETE FROM users WHERE id = ?", [user_id])
        return int(user_id)
