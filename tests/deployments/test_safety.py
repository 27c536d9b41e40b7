"""The Stable Diffusion safety checker, loaded from a folder laid out as a pipeline ships it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from deployments.safety import SafetyCheckerError, flagged, load_safety_checker
from tests.tiny_filters import write_tiny_safety_checker

IMAGES = [Image.new("RGB", (64, 48), colour) for colour in ((255, 0, 0), (0, 128, 255), (20, 20, 20))]


@pytest.mark.parametrize("flag_everything", [True, False], ids=["flags-all", "flags-none"])
def test_checker_flags_as_configured(tmp_path: Path, flag_everything: bool) -> None:
    checker = load_safety_checker(write_tiny_safety_checker(tmp_path / "safety", flag_everything))
    verdicts = flagged(checker, IMAGES, torch.device("cpu"), torch.float32)
    assert verdicts == [flag_everything] * len(IMAGES)


def test_no_images_no_verdicts(tmp_path: Path) -> None:
    checker = load_safety_checker(write_tiny_safety_checker(tmp_path / "safety", flag_everything=True))
    assert flagged(checker, [], torch.device("cpu"), torch.float32) == []


def test_missing_folder_names_what_it_needs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no safety checker at .*safety_checker, feature_extractor"):
        load_safety_checker(tmp_path / "absent")


def test_unloadable_weights_are_a_clear_error(tmp_path: Path) -> None:
    folder = write_tiny_safety_checker(tmp_path / "safety", flag_everything=False)
    for weights in (folder / "safety_checker").glob("*.safetensors"):
        weights.write_bytes(b"truncated")
    with pytest.raises(SafetyCheckerError, match=r"could not be loaded"):
        load_safety_checker(folder)


@pytest.mark.parametrize(
    ("safe", "flag_everything", "withheld"), [(True, True, True), (True, False, False), (False, True, False)]
)
def test_withheld_outputs_are_listed_as_nsfw_and_not_stored(
    demo_data_dir: Path, safe: bool, flag_everything: bool, withheld: bool
) -> None:
    """Through the API on the real Base role: the checker looks at the outputs when ``safe`` is on."""
    from deployments.base import BaseRole
    from storage.files import DataPaths
    from tests.api.test_invocations import finished, invoke
    from tests.conftest import serve_locally

    paths = DataPaths(demo_data_dir)
    write_tiny_safety_checker(paths.safety, flag_everything)
    with serve_locally(demo_data_dir, role=BaseRole(str(demo_data_dir))) as client:
        assert client.post("/api/settings", json={"safe": safe}).status_code == 200
        status = finished(client, invoke(client, {"num_inference_steps": 2, "samples": 2, "seed": 1})["uuid"])
        assert status["status"] == "completed", status
        if withheld:
            assert status["images"] == ["nsfw", "nsfw"]
            assert list(paths.images.iterdir()) == []
            placeholder = client.get("/api/invocation/nsfw")
            assert placeholder.status_code == 200 and placeholder.headers["content-type"] == "image/svg+xml"
            assert b"NSFW" in placeholder.content
        else:
            assert [path.split("/")[0] for path in status["images"]] == ["images", "images"]
            for path in status["images"]:
                image = Image.open(io.BytesIO(client.get(f"/api/invocation/{path}").content))
                assert image.size == (64, 64)
