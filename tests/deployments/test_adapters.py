"""LoRA, LyCORIS, textual inversions and VAEs on the Base role, real pipelines on tiny files: each
changes the image, only for the request that asks, and the next request sees the plain model."""

from __future__ import annotations

import numpy as np
import pytest

from deployments.base import BaseRole
from deployments.plan import make_plan
from deployments.request import Adapter, Checkpoint, GenerationRequest
from deployments.steps import Diffuse
from serve_app.errors import BadRequestError
from storage.files import DataPaths
from tests.deployments.role_contract import pixels, run
from tests.tiny_models import (
    tiny_sd15_pipeline,
    write_diffusers_folder,
    write_tiny_inversion,
    write_tiny_lora,
    write_tiny_vae,
)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> DataPaths:
    paths = DataPaths(tmp_path_factory.mktemp("data")).ensure()
    write_diffusers_folder(tiny_sd15_pipeline(), paths.models("checkpoint") / "tiny")
    write_tiny_lora(paths.models("lora") / "style.safetensors", seed=1)
    write_tiny_lora(paths.models("lycoris") / "locon.safetensors", seed=2)
    write_tiny_inversion(paths.models("inversion") / "tinytoken.safetensors")
    write_tiny_vae(paths.models("vae") / "other-vae.safetensors")
    (paths.models("lora") / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    return paths


@pytest.fixture(scope="module")
def role(paths: DataPaths) -> BaseRole:
    return BaseRole(str(paths.root))


def step(**request: object) -> Diffuse:
    fields = {
        "prompt": "a tinytoken cat",
        "width": 64,
        "height": 64,
        "num_inference_steps": 3,
        "seed": 3,
        "scheduler": "ddim",
        **request,
    }
    (made,) = make_plan(GenerationRequest(Checkpoint("tiny", 64), **fields), 0).steps  # type: ignore[arg-type]
    assert isinstance(made, Diffuse)
    return made


def image(role: BaseRole, made: Diffuse) -> np.ndarray:
    return pixels(run(role, role.load(made.model_id), made))[0].astype(int)


def differs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


@pytest.mark.parametrize("kind", ["lora", "lycoris"])
def test_an_adapter_applies_at_its_weight_for_its_request_only(role: BaseRole, kind: str) -> None:
    name = "style.safetensors" if kind == "lora" else "locon.safetensors"
    plain = image(role, step())
    assert differs(image(role, step(adapters=(Adapter(kind, name, 0.0),))), plain) < 1e-9
    assert differs(image(role, step(adapters=(Adapter(kind, name, 1.0),))), plain) > 1
    assert differs(image(role, step()), plain) < 1e-9  # removed again


def test_two_adapters_together_differ_from_each_alone(role: BaseRole) -> None:
    lora, locon = Adapter("lora", "style.safetensors", 0.8), Adapter("lycoris", "locon.safetensors", 0.8)
    both = image(role, step(adapters=(lora, locon)))
    assert differs(both, image(role, step(adapters=(lora,)))) > 0.5
    assert differs(both, image(role, step(adapters=(locon,)))) > 0.5


def test_a_textual_inversion_changes_its_token_for_its_request_only(role: BaseRole) -> None:
    plain = image(role, step())
    assert differs(image(role, step(inversions=("tinytoken.safetensors",))), plain) > 1
    assert differs(image(role, step()), plain) < 1e-9
    tokenizer = role.load("tiny").pipeline.tokenizer
    assert not any(token.content.startswith("tinytoken") for token in tokenizer.added_tokens_decoder.values())


def test_a_vae_is_part_of_the_loaded_model(role: BaseRole) -> None:
    plain, other = step(), step(vae="other-vae.safetensors")
    assert other.model_id == "tiny//vae=other-vae.safetensors" and plain.model_id == "tiny"
    with_vae = image(role, other)
    assert differs(with_vae, image(role, plain)) > 1
    assert differs(with_vae, image(role, other)) < 1e-9


def test_a_file_that_is_no_adapter_is_the_requests_fault(role: BaseRole) -> None:
    events = run(role, role.load("tiny"), step(adapters=(Adapter("lora", "broken.safetensors", 1.0),)))
    assert isinstance(events[-1], BadRequestError) and "lora: broken.safetensors" in events[-1].detail
    assert differs(image(role, step()), image(role, step())) < 1e-9  # and the model is still plain
    with pytest.raises(BadRequestError, match="vae: no vae named"):
        role.load("tiny//vae=missing.safetensors")
