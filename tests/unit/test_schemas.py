"""Request validation: every field checked, messages name the field and what is allowed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serve_app.envelope import validation_detail
from serve_app.field_types import SCHEDULERS
from serve_app.schemas import InvokeRequest, SettingsUpdate
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
        ({"mask": "data:image/png;base64,AAAA"}, "mask: does not contain an image Pillow can read"),
        ({"mask": data_uri(gradient(64, 48))}, "mask: needs an `image` to inpaint"),
        ({"fit": "fill"}, "fit: Input should be 'actual', 'stretch', 'cover' or 'contain'"),
        ({"anchor": "middle"}, "anchor: Input should be 'top-left'"),
        ({"invert_mask": "yes"}, "invert_mask: Input should be a valid boolean"),
        ({"inpainter_size": 100}, "inpainter_size: must be a multiple of 8"),
        ({"nodes": [{"x": 0}]}, "nodes.0.y: Field required"),
        (
            {"outscale": 2, "upscale_diffusion_controlnet": "tile"},
            "upscale_diffusion_controlnet: applies to re-diffusing upscaled images; pass upscale_diffusion true",
        ),
        (
            {"outscale": 2, "upscale_diffusion": True, "upscale_diffusion_controlnet": ["tile", "inpaint"]},
            "upscale_diffusion_controlnet: inpaint needs a mask, which an upscaling pass has not",
        ),
        (
            {"outscale": 2, "upscale_diffusion": True, "upscale_diffusion_controlnet": ["tile", "tile"]},
            "upscale_diffusion_controlnet: 2 values for 1 upscaling pass(es)",
        ),
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
    request = InvokeRequest.model_validate({"prompt": "a", "controlnet": None, "remove_background": False})
    assert request.prompt == "a"


def test_the_canvas_takes_the_image_size_unless_given() -> None:
    image = data_uri(gradient(64, 48))
    assert InvokeRequest.model_validate({"image": image}).image_file()[1] == (64, 48)
    # Another size fits the image onto the canvas (fit, anchor): no longer an error.
    assert InvokeRequest.model_validate({"image": image, "height": 64}).height == 64
    assert "image: its width 60 is not a multiple of 8" in _detail({"image": data_uri(gradient(60, 48))})
    assert "strength: 0.01 x num_inference_steps 40 leaves no step" in _detail({"image": image, "strength": 0.01})
    # Inpainting runs the whole schedule unless told otherwise: one step is enough.
    one_step = {"image": image, "mask": image, "num_inference_steps": 1}
    assert InvokeRequest.model_validate(one_step).strength is None
    assert "mask: is 48x48 but image is 64x48" in _detail({**one_step, "mask": data_uri(gradient(48, 48))})


def test_the_summary_keeps_image_sizes_not_images() -> None:
    image = data_uri(gradient(64, 48))
    summary = InvokeRequest.model_validate({"image": image, "mask": image, "invert_mask": True}).summary()
    assert summary == {"image": {"width": 64, "height": 48}, "mask": {"width": 64, "height": 48}, "invert_mask": True}


def test_the_body_must_be_an_object() -> None:
    assert _detail([1, 2]) == "the body must be a JSON object"  # type: ignore[arg-type]


def test_settings_update_changes_only_given_keys() -> None:
    assert SettingsUpdate.model_validate({"cache_mode": None}).changes() == {"cache_mode": None}
    with pytest.raises(ValidationError, match="safe: may not be null"):
        SettingsUpdate.model_validate({"safe": None})
    with pytest.raises(ValidationError, match="precision"):
        SettingsUpdate.model_validate({"precision": "quarter"})
