"""Every route, with every kind of caller: the status each gets, printed as a matrix and asserted."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from storage.images import image_name, write_png
from storage.metadata import utcnow
from storage.passwords import token_digest
from storage.shared import IMAGES, SharedStorage
from tests.conftest import serve_locally

IDENTITIES = ("none", "malformed", "expired", "revoked", "user", "other", "admin")
_counter = itertools.count()


@dataclass
class World:
    client: TestClient
    headers: dict[str, dict[str, str]]
    user_id: int

    data_dir: Path

    def invocation(self) -> str:
        """A completed invocation with one image, owned by "user" (made without diffusion)."""
        store = self.client.store  # type: ignore[attr-defined]
        uuid = store.invocations.admit(self.user_id, {"prompt": "owned by user"}, limit=1000)["uuid"]
        name = image_name(uuid, 0)
        write_png(SharedStorage.from_url(self.data_dir), IMAGES, name, Image.new("RGB", (8, 8)), {})
        store.invocations.complete(uuid, [name], 1)
        return uuid

    def model(self) -> str:
        name = f"model-{next(_counter)}"
        self.client.store.preconfigured.create(  # type: ignore[attr-defined]
            {"name": name, "model": "tiny-random-demo-noise-only", "size": 64, "prompt": "", "negative_prompt": ""}
        )
        return name

    def victim(self) -> str:
        username = f"victim{next(_counter)}"
        self.client.store.accounts.create(username, "pw", None, None, False)  # type: ignore[attr-defined]
        return username


def _login(client: TestClient, username: str, password: str) -> str:
    response = client.post("/api/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["data"]["attributes"]["access_token"]


@pytest.fixture
def world(data_dir: Path) -> Iterator[World]:
    with serve_locally(data_dir, auth=True) as client:
        store = client.store  # type: ignore[attr-defined]
        user = store.accounts.create("alice", "alice-pw", None, None, False)
        store.accounts.create("bob", "bob-pw", None, None, False)
        expired = _login(client, "alice", "alice-pw")
        store._db.execute(
            "UPDATE tokens SET expires = ? WHERE token_hash = ?",
            [utcnow() - timedelta(seconds=1), token_digest(expired)],
        )
        revoked = _login(client, "alice", "alice-pw")
        assert client.post("/api/logout", headers={"Authorization": f"Bearer {revoked}"}).status_code == 200
        bearer = {
            "expired": expired,
            "revoked": revoked,
            "user": _login(client, "alice", "alice-pw"),
            "other": _login(client, "bob", "bob-pw"),
            "admin": _login(client, "enfugue", "enfugue"),
        }
        headers = {"none": {}, "malformed": {"Authorization": "Bearer !!not-a-token!!"}}
        headers |= {name: {"Authorization": f"Bearer {token}"} for name, token in bearer.items()}
        client.cookies.clear()  # login set the cookie; each call here says who it is
        yield World(client, headers, user["attributes"]["id"], data_dir)


UNAUTHENTICATED = {"none": 401, "malformed": 401, "expired": 401, "revoked": 401}
ANYONE = {**UNAUTHENTICATED, "user": 200, "other": 200, "admin": 200}
ADMIN_ONLY = {**UNAUTHENTICATED, "user": 403, "other": 403, "admin": 200}
# Another user's invocation does not exist as far as a user can tell; an administrator sees all.
OWNER_ONLY = {**UNAUTHENTICATED, "user": 200, "other": 404, "admin": 200}
PUBLIC = dict.fromkeys(IDENTITIES, 200)

Setup = Callable[[World], tuple[str, Any]]  # -> (path, json body or None)
SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}

ROUTES: list[tuple[str, str, Setup, dict[str, int]]] = [
    ("GET", "/api", lambda w: ("/api", None), ANYONE),
    ("GET", "/api/settings", lambda w: ("/api/settings", None), ADMIN_ONLY),
    ("POST", "/api/settings", lambda w: ("/api/settings", {"max_queued_invocations": 8}), ADMIN_ONLY),
    ("GET", "/api/checkpoints", lambda w: ("/api/checkpoints", None), ANYONE),
    ("GET", "/api/lora", lambda w: ("/api/lora", None), ANYONE),
    ("GET", "/api/lycoris", lambda w: ("/api/lycoris", None), ANYONE),
    ("GET", "/api/inversions", lambda w: ("/api/inversions", None), ANYONE),
    ("GET", "/api/inversion", lambda w: ("/api/inversion", None), ANYONE),
    ("GET", "/api/vae", lambda w: ("/api/vae", None), ANYONE),
    ("GET", "/api/controlnet", lambda w: ("/api/controlnet", None), ANYONE),
    ("GET", "/api/upscalers", lambda w: ("/api/upscalers", None), ANYONE),
    ("GET", "/api/annotators", lambda w: ("/api/annotators", None), ANYONE),
    # The console's files hold no data: a page must load before anyone logs in.
    ("GET", "/", lambda w: ("/", None), PUBLIC),
    ("GET", "/console/{name}", lambda w: ("/console/console.js", None), PUBLIC),
    ("POST", "/api/invoke", lambda w: ("/api/invoke", SMALL), ANYONE),
    ("GET", "/api/invocation", lambda w: ("/api/invocation", None), ANYONE),
    ("POST", "/api/invocation/stop", lambda w: ("/api/invocation/stop", None), ANYONE),
    ("GET", "/api/invocation/{uuid}", lambda w: (f"/api/invocation/{w.invocation()}", None), OWNER_ONLY),
    (
        "GET",
        "/api/invocation/images/{file}",
        lambda w: (f"/api/invocation/images/{w.invocation()}_0.png", None),
        OWNER_ONLY,
    ),  # noqa: E501
    ("GET", "/api/invocation/{uuid}/events", lambda w: (f"/api/invocation/{w.invocation()}/events", None), OWNER_ONLY),
    ("POST", "/api/invocation/{uuid}/cancel", lambda w: (f"/api/invocation/{w.invocation()}/cancel", None), OWNER_ONLY),
    ("DELETE", "/api/invocation/{uuid}", lambda w: (f"/api/invocation/{w.invocation()}", None), OWNER_ONLY),
    ("GET", "/api/invocation-history", lambda w: ("/api/invocation-history", None), ANYONE),
    ("GET", "/api/users", lambda w: ("/api/users", None), ADMIN_ONLY),
    ("GET", "/api/users/{username}", lambda w: ("/api/users/alice", None), ADMIN_ONLY),
    (
        "POST",
        "/api/users",
        lambda w: ("/api/users", {"username": f"new{next(_counter)}", "new_password": "p", "repeat_password": "p"}),
        ADMIN_ONLY,
    ),  # noqa: E501
    ("PATCH", "/api/users/{username}", lambda w: (f"/api/users/{w.victim()}", {"first_name": "Vic"}), ADMIN_ONLY),
    ("DELETE", "/api/users/{username}", lambda w: (f"/api/users/{w.victim()}", None), ADMIN_ONLY),
    ("GET", "/api/models", lambda w: ("/api/models", None), ANYONE),
    ("GET", "/api/models/{name}", lambda w: (f"/api/models/{w.model()}", None), ANYONE),
    (
        "POST",
        "/api/models",
        lambda w: ("/api/models", {"name": f"m{next(_counter)}", "checkpoint": "tiny-random-demo-noise-only"}),
        ADMIN_ONLY,
    ),  # noqa: E501
    ("PATCH", "/api/models/{name}", lambda w: (f"/api/models/{w.model()}", {"prompt": "p"}), ADMIN_ONLY),
    ("DELETE", "/api/models/{name}", lambda w: (f"/api/models/{w.model()}", None), ADMIN_ONLY),
    ("GET", "/api/download", lambda w: ("/api/download", None), ADMIN_ONLY),
    ("POST", "/api/download/cancel", lambda w: ("/api/download/cancel", {"url": "http://x.invalid/a"}), ADMIN_ONLY),
    ("POST", "/api/login", lambda w: ("/api/login", {"username": "bob", "password": "bob-pw"}), PUBLIC),
    # Last: logging out revokes the caller's token.
    ("POST", "/api/logout", lambda w: ("/api/logout", None), PUBLIC),
    ("GET", "/logout", lambda w: ("/logout", None), PUBLIC),
]


def _print_matrix(results: dict[str, dict[str, int]]) -> str:
    width = max(len(route) for route in results)
    lines = [f"{'route':<{width}}  " + " ".join(f"{name:>9}" for name in IDENTITIES)]
    for route, codes in results.items():
        lines.append(f"{route:<{width}}  " + " ".join(f"{codes[name]:>9}" for name in IDENTITIES))
    return "\n".join(lines)


def test_every_route_with_every_caller(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    results: dict[str, dict[str, int]] = {}
    expected: dict[str, dict[str, int]] = {}
    for method, route, setup, expectation in ROUTES:
        label = f"{method} {route}"
        results[label], expected[label] = {}, expectation
        for identity in IDENTITIES:
            path, body = setup(world)
            response = world.client.request(method, path, json=body, headers=world.headers[identity])
            results[label][identity] = response.status_code
            if response.status_code >= 400:
                assert response.json()["errors"][0]["status"] == str(response.status_code)
    with capsys.disabled():
        print("\n" + _print_matrix(results))  # noqa: T201 - the matrix is part of the test's report
    assert results == expected


def test_the_cookie_authenticates_too(world: World) -> None:
    client = world.client
    token = world.headers["user"]["Authorization"].removeprefix("Bearer ")
    client.cookies.set("enfugue_token", token)
    assert client.get("/api/invocation-history").status_code == 200
    client.cookies.set("enfugue_token", "0" * 64)
    assert client.get("/api/invocation-history").status_code == 401
    client.cookies.clear()


def test_401_detail_is_the_seed_message(world: World) -> None:
    response = world.client.get("/api")
    assert response.json() == {
        "errors": [{"status": "401", "title": "AuthenticationError", "detail": "Invalid or no credentials supplied."}]
    }


def test_turning_auth_on_revokes_every_token(world: World) -> None:
    client, admin = world.client, world.headers["admin"]
    assert client.post("/api/settings", json={"auth": False}, headers=admin).status_code == 200
    assert client.post("/api/settings", json={"auth": True}, headers=admin).status_code == 200
    assert client.get("/api", headers=admin).status_code == 401
    assert client.get("/api", headers=world.headers["user"]).status_code == 401


def test_a_new_password_revokes_that_users_tokens(world: World) -> None:
    client = world.client
    change = {"new_password": "new-pw", "repeat_password": "new-pw"}
    assert client.patch("/api/users/alice", json=change, headers=world.headers["admin"]).status_code == 200
    assert client.get("/api", headers=world.headers["user"]).status_code == 401
    assert client.get("/api", headers=world.headers["other"]).status_code == 200
    assert client.post("/api/login", json={"username": "alice", "password": "alice-pw"}).status_code == 401
    assert client.post("/api/login", json={"username": "alice", "password": "new-pw"}).status_code == 200


def test_default_password_warning_while_auth_is_on(world: World) -> None:
    client, admin = world.client, world.headers["admin"]
    (warning,) = client.get("/api", headers=admin).json()["data"]["warnings"]
    assert "default password" in warning
    change = {"new_password": "s3cret", "repeat_password": "s3cret"}
    assert client.patch("/api/users/enfugue", json=change, headers=admin).status_code == 200
    admin = {"Authorization": f"Bearer {_login(client, 'enfugue', 's3cret')}"}
    assert client.get("/api", headers=admin).json()["data"]["warnings"] == []


def test_users_change_their_own_password_with_the_current_one(world: World) -> None:
    client, alice = world.client, world.headers["user"]
    change = {"new_password": "alice-2", "repeat_password": "alice-2"}
    assert "current_password: required" in client.patch("/api/users/alice", json=change, headers=alice).text
    wrong = client.patch("/api/users/alice", json={**change, "current_password": "nope"}, headers=alice)
    assert wrong.status_code == 403 and "current_password" in wrong.json()["errors"][0]["detail"]
    assert client.patch("/api/users/alice", json={"admin": True}, headers=alice).status_code == 403
    assert client.patch("/api/users/bob", json={"first_name": "B"}, headers=alice).status_code == 403
    assert client.patch("/api/users/alice", json={"first_name": "Al"}, headers=alice).status_code == 200
    done = client.patch("/api/users/alice", json={**change, "current_password": "alice-pw"}, headers=alice)
    assert done.status_code == 200 and done.json()["data"]["attributes"]["first_name"] == "Al"
    assert client.get("/api", headers=alice).status_code == 401  # a new password revokes the old tokens
    assert client.post("/api/login", json={"username": "alice", "password": "alice-2"}).status_code == 200


def test_stop_is_each_users_own_and_an_administrators_for_all(world: World) -> None:
    client, slow = world.client, {"width": 64, "height": 64, "num_inference_steps": 999}
    alice, bob, admin = world.headers["user"], world.headers["other"], world.headers["admin"]
    client.post("/api/settings", json={"max_queued_invocations_per_user": 4}, headers=admin)
    mine = client.post("/api/invoke", json=slow, headers=alice).json()["data"]["uuid"]
    theirs = client.post("/api/invoke", json=slow, headers=bob).json()["data"]["uuid"]
    assert client.post("/api/invocation/stop", headers=alice).json()["data"] == {"cancelled": [mine]}
    assert client.get(f"/api/invocation/{mine}", headers=alice).json()["data"]["status"] == "cancelled"
    assert client.get(f"/api/invocation/{theirs}", headers=bob).json()["data"]["status"] in ("queued", "processing")
    assert [s["uuid"] for s in client.get("/api/invocation", headers=alice).json()["data"]] == [mine]
    assert {s["uuid"] for s in client.get("/api/invocation", headers=admin).json()["data"]} >= {mine, theirs}
    assert client.post("/api/invocation/stop", headers=admin).json()["data"] == {"cancelled": [theirs]}
