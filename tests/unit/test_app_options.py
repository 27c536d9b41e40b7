"""Per-role Serve options reach the deployments through the typed builder; nothing is guessed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from serve_app.config import AppArgs, ReplicaOptions


def deployments_of(args: AppArgs) -> dict[str, Any]:
    """The finished deployments ``serve.run`` would deploy, by name (building them needs no Ray)."""
    from ray.serve._private.build_app import build_app as build_deployments  # what serve.run uses

    from serve_app.app import build_app

    built = build_deployments(build_app(args), name="enfugue", make_deployment_handle=lambda d, _: d.name)
    return {deployment.name: deployment for deployment in built.deployments}


MODEL_DEPLOYMENTS = ("Base", "Inpainter", "Refiner", "Upscaler")


def test_defaults_keep_the_decorators_options_and_declare_no_gpu(tmp_path: Path) -> None:
    from deployments.base import Base

    deployments = deployments_of(AppArgs(data_dir=tmp_path))
    assert set(deployments) == {"Ingress", "Store", "Planner", "Downloads", *MODEL_DEPLOYMENTS}
    decorated = Base._deployment_config
    for name in MODEL_DEPLOYMENTS:
        config, actor = deployments[name]._deployment_config, deployments[name].ray_actor_options
        assert actor["num_gpus"] == 0, name
        assert actor["runtime_env"]["env_vars"]["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] == "1"
        assert (config.num_replicas, config.autoscaling_config, config.max_ongoing_requests) == (1, None, 1)
        assert config.health_check_period_s == decorated.health_check_period_s
        assert config.graceful_shutdown_timeout_s == decorated.graceful_shutdown_timeout_s
    assert deployments["Store"]._deployment_config.max_ongoing_requests == 1000
    assert deployments["Ingress"]._deployment_config.max_ongoing_requests == 200
    assert deployments["Planner"].ray_actor_options == {"num_cpus": 0.1, "num_gpus": 0}


def test_only_the_options_that_are_set_are_passed() -> None:
    assert ReplicaOptions().deployment_options() == {"ray_actor_options": {"num_cpus": 1.0, "num_gpus": 0.0}}
    options = ReplicaOptions(num_replicas="auto", resources={"enfugue_head": 0.01}, memory=2**30)
    assert options.deployment_options({"env_vars": {"A": "1"}}) == {
        "num_replicas": "auto",
        "ray_actor_options": {
            "num_cpus": 1.0,
            "num_gpus": 0.0,
            "memory": 2**30,
            "resources": {"enfugue_head": 0.01},
            "runtime_env": {"env_vars": {"A": "1"}},
        },
    }


def test_every_option_reaches_its_deployment(tmp_path: Path) -> None:
    upscaler = {
        "num_cpus": 2,
        "num_gpus": 0.5,
        "accelerator_type": "L4",
        "max_replicas_per_node": 2,
        "health_check_period_s": 5,
        "health_check_timeout_s": 7,
        "graceful_shutdown_timeout_s": 900,
        "autoscaling_config": {"min_replicas": 0, "max_replicas": 3, "upscale_delay_s": 1, "downscale_delay_s": 2},
    }
    planner = {"num_replicas": 3, "max_ongoing_requests": 50, "placement_group_bundles": [{"CPU": 1}]}
    deployments = deployments_of(AppArgs(data_dir=tmp_path, upscaler=upscaler, planner=planner))
    config, actor = deployments["Upscaler"]._deployment_config, deployments["Upscaler"].ray_actor_options
    scaling = config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas, scaling.upscale_delay_s, scaling.downscale_delay_s) == (
        0,
        3,
        1,
        2,
    )
    assert (config.health_check_period_s, config.health_check_timeout_s, config.graceful_shutdown_timeout_s) == (
        5,
        7,
        900,
    )
    assert (actor["num_cpus"], actor["num_gpus"], actor["accelerator_type"]) == (2, 0.5, "L4")
    assert deployments["Upscaler"]._replica_config.max_replicas_per_node == 2
    assert deployments["Upscaler"]._deployment_config.max_ongoing_requests == 1  # the role's own limit
    planner_config = deployments["Planner"]._deployment_config
    assert (planner_config.num_replicas, planner_config.max_ongoing_requests) == (3, 50)
    assert deployments["Planner"]._replica_config.placement_group_bundles == [{"CPU": 1}]


@pytest.mark.parametrize(
    ("options", "detail"),
    [
        ({"num_replicas": 2, "autoscaling_config": {"max_replicas": 2}}, "leave it unset or 'auto'"),
        ({"autoscaling_config": {"max_replica": 2}}, "unknown autoscaling_config keys ['max_replica']"),
        ({"autoscaling_config": {"min_replicas": 3, "max_replicas": 2}}, "max_replicas (2) must be greater"),
        ({"num_replicas": 0}, "greater than 0"),
        ({"num_gpu": 1}, "Extra inputs are not permitted"),
        ({"num_gpus": -1}, "greater than or equal to 0"),
        ({"placement_group_strategy": "TIGHT"}, "'PACK', 'SPREAD', 'STRICT_PACK' or 'STRICT_SPREAD'"),
        ({"acceleration": {"attention": "flash"}}, "'sdpa' or 'xformers'"),
        ({"acceleration": {"half": "float8"}}, "'float16' or 'bfloat16'"),
        ({"acceleration": {"compiled": True}}, "Extra inputs are not permitted"),
        ({"acceleration": {"vae_tiling_above": -1}}, "greater than or equal to 0"),
    ],
)
def test_invalid_options_are_refused(options: dict[str, Any], detail: str) -> None:
    with pytest.raises(ValidationError) as raised:
        AppArgs(base=options)
    assert detail in str(raised.value)


@pytest.mark.parametrize("store", [{"num_replicas": 2}, {"num_replicas": "auto"}, {"autoscaling_config": {}}])
def test_the_store_has_exactly_one_replica(store: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="only one process may open the DuckDB file"):
        AppArgs(store=store)


def test_a_model_role_may_hold_fewer_or_more_jobs_than_the_default() -> None:
    """Its replica runs one at a time whatever the limit, the jobs waiting in it taken fairly (the
    shell's turns); 1 leaves the next job free to go to whichever replica frees first, more commit
    jobs to a replica ahead of another user's later one (deployments/turns.py)."""
    assert AppArgs(refiner={"max_ongoing_requests": 1}).refiner.max_ongoing_requests == 1
    assert AppArgs(base={"max_ongoing_requests": 3}).base.max_ongoing_requests == 3


def test_the_cli_declares_the_gpus_of_the_cluster_it_starts(tmp_path: Path) -> None:
    from serve_app.cli import MODEL_ROLES, with_local_gpus

    args = AppArgs(data_dir=tmp_path)
    assert with_local_gpus(args, 0) == args
    shared = with_local_gpus(args, 1)
    assert [getattr(shared, role).num_gpus for role in MODEL_ROLES] == [0.25] * 4
    assert shared.ingress.num_gpus == 0 and shared.base.num_cpus == args.base.num_cpus
    assert [getattr(with_local_gpus(args, 8), role).num_gpus for role in MODEL_ROLES] == [1.0] * 4


def test_a_storage_url_the_cli_cannot_serve_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from serve_app.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["run", "--data-dir", str(tmp_path), "--storage-url", "nosuchscheme://bucket/enfugue"])
    assert exited.value.code == 2
    assert "storage_url 'nosuchscheme://bucket/enfugue'" in capsys.readouterr().err


def test_a_fresh_storage_elsewhere_gets_the_demo_checkpoint_once() -> None:
    import fsspec

    from serve_app.cli import ensure_a_checkpoint
    from storage.shared import SharedStorage

    storage = SharedStorage.from_url("memory://fresh-storage/enfugue").ensure()
    try:
        ensure_a_checkpoint(storage)
        assert storage.list_models("checkpoint") == ["tiny-random-demo-noise-only"]
        assert storage.fs.isfile(storage.path("checkpoint", "tiny-random-demo-noise-only/unet/config.json"))
        written = storage.fs.info(storage.path("checkpoint", "tiny-random-demo-noise-only/model_index.json"))
        ensure_a_checkpoint(storage)  # one is there: nothing is written again
        assert storage.fs.info(storage.path("checkpoint", "tiny-random-demo-noise-only/model_index.json")) == written
    finally:
        fsspec.filesystem("memory").rm("/fresh-storage", recursive=True)


def test_each_model_role_gets_its_own_acceleration_and_serve_never_sees_it(tmp_path: Path) -> None:
    """As a Serve config sets it: ``base: {num_gpus: 1, acceleration: {...}}``."""
    from serve_app.acceleration_schemas import Acceleration

    base = {"num_gpus": 1, "acceleration": {"half": "bfloat16", "compile": True, "vae_tiling_above": 0}}
    args = AppArgs(data_dir=tmp_path, base=base)
    assert "acceleration" not in args.base.deployment_options()
    deployments = deployments_of(args)
    chosen = Acceleration(half="bfloat16", compile=True, vae_tiling_above=0)
    assert deployments["Base"].init_kwargs == {"acceleration": chosen}
    for name in ("Inpainter", "Refiner", "Upscaler"):
        assert deployments[name].init_kwargs == {"acceleration": Acceleration()}, name
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        AppArgs(planner={"acceleration": {}})  # not a model role
