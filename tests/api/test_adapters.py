"""LoRA, LyCORIS, inversions and VAEs through the API (fake role): resolved, recorded, refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from storage.files import DataPaths
from tests.api.test_inpainting import run
from tests.api.test_invocations import error_of

DEMO = "tiny-random-demo-noise-only"
FILES = (
    ("lora", "style.safetensors"),
    ("lycoris", "sub/locon.safetensors"),
    ("inversion", "tinytoken.pt"),
    ("vae", "sd-vae-ft-mse.safetensors"),
    ("vae", "mine.safetensors"),
)


@pytest.fixture
def files(data_dir: Path) -> DataPaths:
    paths = DataPaths(data_dir)
    for kind, name in FILES:
        path = paths.models(kind) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return paths


def test_files_are_resolved_and_recorded_in_the_plan(local_app: TestClient, files: DataPaths) -> None:
    body = {
        "lora": [{"model": "style.safetensors", "weight": 0.5}], "lycoris": "sub/locon.safetensors",
        "inversion": "tinytoken.pt", "vae": "mse",
    }  # fmt: skip
    _, step = run(local_app, body)
    assert step["adapters"] == [
        {"kind": "lora", "name": "style.safetensors", "weight": 0.5},
        {"kind": "lycoris", "name": "sub/locon.safetensors", "weight": 1.0},
    ]
    assert step["inversions"] == ["tinytoken.pt"] and step["vae"] == "sd-vae-ft-mse.safetensors"
    # The VAE is part of what stays loaded: the role loaded the checkpoint with it.
    assert local_app.role.loads[-1] == f"{DEMO}//vae=sd-vae-ft-mse.safetensors"  # type: ignore[attr-defined]
    _, step = run(local_app, {"vae": "mine.safetensors"})
    assert step["vae"] == "mine.safetensors" and step["adapters"] == []


def test_a_preconfigured_models_files_apply_unless_the_request_names_its_own(
    local_app: TestClient, files: DataPaths
) -> None:
    model = {
        "name": "styled",
        "checkpoint": DEMO,
        "lora": {"model": "style.safetensors", "weight": 0.7},
        "vae": "mine.safetensors",
    }
    assert local_app.post("/api/models", json=model).status_code == 200
    _, step = run(local_app, {"model": "styled"})
    assert (
        step["adapters"] == [{"kind": "lora", "name": "style.safetensors", "weight": 0.7}]
        and step["vae"] == "mine.safetensors"
    )
    _, step = run(local_app, {"model": "styled", "lora": [], "vae": "mse"})
    assert step["adapters"] == [] and step["vae"] == "sd-vae-ft-mse.safetensors"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"lora": "nope.safetensors"}, "lora: no lora file named 'nope.safetensors'; see GET /api/lora"),
        (
            {"lycoris": [{"model": "../enfugue.duckdb"}]},
            "lycoris: '../enfugue.duckdb' is not a file in the lycoris folder",
        ),
        ({"inversion": {"model": "nope.pt"}}, "inversion: no inversion file named 'nope.pt'"),
        ({"vae": "ema"}, "vae: 'ema' needs the file sd-vae-ft-ema.safetensors in the vae folder"),
        ({"vae": "nope.safetensors"}, "vae: no vae file named 'nope.safetensors'"),
        ({"lora": {"model": "style.safetensors", "weight": 11}}, "lora"),
        ({"lora": {"model": "style.safetensors", "strength": 1}}, "lora"),
        ({"inversion": {"model": "tinytoken.pt", "weight": 1}}, "inversion"),
    ],
)
def test_unknown_or_malformed_files_are_400s_naming_them(
    local_app: TestClient, files: DataPaths, body: dict, detail: str
) -> None:
    assert detail in error_of(local_app.post("/api/invoke", json=body), 400)
