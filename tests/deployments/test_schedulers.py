"""Every scheduler runs every step count the API admits, up to its maximum."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch

from deployments.model_configs import ensure_config_folder
from deployments.pipelines import make_scheduler
from serve_app.field_types import MAX_STEPS, SCHEDULERS


@pytest.fixture(scope="module")
def sd15_scheduler_config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = ensure_config_folder("v1", tmp_path_factory.mktemp("configs"))
    return json.loads((Path(folder) / "scheduler" / "scheduler_config.json").read_text())


@pytest.mark.parametrize("name", [None, *SCHEDULERS])
def test_the_most_steps_allowed_run_to_the_end(sd15_scheduler_config: dict, name: str | None) -> None:
    scheduler = make_scheduler(sd15_scheduler_config, name, seed=0)
    scheduler.set_timesteps(MAX_STEPS)
    assert int(scheduler.timesteps.max()) < scheduler.config.num_train_timesteps
    latents = torch.zeros(1, 4, 2, 2)
    # The ancestral and SDE schedulers draw noise; the others take no generator.
    noise = {"generator": torch.Generator().manual_seed(0)}
    extra = noise if "generator" in inspect.signature(scheduler.step).parameters else {}
    for timestep in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, timestep)
        latents = scheduler.step(torch.zeros_like(model_input), timestep, latents, **extra).prev_sample
    assert torch.isfinite(latents).all()
