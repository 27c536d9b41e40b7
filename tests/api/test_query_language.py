"""Enfugue's REST query language on users, models and the invocation history, and attacks on it."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.api.test_invocations import error_of

DEMO = "tiny-random-demo-noise-only"
PEOPLE = [("ann", "Ann", "Lee"), ("bea", "Bea", "Lee"), ("cid", "Cid", "Moe"), ("dan", "Dan", "Ray")]


@pytest.fixture
def people(local_app: TestClient) -> TestClient:
    for username, first, last in PEOPLE:
        body = {
            "username": username,
            "new_password": "pw",
            "repeat_password": "pw",
            "first_name": first,
            "last_name": last,
        }
        assert local_app.post("/api/users", json=body).status_code == 200
    for name, size in (("Realistic Vision", 512), ("Realism", 768), ("Anime", 512)):
        assert local_app.post("/api/models", json={"name": name, "checkpoint": DEMO, "size": size}).status_code == 200
    return local_app


def usernames(client: TestClient, query: str) -> tuple[list[str], int]:
    body = client.get(f"/api/users?{query}").json()
    return [row["attributes"]["username"] for row in body["data"]], body["meta"]["count"]


def test_sort_limit_offset_and_count(people: TestClient) -> None:
    assert usernames(people, "sort=username:desc") == (["enfugue", "dan", "cid", "bea", "ann"], 5)
    assert usernames(people, "sort=last_name&sort=username:desc&limit=3") == (["bea", "ann", "cid"], 5)
    assert usernames(people, "sort=username&limit=2&offset=2") == (["cid", "dan"], 5)
    assert usernames(people, "sort=username&limit=0&offset=4") == (["enfugue"], 5)


def test_filters_are_anded_and_alternatives_ored(people: TestClient) -> None:
    assert usernames(people, "filter=last_name:Lee&sort=username") == (["ann", "bea"], 2)
    assert usernames(people, "filter=last_name:Lee&filter=first_name:Bea") == (["bea"], 1)
    assert usernames(people, "filter=last_name:Moe|Ray&sort=username") == (["cid", "dan"], 2)
    assert usernames(people, "filter=last_name:lee") == ([], 0)  # filter is case-sensitive
    assert usernames(people, "filter=admin:true") == (["enfugue"], 1)


def test_ilikes_are_ored_and_case_insensitive(people: TestClient) -> None:
    assert usernames(people, "ilike=first_name:AN&sort=username") == (["ann", "dan"], 2)
    assert usernames(people, "ilike=first_name:bea&ilike=last_name:moe&sort=username") == (["bea", "cid"], 2)
    assert usernames(people, "ilike=username:" + quote("%")) == ([], 0)  # wildcards are literal


def test_models_query_and_include(people: TestClient) -> None:
    body = people.get("/api/models?ilike=name:real&sort=size:desc").json()
    assert [row["attributes"]["name"] for row in body["data"]] == ["Realism", "Realistic Vision"]
    assert body["meta"] == {"params": {"ilike": ["name:real"], "sort": ["size:desc"]}, "count": 2}
    body = people.get("/api/models?filter=name:Realistic%20Vision|Realism&filter=size:512").json()
    assert [row["attributes"]["name"] for row in body["data"]] == ["Realistic Vision"]
    included = people.get("/api/models/Anime?include=lora&include=config").json()["data"][0]["include"]
    assert included == {"lora": [], "config": []}


def test_history_query(local_app: TestClient) -> None:
    store = local_app.store  # type: ignore[attr-defined]
    done = store.invocations.admit(1, {"prompt": "done"}, limit=10)["uuid"]
    store.invocations.complete(done, [f"{done}_0.png"], 1)
    store.invocations.admit(1, {"prompt": "waiting"}, limit=10)
    body = local_app.get("/api/invocation-history?filter=status:completed").json()
    assert [row["attributes"]["id"] for row in body["data"]] == [done] and body["meta"]["count"] == 1
    assert local_app.get("/api/invocation-history?sort=started&limit=1").json()["data"][0]["attributes"]["id"] == done
    assert local_app.get("/api/invocation-history?filter=status:queued|completed").json()["meta"]["count"] == 2


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/users?sort=password_hash", "sort: unknown column 'password_hash'"),
        ("/api/users?filter=password_hash:x", "filter: unknown column 'password_hash'"),
        ("/api/users?sort=username:sideways", "sort: unknown direction 'sideways'; allowed: asc, desc"),
        ("/api/users?include=tokens", "include: unknown relation 'tokens'"),
        ("/api/models?include=secrets", "include: unknown relation 'secrets'"),
        ("/api/models?ilike=nope:x", "ilike: unknown column 'nope'"),
        ("/api/models?filter=name", "filter: expected <column>:<value>"),
        ("/api/invocation-history?sort=plan", "sort: unknown column 'plan'"),
        ("/api/invocation-history?filter=user_id:2", "filter: unknown column 'user_id'"),
        ("/api/users?limit=-1", "limit: must be a whole number from 0 to 1000000000"),
        ("/api/users?offset=ten", "offset: must be a whole number from 0 to 1000000000"),
        ("/api/users?limit=1&limit=2", "limit: given 2 times"),
    ],
)
def test_unknown_names_are_400_naming_them(people: TestClient, path: str, detail: str) -> None:
    assert detail in error_of(people.get(path), 400)


INJECTIONS = [
    "sort=" + quote("name;drop table users"),
    "sort=" + quote("username desc; DROP TABLE users;--"),
    "sort=" + quote("username:desc;drop table users"),
    "filter=" + quote("username:x' or '1'='1"),
    "filter=" + quote("username) OR 1=1;--:x"),
    "ilike=" + quote("username:%' OR 1=1 --"),
    "ilike=" + quote("username:') UNION SELECT password_hash, 1, 1, 1, 1, 1 FROM users --"),
    "filter=" + quote("admin:true' OR admin = false --"),
]


@pytest.mark.parametrize("query", INJECTIONS)
def test_injection_is_refused_or_matches_nothing(people: TestClient, query: str) -> None:
    response = people.get(f"/api/users?{query}")
    if response.status_code == 200:
        assert response.json()["data"] == [] and response.json()["meta"]["count"] == 0
    else:
        assert response.status_code == 400, response.text
    for resource in ("models", "invocation-history"):
        assert people.get(f"/api/{resource}?{query.replace('username', 'name')}").status_code in (200, 400)
    # The data is intact and nothing leaked.
    assert usernames(people, "sort=username") == (["ann", "bea", "cid", "dan", "enfugue"], 5)
    assert people.get("/api/models").json()["meta"]["count"] == 3
    assert "scrypt" not in people.get(f"/api/users?{query}").text
