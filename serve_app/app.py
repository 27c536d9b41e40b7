"""The application builder: binds Store, the model roles, Planner and Ingress into one Serve application.

``serve run serve_app.app:build_app data_dir=/some/where`` and the ``enfugue-serve`` command
both come through here.
"""

# No `from __future__ import annotations` here: Serve reads build_app's annotation at run time
# to validate `serve run ... key=value` arguments into AppArgs, and a string would not do.
from collections.abc import Mapping
from typing import Any

from ray.serve import Application, Deployment

from deployments.base import Base, Inpainter, Refiner
from deployments.downloads import Downloads
from deployments.planner import GRACEFUL_SHUTDOWN_S, HAND_BACK_MARGIN_S, Planner
from deployments.upscaler import Upscaler
from serve_app import __version__
from serve_app.config import AppArgs
from serve_app.ingress import Ingress
from storage.files import DataPaths
from storage.store import Store

# Model roles never reach a model hub; a stray download attempt fails at once instead of hanging.
# GPU use is declared: Ray hides the node's GPUs from a replica that declared none (by default
# it leaves CUDA_VISIBLE_DEVICES alone at num_gpus=0, and torch would find the GPU anyway).
_MODEL_ENV = {"env_vars": {"HF_HUB_OFFLINE": "1", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1"}}


# The deployment of each model role (``Step.role`` names them).
ROLES = {"base": Base, "inpainter": Inpainter, "refiner": Refiner, "upscaler": Upscaler}


def build_app(args: AppArgs) -> Application:
    return bind_app(args, ROLES)


def bind_app(args: AppArgs, role_deployments: Mapping[str, Deployment], role_args: tuple[Any, ...] = ()) -> Application:
    """The application with these model role deployments (benchmarks bind fake ones, with
    ``role_args``; the real ones take the data folder and the storage URL; each its role's
    ``acceleration``). Every deployment's options come from
    ``args``: those set, over its decorator's defaults."""
    data_dir = str(DataPaths(args.data_dir).ensure().root)
    initial_password = args.initial_password.get_secret_value() if args.initial_password else None
    store = Store.options(**args.store.deployment_options()).bind(
        data_dir,
        __version__,
        args.token_days,
        initial_password,
        args.auth,
        args.intermediate_max_age_s,
        storage_url=args.storage_url,
    )
    role_args = role_args or (data_dir, args.storage_url)
    roles = {}
    for name, deployment in role_deployments.items():
        options = getattr(args, name)
        deployment = deployment.options(**options.deployment_options(_MODEL_ENV))
        roles[name] = deployment.bind(*role_args, acceleration=options.acceleration)
    # A stopping Planner lets the jobs on a role run on until shortly before Serve would kill it.
    grace = args.planner.graceful_shutdown_timeout_s
    planner = Planner.options(**args.planner.deployment_options()).bind(
        store, roles, data_dir, __version__, args.model_affinity, storage_url=args.storage_url,
        finish_within_s=max(0.0, (GRACEFUL_SHUTDOWN_S if grace is None else grace) - HAND_BACK_MARGIN_S),
    )  # fmt: skip
    downloads = Downloads.options(**args.downloads.deployment_options()).bind(
        data_dir, args.max_download_bytes, storage_url=args.storage_url
    )
    return Ingress.options(**args.ingress.deployment_options()).bind(store, planner, downloads, args, __version__)
