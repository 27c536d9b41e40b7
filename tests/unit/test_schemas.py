"""Request validation: every field checked, messages name the field and what is allowed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serve_app.envelope import validation_detail
from serve_app.schemas import SCHEDULERS, InvokeRequest, SettingsUpdate
from tests.images import data_uri, gradient


def _detail(body: dict) -> str:
    with pytest.raises(ValidationError) as raised:
        InvokeRequest.model_validate(body)
    return "; ".join(validation_detail(error) for error in raised.value.errors())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"num_inference_steps": -1}, "num_inference_steps: Input should be greater than or equal to 1 (got -1)"),
        ({"width": 65}, "width: must be a multiple of 8 between 64 and 4096, got 65"),
        ({"height": 8192}, "height: Input should be less than or equal to 4096"),
        ({"scheduler": "euler"}, "scheduler: Input should be 'ddim'"),
        ({"prompt": 5}, "prompt: Input should be a valid string"),
        ({"samples": 0}, "samples: Input should be greater than or equal to 1"),
        ({"guidance_scale": "lots"}, "guidance_scale: Input should be a valid number"),
        ({"seed": -3}, "seed: Input should be greater than or equal to 0"),
        ({"strength": 1.5}, "strength: Input should be less than or equal to 1"),
        ({"image": "data:image/png;base64,AAAA"}, "image: does not contain an image Pillow can read"),
        ({"image": "data:text/plain;base64,aGVsbG8="}, "image: does not contain an image"),
        ({"image": "data:image/png;base64,@@@"}, "image: is not valid base64"),
        ({"image": "/etc/passwd"}, "image: is not a data URI"),
        ({"mask": "data:image/png;base64,AAAA"}, "mask: not supported yet"),
        ({"nodes": [{"x": 0}]}, "nodes: not supported yet"),
        ({"upscale_diffusion": True}, "upscale_diffusion: not supported yet"),
        ({"layers": []}, "layers: not supported (an Enfugue 0.3 parameter)"),
        ({"colour": "blue"}, "colour: unknown parameter"),
    ],
)
def test_invalid_fields_are_named(body: dict, expected: str) -> None:
    assert expected in _detail(body)


def test_all_fourteen_schedulers_are_accepted() -> None:
    assert len(SCHEDULERS) == 14
    for name in SCHEDULERS:
        assert InvokeRequest.model_validate({"scheduler": name}).scheduler == name


def test_numbers_in_strings_are_numbers_but_prompts_stay_strings() -> None:
    request = InvokeRequest.model_validate({"width": "64", "num_inference_steps": "4", "prompt": "4"})
    assert (request.width, request.num_inference_steps, request.prompt) == (64, 4, "4")


def test_null_or_false_for_unbuilt_features_asks_for_nothing() -> None:
    request = InvokeRequest.model_validate({"prompt": "a", "mask": None, "remove_background": False})
    assert request.prompt == "a"


def test_img2img_size_must_match_or_be_taken_from_the_image() -> None:
    image = data_uri(gradient(64, 48))
    assert InvokeRequest.model_validate({"image": image}).image_file()[1] == (64, 48)
    assert "image: is 64x48 but height is 64" in _detail({"image": image, "height": 64})
    assert "image: its width 60 is not a multiple of 8" in _detail({"image": data_uri(gradient(60, 48))})
    assert "strength: 0.01 x num_inference_steps 40 leaves no step" in _detail({"image": image, "strength": 0.01})


def test_the_body_must_be_an_object() -> None:
    assert _detail([1, 2]) == "the body must be a JSON object"  # type: ignore[arg-type]


def test_settings_update_changes_only_given_keys() -> None:
    assert SettingsUpdate.model_validate({"cache_mode": None}).changes() == {"cache_mode": None}
    with pytest.raises(ValidationError, match="safe: may not be null"):
        SettingsUpdate.model_validate({"safe": None})
    with pytest.raises(ValidationError, match="precision"):
        SettingsUpdate.model_validate({"precision": "quarter"})
