"""The cluster's Serve config is valid for Serve and for the app builder's typed arguments."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

from serve_app.config import AppArgs

ROOT = Path(__file__).resolve().parents[2]


def test_serve_config_validates() -> None:
    config = yaml.safe_load((ROOT / "serve_app" / "serve_config.yaml").read_text())
    ServeDeploySchema(**config)
    (application,) = config["applications"]
    assert application["import_path"] == "serve_app.app:build_app"
    args = AppArgs(**application["args"])
    assert args.base.num_gpus == 1 and args.store.num_replicas == 1


def test_cluster_yaml_has_gpu_workers() -> None:
    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert cluster["available_node_types"]["gpu_worker"]["max_workers"] >= 1


def test_serve_run_gets_typed_builder_arguments() -> None:
    """`serve run serve_app.app:build_app key=value` validates into AppArgs by the real annotation."""
    import inspect

    from serve_app.app import build_app

    assert inspect.signature(build_app).parameters["args"].annotation is AppArgs
