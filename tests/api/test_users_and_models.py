"""The seed's curl examples for users and models, replayed over HTTP, and their error cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.test_invocations import error_of, finished, invoke
from tests.fake_role import write_fake_checkpoint

DEMO = "tiny-random-demo-noise-only"
USER_KEYS = {"first_name", "id", "last_login", "last_name", "username", "admin"}
MODEL_KEYS = {"model", "name", "negative_prompt", "prompt", "size"}


def test_seed_user_examples(local_app: TestClient) -> None:
    listed = local_app.get("/api/users").json()
    assert listed["meta"] == {"params": {}, "count": 1}
    (default,) = listed["data"]
    assert default["type"] == "User" and set(default["attributes"]) == USER_KEYS
    assert default["attributes"]["username"] == "enfugue" and default["attributes"]["first_name"] == "Default"

    body = '{"username": "myuser", "new_password": "mypassword", "repeat_password": "mypassword", "admin": true}'
    created = local_app.post("/api/users", content=body).json()["data"]
    assert created["type"] == "User" and set(created["attributes"]) == USER_KEYS
    assert created["attributes"]["username"] == "myuser" and created["attributes"]["last_login"] is None

    # The seed changes a user with POST to /api/users/{username}; PATCH works the same.
    changed = local_app.post("/api/users/myuser", content='{"admin": false}').json()["data"]
    assert changed["attributes"]["admin"] is False
    assert (
        local_app.patch("/api/users/myuser", json={"first_name": "My"}).json()["data"]["attributes"]["first_name"]
        == "My"
    )

    assert local_app.get("/api/users/myuser").json()["meta"]["count"] == 1
    assert local_app.delete("/api/users/myuser").json() == {"meta": {"params": {}}, "data": None}
    assert error_of(local_app.get("/api/users/myuser"), 404)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"username": "enfugue", "new_password": "a", "repeat_password": "a"}, 409, "already exists"),
        ({"username": "x", "new_password": "a", "repeat_password": "b"}, 400, "repeat_password: does not match"),
        ({"username": "bad name", "new_password": "a", "repeat_password": "a"}, 400, "username: String should match"),
        ({"username": "x", "new_password": "", "repeat_password": ""}, 400, "new_password"),
        ({"username": "x", "repeat_password": "a"}, 400, "new_password: Field required"),
        ({"username": "x", "new_password": "a", "repeat_password": "a", "role": "god"}, 400, "role: unknown"),
    ],
)
def test_user_validation(local_app: TestClient, body: dict, status: int, detail: str) -> None:
    assert detail in error_of(local_app.post("/api/users", json=body), status)


def test_the_default_user_cannot_be_deleted_or_demoted(local_app: TestClient) -> None:
    assert "cannot be deleted" in error_of(local_app.delete("/api/users/enfugue"), 409)
    assert "cannot be demoted" in error_of(local_app.patch("/api/users/enfugue", json={"admin": False}), 409)
    assert local_app.get("/api/users/enfugue").json()["data"][0]["attributes"]["admin"] is True


def test_passwords_are_not_recoverable_from_the_database(local_app: TestClient, data_dir: Path) -> None:
    password = "correct horse battery staple"
    local_app.post("/api/users", json={"username": "carol", "new_password": password, "repeat_password": password})
    # The raw column, through the Store's own connection (DuckDB allows one process per file).
    raw = local_app.store._db  # type: ignore[attr-defined]
    stored = dict(raw.fetch("SELECT username, password_hash FROM users"))
    assert password not in stored["carol"] and "enfugue" not in stored["enfugue"]
    scheme, n, r, p, salt, digest = stored["carol"].split("$")
    assert scheme == "scrypt" and int(n) >= 2**14 and len(salt) >= 20 and len(digest) >= 40
    # Salted: the same password gives another hash.
    local_app.post("/api/users", json={"username": "dave", "new_password": password, "repeat_password": password})
    assert raw.fetch("SELECT password_hash FROM users WHERE username = 'dave'")[0][0] != stored["carol"]


@pytest.fixture
def model_files(data_dir: Path) -> Path:
    folder = data_dir / "checkpoint"
    write_fake_checkpoint(folder / "refiner-model")
    (data_dir / "vae" / "xl16.safetensors").write_bytes(b"")
    (data_dir / "lora" / "pixel-art.safetensors").write_bytes(b"")
    (data_dir / "inversion" / "EasyNegative.safetensors").write_bytes(b"")
    return data_dir


def test_seed_model_examples(local_app: TestClient, model_files: Path) -> None:
    created = local_app.post("/api/models", content=f'{{"name": "My Model", "checkpoint": "{DEMO}"}}').json()
    assert created["meta"] == {"params": {}}
    assert created["data"] == {
        "type": "DiffusionModel",
        "attributes": {"model": DEMO, "name": "My Model", "negative_prompt": "", "prompt": "", "size": 64},
    }
    patched = local_app.patch("/api/models/My%20Model", content='{"scheduler": "ddim"}').json()["data"]
    assert set(patched["attributes"]) == MODEL_KEYS
    scheduler = local_app.get("/api/models/My%20Model?include=scheduler").json()["data"][0]["include"]["scheduler"]
    assert scheduler == [
        {"type": "DiffusionModelScheduler", "attributes": {"diffusion_model_name": "My Model", "name": "ddim"}}
    ]

    full = {
        "name": "SDXL", "checkpoint": DEMO, "size": 1024, "prompt": "RAW photo", "negative_prompt": "blurry",
        "refiner": "refiner-model", "vae": "xl16.safetensors", "guidance_scale": 5, "width": 1024, "height": 1024,
        "lora": [{"model": "pixel-art.safetensors", "weight": 0.5}], "inversion": "EasyNegative.safetensors",
    }  # fmt: skip
    assert local_app.post("/api/models", json=full).status_code == 200
    got = local_app.get("/api/models/SDXL?include=vae&include=refiner&include=config")
    body = got.json()
    assert body["meta"] == {"params": {"include": ["vae", "refiner", "config"]}, "count": 1}
    (model,) = body["data"]
    assert model["attributes"] == {
        "model": DEMO, "name": "SDXL", "negative_prompt": "blurry", "prompt": "RAW photo", "size": 1024,
    }  # fmt: skip
    assert model["include"]["vae"] == [
        {"type": "DiffusionModelVAE", "attributes": {"diffusion_model_name": "SDXL", "name": "xl16.safetensors"}}
    ]
    assert model["include"]["refiner"] == [
        {
            "type": "DiffusionModelRefiner",
            "attributes": {"diffusion_model_name": "SDXL", "model": "refiner-model", "size": 64},
        }
    ]
    assert sorted(
        (item["type"], item["attributes"]["configuration_key"], item["attributes"]["configuration_value"])
        for item in model["include"]["config"]
    ) == [
        ("DiffusionModelDefaultConfiguration", "guidance_scale", 5),
        ("DiffusionModelDefaultConfiguration", "height", 1024),
        ("DiffusionModelDefaultConfiguration", "width", 1024),
    ]
    assert local_app.get("/api/models").json()["meta"]["count"] == 2
    assert local_app.delete("/api/models/My%20Model").json() == {"meta": {"params": {}}, "data": None}
    assert local_app.get("/api/models").json()["meta"]["count"] == 1


def test_patch_replaces_the_parts_it_names(local_app: TestClient, model_files: Path) -> None:
    local_app.post(
        "/api/models",
        json={
            "name": "m",
            "checkpoint": DEMO,
            "lora": "pixel-art.safetensors",
            "vae": "xl16.safetensors",
            "width": 512,
        },
    )
    local_app.patch("/api/models/m", json={"lora": [], "height": 256})
    model = local_app.get("/api/models/m?include=lora&include=vae&include=config").json()["data"][0]
    assert model["include"]["lora"] == []
    assert model["include"]["vae"][0]["attributes"]["name"] == "xl16.safetensors"
    config = {
        item["attributes"]["configuration_key"]: item["attributes"]["configuration_value"]
        for item in model["include"]["config"]
    }
    assert config == {"width": 512, "height": 256}
    renamed = local_app.patch("/api/models/m", json={"name": "renamed", "vae": None}).json()["data"]
    assert renamed["attributes"]["name"] == "renamed"
    assert local_app.get("/api/models/renamed?include=vae").json()["data"][0]["include"]["vae"] == []
    assert error_of(local_app.get("/api/models/m"), 404)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"name": "a/b", "checkpoint": DEMO}, 400, "name: String should match"),
        ({"name": "a.b", "checkpoint": DEMO}, 400, "name"),
        ({"name": "a\\b", "checkpoint": DEMO}, 400, "name"),
        ({"name": "x"}, 400, "checkpoint: required"),
        ({"name": "x", "checkpoint": "missing.safetensors"}, 400, "checkpoint: no checkpoint file named"),
        ({"name": "x", "checkpoint": "../enfugue.duckdb"}, 400, "checkpoint"),
        ({"name": "x", "checkpoint": DEMO, "lora": "nope.safetensors"}, 400, "lora: no lora file named"),
        ({"name": "x", "checkpoint": DEMO, "vae": "/etc/passwd"}, 400, "vae"),
        ({"name": "x", "checkpoint": DEMO, "scheduler": "fast"}, 400, "scheduler"),
        ({"name": "x", "checkpoint": DEMO, "width": 100}, 400, "width"),
        ({"name": "x", "checkpoint": DEMO, "refiner_size": 512}, 400, "refiner_size: given without refiner"),
    ],
)
def test_model_validation(local_app: TestClient, body: dict, status: int, detail: str) -> None:
    assert detail in error_of(local_app.post("/api/models", json=body), status)


def test_duplicate_and_unknown_models(local_app: TestClient) -> None:
    assert local_app.post("/api/models", json={"name": "dup", "checkpoint": DEMO}).status_code == 200
    assert "already exists" in error_of(local_app.post("/api/models", json={"name": "dup", "checkpoint": DEMO}), 409)
    assert error_of(local_app.patch("/api/models/unknown", json={"prompt": "x"}), 404)
    assert error_of(local_app.delete("/api/models/unknown"), 404)
    assert error_of(local_app.get("/api/models/unknown"), 404)


def test_invoking_a_preconfigured_model_applies_its_defaults(local_app: TestClient, data_dir: Path) -> None:
    local_app.post(
        "/api/models",
        json={"name": "styled", "checkpoint": DEMO, "prompt": "oil painting", "negative_prompt": "blurry",
              "scheduler": "ddim", "width": 64, "height": 64, "num_inference_steps": 2, "guidance_scale": 3},
    )  # fmt: skip
    status = finished(local_app, invoke(local_app, {"model": "styled", "prompt": "a cat", "height": 128})["uuid"])
    assert status["status"] == "completed", status
    plan = local_app.get("/api/invocation-history").json()["data"][0]["attributes"]["plan"]
    (step,) = plan["steps"]
    assert step["prompt"] == "a cat, oil painting" and step["negative_prompt"] == "blurry"
    assert (step["width"], step["height"], step["num_inference_steps"]) == (64, 128, 2)
    assert (step["scheduler"], step["guidance_scale"]) == ("ddim", 3)
    assert plan["model"]["name"] == "styled"


def test_model_type_breaks_a_tie(local_app: TestClient, data_dir: Path) -> None:
    # A diffusers folder and a preconfigured model, both called "same".
    write_fake_checkpoint(data_dir / "checkpoint" / "same")
    local_app.post("/api/models", json={"name": "same", "checkpoint": DEMO, "prompt": "from the model"})

    def ran(body: dict) -> dict:
        small = {**body, "width": 64, "height": 64, "num_inference_steps": 2}
        status = finished(local_app, invoke(local_app, small)["uuid"])
        assert status["status"] == "completed", status
        return local_app.get("/api/invocation-history?limit=1").json()["data"][0]["attributes"]["plan"]

    assert ran({"model": "same"})["steps"][0]["checkpoint"] == DEMO
    assert ran({"model": "same", "model_type": "checkpoint"})["steps"][0]["checkpoint"] == "same"
    assert ran({"model": "same", "model_type": "model"})["model"]["name"] == "same"
    detail = error_of(local_app.post("/api/invoke", json={"model": DEMO, "model_type": "model"}), 400)
    assert detail.startswith("model: no preconfigured model")
    assert json.loads(json.dumps(ran({"model": DEMO})))["model"] is None
