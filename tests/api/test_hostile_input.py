"""Requests an attacker (or a careless client) sends: each answers 4xx with a clear detail, never 500."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.api.test_invocations import SMALL, error_of, finished, invoke
from tests.conftest import serve_locally
from tests.fake_role import FakeRole
from tests.images import data_uri

# Every route that reads a JSON body, with a method and a path to send it to.
JSON_ROUTES = [
    ("POST", "/api/invoke"),
    ("POST", "/api/settings"),
    ("POST", "/api/login"),
    ("POST", "/api/users"),
    ("PATCH", "/api/users/enfugue"),
    ("POST", "/api/models"),
    ("PATCH", "/api/models/anything"),
]


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ('{"prompt":' + "[" * 1000 + "]" * 1000 + "}", "nested more than"),
        ('{"prompt": ' + "9" * 5000 + "}", "not valid JSON"),
        ('{"prompt": "\\ud800"}', "lone surrogate"),
        ('{"prompt": [[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]}', "nested more than"),
        ('{"prompt": "a cat"}'.encode("utf-16"), "not UTF-8"),
    ],
)
def test_bodies_that_would_fail_later_are_400(
    local_app: TestClient, method: str, path: str, body: str | bytes, detail: str
) -> None:
    assert detail in error_of(local_app.request(method, path, content=body), 400)


def test_a_lone_surrogate_is_refused_naming_its_field(local_app: TestClient) -> None:
    assert error_of(local_app.post("/api/invoke", content='{"prompt": "a \\ud800"}'), 400).startswith("prompt:")
    body = '{"name": "m", "checkpoint": "tiny-random-demo-noise-only", "prompt": "\\udfff"}'
    assert error_of(local_app.post("/api/models", content=body), 400).startswith("prompt:")
    body = '{"default_checkpoint": "\\ud800.safetensors"}'
    assert error_of(local_app.post("/api/settings", content=body), 400).startswith("default_checkpoint:")
    assert local_app.get("/api").status_code == 200


@pytest.mark.parametrize("query", ["limit=%C2%B2", "offset=%C2%B2", "limit=9223372036854775808", "offset=1e3"])
def test_page_numbers_are_plain_bounded_digits(local_app: TestClient, query: str) -> None:
    assert "must be a whole number from 0 to" in error_of(local_app.get(f"/api/invocation-history?{query}"), 400)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"auth": "yes"}, "auth: Input should be a valid boolean"),
        ({"safe": 1}, "safe: Input should be a valid boolean"),
    ],
)
def test_booleans_are_json_booleans(local_app: TestClient, body: dict[str, Any], detail: str) -> None:
    assert detail in error_of(local_app.post("/api/settings", json=body), 400)


def test_an_admin_flag_must_be_a_boolean(local_app: TestClient) -> None:
    body = {"username": "mallory", "new_password": "pw", "repeat_password": "pw", "admin": "true"}
    assert "admin: Input should be a valid boolean" in error_of(local_app.post("/api/users", json=body), 400)
    assert error_of(local_app.get("/api/users/mallory"), 404)


def test_numbers_in_strings_stay_numbers(local_app: TestClient) -> None:
    assert invoke(local_app, {**SMALL, "num_inference_steps": "3", "guidance_scale": "5.5"})["status"] == "queued"


def test_prompts_have_a_bounded_length(local_app: TestClient) -> None:
    assert "at most 10000 characters" in error_of(local_app.post("/api/invoke", json={"prompt": "x" * 10_001}), 400)
    detail = error_of(local_app.post("/api/invoke", json={**SMALL, "prompt": "x" * 2001}), 400)
    assert detail == "prompt: 2001 characters; at most 2000 are allowed (the max_prompt_length setting)"
    assert local_app.post("/api/settings", json={"max_prompt_length": 3000}).status_code == 200
    assert invoke(local_app, {**SMALL, "prompt": "x" * 2001})["status"] == "queued"
    history = local_app.get("/api/invocation-history").json()
    assert history["meta"]["count"] == 1  # the refused ones were never stored


def test_a_preconfigured_models_prompt_counts_too(local_app: TestClient) -> None:
    wordy = {"name": "wordy", "checkpoint": "tiny-random-demo-noise-only", "prompt": "y" * 1500}
    assert local_app.post("/api/models", json=wordy).status_code == 200
    detail = error_of(local_app.post("/api/invoke", json={**SMALL, "model": "wordy", "prompt": "x" * 600}), 400)
    assert detail.startswith("prompt: 2102 characters with the model's own; at most 2000")
    assert local_app.get("/api/invocation-history").json()["meta"]["count"] == 0


def test_input_images_larger_than_any_pass_are_refused_before_decoding(local_app: TestClient) -> None:
    buffer = io.BytesIO()
    Image.new("L", (8200, 8)).save(buffer, format="PNG")
    image = "data:image/png;base64," + __import__("base64").b64encode(buffer.getvalue()).decode()
    assert "at most 4096 pixels a side" in error_of(local_app.post("/api/invoke", json={"image": image}), 400)


@pytest.mark.parametrize(
    ("body", "limit"),
    [
        ({"width": 4096, "height": 4096, "samples": 16, "num_inference_steps": 999}, "max_pixels_per_step"),
        ({"width": 2048, "height": 2048, "samples": 2, "num_inference_steps": 101}, "max_pixel_steps"),
    ],
)
def test_the_cost_of_a_request_is_checked_at_admission(local_app: TestClient, body: dict, limit: str) -> None:
    detail = error_of(local_app.post("/api/invoke", json=body), 400)
    assert f"(the {limit} setting)" in detail
    assert local_app.get("/api/invocation-history").json()["meta"]["count"] == 0
    assert local_app.get("/api").json()["data"]["system"]["invocations"]["queued"] == 0


def test_an_img2img_request_is_costed_at_its_images_size(local_app: TestClient) -> None:
    assert local_app.post("/api/settings", json={"max_pixels_per_step": 64 * 64}).status_code == 200
    image = data_uri(Image.new("RGB", (128, 64)))
    assert "128x64x1 = 8192 pixels" in error_of(local_app.post("/api/invoke", json={"image": image}), 400)


def test_steps_stop_where_every_scheduler_can_run(local_app: TestClient) -> None:
    detail = error_of(local_app.post("/api/invoke", json={"num_inference_steps": 1000}), 400)
    assert detail.startswith("num_inference_steps: Input should be less than or equal to 999")


def test_one_user_cannot_fill_the_shared_queue(local_app: TestClient) -> None:
    local_app.post("/api/settings", json={"max_queued_invocations": 10, "max_queued_invocations_per_user": 1})
    slow = {**SMALL, "num_inference_steps": 400}
    statuses = [local_app.post("/api/invoke", json=slow) for _ in range(4)]
    refused = [response for response in statuses if response.status_code == 429]
    assert refused and "the most one user may" in refused[0].json()["errors"][0]["detail"]
    for response in statuses:
        if response.status_code == 200:
            local_app.post(f"/api/invocation/{response.json()['data']['uuid']}/cancel")


def test_settings_report_the_limits(local_app: TestClient) -> None:
    settings = local_app.get("/api/settings").json()["data"]
    assert {"max_queued_invocations_per_user", "max_prompt_length", "max_pixels_per_step", "max_pixel_steps"} <= set(
        settings
    )
    assert json.dumps(settings)


def test_a_write_from_another_sites_page_is_refused(data_dir: Path) -> None:
    with serve_locally(data_dir, auth=True) as client:
        token = client.post("/api/login", json={"username": "enfugue", "password": "enfugue"}).json()
        cookie = {"Cookie": f"enfugue_token={token['data']['attributes']['access_token']}"}
        forged = {**cookie, "Origin": "http://127.0.0.1:9999", "Content-Type": "text/plain"}
        response = client.post("/api/settings", content='{"max_queued_invocations": 7}', headers=forged)
        assert "another site's page" in error_of(response, 403)
        assert error_of(client.get("/logout", headers={**cookie, "Referer": "http://evil.example/x"}), 403)
        assert error_of(client.post("/api/settings", json={"safe": False}, headers={**cookie, "Origin": "null"}), 403)
        # Still logged in, settings unchanged.
        assert client.get("/api/settings", headers=cookie).json()["data"]["max_queued_invocations"] == 4
        # This server's own pages, Bearer clients and non-browser clients may.
        own = {**cookie, "Origin": "http://testserver"}
        assert client.post("/api/settings", json={"max_queued_invocations": 5}, headers=own).status_code == 200
        bearer = {"Authorization": f"Bearer {token['data']['attributes']['access_token']}", "Origin": "http://x.y"}
        assert client.post("/api/settings", json={"max_queued_invocations": 6}, headers=bearer).status_code == 200
        assert client.post("/api/settings", json={"max_queued_invocations": 7}, headers=cookie).status_code == 200


def test_with_auth_off_another_sites_page_cannot_change_anything_either(local_app: TestClient) -> None:
    forged = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    assert error_of(local_app.post("/api/settings", content='{"auth": true}', headers=forged), 403)
    assert local_app.get("/api/settings").json()["data"]["auth"] is False


def test_failed_logins_are_throttled_with_retry_after(data_dir: Path) -> None:
    with serve_locally(data_dir, auth=True) as client:
        wrong = {"username": "enfugue", "password": "guess"}
        codes = [client.post("/api/login", json=wrong).status_code for _ in range(8)]
        assert codes[:5] == [401] * 5 and 429 in codes[5:]
        refused = client.post("/api/login", json=wrong)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        # Another user from the same address is not locked out by it.
        client.store.accounts.create("bob", "bob-pw", None, None, False)  # type: ignore[attr-defined]
        assert client.post("/api/login", json={"username": "bob", "password": "bob-pw"}).status_code == 200


def test_a_failure_the_user_did_not_cause_reads_plainly(data_dir: Path) -> None:
    from ray.exceptions import ActorDiedError

    class Dying(FakeRole):
        def run(self, *args: Any) -> Any:
            raise ActorDiedError()

    with serve_locally(data_dir, role=Dying()) as client:
        status = finished(client, invoke(client, SMALL)["uuid"])
        assert status["status"] == "error"
        assert status["message"] == (
            "The invocation failed at step 1 of 1 (diffuse on the base role): the model server running it stopped "
            "before it finished; try again."
        )


def test_the_description_has_every_body_query_parameter_and_error(local_app: TestClient) -> None:
    document = local_app.get("/openapi.json").json()
    invoke_body = document["paths"]["/api/invoke"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert invoke_body == {"$ref": "#/components/schemas/InvokeRequest"}
    assert "num_inference_steps" in document["components"]["schemas"]["InvokeRequest"]["properties"]
    history = document["paths"]["/api/invocation-history"]["get"]
    assert {parameter["name"] for parameter in history["parameters"]} == {"limit", "offset", "sort", "ilike", "filter"}
    for path in document["paths"].values():
        for operation in path.values():
            assert "422" not in operation["responses"]
            assert {"400", "401", "403", "404", "409", "413", "429"} <= set(operation["responses"])


def test_options_lists_every_method_of_a_path(local_app: TestClient) -> None:
    response = local_app.options("/api/models")
    assert response.status_code == 204 and response.headers["allow"] == "GET, OPTIONS, POST"
    assert local_app.options("/api/models/some-name").headers["allow"] == "DELETE, GET, OPTIONS, PATCH"
    assert local_app.options("/api/nowhere").status_code == 404


@pytest.mark.parametrize("field", ["new_password", "admin"])
def test_a_null_where_a_value_is_needed_is_a_400(local_app: TestClient, field: str) -> None:
    # Found by the fuzzing: a null new password reached the hashing (500).
    detail = error_of(local_app.patch("/api/users/enfugue", json={field: None, "repeat_password": None}), 400)
    assert detail == f"{field}: may not be null"
