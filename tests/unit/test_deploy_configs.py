"""The cluster's Serve config and cluster launcher config are valid for Ray's own schemas, and the
Serve config's options reach the deployments through the app builder's typed arguments."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.serve.schema import ServeDeploySchema

from serve_app.config import AppArgs
from tests.unit.test_app_options import MODEL_DEPLOYMENTS, deployments_of

ROOT = Path(__file__).resolve().parents[2]


def _serve_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "serve_app" / "serve_config.yaml").read_text())


def _rayservice() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "serve_app" / "rayservice.yaml").read_text())


def _cluster() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_serve_config_validates() -> None:
    config = _serve_config()
    ServeDeploySchema(**config)
    (application,) = config["applications"]
    assert application["import_path"] == "serve_app.app:build_app"
    args = AppArgs(**application["args"])
    assert args.store.num_replicas is None and args.store.autoscaling_config is None  # the one Store
    for role in (args.base, args.inpainter, args.refiner, args.upscaler):
        assert role.num_gpus == 1 and role.graceful_shutdown_timeout_s == 600
        assert role.autoscaling_config is not None and role.autoscaling_config["target_ongoing_requests"] == 1


def test_serve_config_options_reach_the_deployments(tmp_path: Path) -> None:
    (application,) = _serve_config()["applications"]
    deployments = deployments_of(AppArgs(**{**application["args"], "data_dir": tmp_path}))
    base = deployments["Base"]
    scaling = base._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas, scaling.target_ongoing_requests) == (1, 5, 1)
    assert (scaling.upscale_delay_s, scaling.downscale_delay_s) == (10, 600)
    assert base._deployment_config.max_ongoing_requests == 1
    assert base._deployment_config.graceful_shutdown_timeout_s == 600
    assert (base.ray_actor_options["num_gpus"], base.ray_actor_options["accelerator_type"]) == (1, "A10G")
    for name in MODEL_DEPLOYMENTS[1:]:
        assert deployments[name]._deployment_config.autoscaling_config.min_replicas == 0
    for name in ("Ingress", "Store", "Planner", "Downloads"):
        assert deployments[name].ray_actor_options["resources"] == {"enfugue_head": 0.01}
    assert deployments["Store"]._deployment_config.num_replicas == 1
    # A replaced Planner may let its jobs on a model role finish as long as the roles may.
    assert deployments["Planner"]._deployment_config.graceful_shutdown_timeout_s == 600
    assert deployments["Planner"].init_kwargs["finish_within_s"] == 590  # 10 s kept to hand the rest back
    assert deployments["Ingress"]._deployment_config.num_replicas == 2


def test_cluster_yaml_validates_against_rays_schema() -> None:
    cluster = _cluster()
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cluster, schema)
    # And as `ray up` sees it: the provider's defaults filled in, then Ray's own validation.
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cluster)))


def test_cluster_has_a_cpu_head_and_gpu_workers_from_zero() -> None:
    cluster = _cluster()
    types = cluster["available_node_types"]
    head = types.pop(cluster["head_node_type"])
    assert "GPU" not in head["resources"] and head["node_config"]["InstanceType"].startswith("m")
    assert types and all(node["min_workers"] == 0 and node["max_workers"] >= 1 for node in types.values())
    # The CPU roles' custom resource is the head's.
    (application,) = _serve_config()["applications"]
    for role in ("ingress", "store", "planner", "downloads"):
        assert set(application["args"][role]["resources"]) <= set(head["resources"])


def test_cluster_installs_the_package_and_deploys_the_serve_config() -> None:
    cluster = _cluster()
    installs = cluster["head_setup_commands"] + cluster["worker_setup_commands"]
    assert len(installs) == 2 and all("pip install" in c and "enfugue-serve" in c for c in installs)
    (mounted,) = (remote for remote, local in cluster["file_mounts"].items() if local == "serve_app/serve_config.yaml")
    assert f"serve deploy {mounted}" in cluster["head_start_ray_commands"]


def test_serve_run_gets_typed_builder_arguments() -> None:
    """`serve run serve_app.app:build_app key=value` validates into AppArgs by the real annotation."""
    import inspect

    from serve_app.app import build_app

    assert inspect.signature(build_app).parameters["args"].annotation is AppArgs


def test_the_dashboard_plots_only_metrics_the_app_records() -> None:
    dashboard = json.loads((ROOT / "serve_app" / "grafana_dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    plotted = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for expr in expressions
        for name in re.findall(r"ray_(enfugue_\w+)", expr)
    }
    recorded = set(re.findall(r'"(enfugue_\w+)"', (ROOT / "serve_app" / "metrics.py").read_text()))
    assert plotted == recorded, plotted ^ recorded
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def _strict(schema: Any) -> Any:
    """The CRD schema refusing fields it does not name, as ``kubectl apply --validate=strict`` does
    (the API server would drop them silently: a misspelt field would be lost)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    closed = "properties" in schema and "additionalProperties" not in schema
    if closed and not schema.get("x-kubernetes-preserve-unknown-fields"):
        strict["additionalProperties"] = False
    return strict


def test_the_rayservice_manifest_validates_against_kuberays_crd() -> None:
    manifest = _rayservice()
    crd = yaml.safe_load((ROOT / "tests" / "data" / "ray.io_rayservices.yaml").read_text())
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == ("ray.io", manifest["kind"])
    (version,) = [v for v in crd["spec"]["versions"] if f"ray.io/{v['name']}" == manifest["apiVersion"]]
    validator = jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))
    validator.validate(manifest)
    misspelt = copy.deepcopy(manifest)
    misspelt["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplica"] = 0
    with pytest.raises(jsonschema.ValidationError, match="minReplica"):
        validator.validate(misspelt)


def test_the_rayservice_deploys_the_serve_config_on_a_cpu_head_and_gpu_workers_from_zero() -> None:
    manifest = _rayservice()
    embedded = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert embedded == _serve_config()  # the same application, options and all
    ServeDeploySchema(**embedded)
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__ and cluster["enableInTreeAutoscaling"] is True
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert json.loads(json.loads(head["rayStartParams"]["resources"])) == {"enfugue_head": 1}
    (head_container,) = head["template"]["spec"]["containers"]
    assert {"containerPort": embedded["http_options"]["port"], "name": "serve"} in head_container["ports"]
    (workers,) = cluster["workerGroupSpecs"]
    assert (workers["replicas"], workers["minReplicas"]) == (0, 0)
    (worker,) = workers["template"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    (application,) = embedded["applications"]
    accelerator = application["args"]["base"]["accelerator_type"]
    assert json.loads(json.loads(workers["rayStartParams"]["resources"])) == {f"accelerator_type:{accelerator}": 1}
    data_dir = application["args"]["data_dir"]
    for spec in (head["template"]["spec"], workers["template"]["spec"]):
        (container,) = spec["containers"]
        assert {"name": "enfugue-data", "mountPath": data_dir} in container["volumeMounts"]
