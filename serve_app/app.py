"""The application builder: binds Store, the model roles, Planner and Ingress into one Serve application.

``serve run serve_app.app:build_app data_dir=/some/where`` and the ``enfugue-serve`` command
both come through here.
"""

# No `from __future__ import annotations` here: Serve reads build_app's annotation at run time
# to validate `serve run ... key=value` arguments into AppArgs, and a string would not do.
import ray
from ray.serve import Application

from deployments.base import Base, Inpainter, Refiner
from deployments.downloads import Downloads
from deployments.planner import Planner
from deployments.upscaler import Upscaler
from serve_app import __version__
from serve_app.config import AppArgs, ReplicaOptions
from serve_app.ingress import Ingress
from storage.files import DataPaths
from storage.store import Store

# Model roles never reach a model hub; a stray download attempt fails at once instead of hanging.
_OFFLINE = {"env_vars": {"HF_HUB_OFFLINE": "1"}}


def _gpus(options: ReplicaOptions) -> float:
    if options.num_gpus is not None:
        return options.num_gpus
    has_gpus = ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0
    return 1.0 if has_gpus else 0.0


def build_app(args: AppArgs) -> Application:
    data_dir = str(DataPaths(args.data_dir).ensure().root)
    initial_password = args.initial_password.get_secret_value() if args.initial_password else None
    store = Store.options(ray_actor_options={"num_cpus": args.store.num_cpus}).bind(
        data_dir, __version__, args.token_days, initial_password, args.auth, args.intermediate_max_age_s
    )
    roles = {
        name: deployment.options(
            num_replicas=options.num_replicas,
            ray_actor_options={"num_cpus": options.num_cpus, "num_gpus": _gpus(options), "runtime_env": _OFFLINE},
        ).bind(data_dir)
        for name, deployment, options in (
            ("base", Base, args.base),
            ("inpainter", Inpainter, args.inpainter),
            ("refiner", Refiner, args.refiner),
            ("upscaler", Upscaler, args.upscaler),
        )  # fmt: skip
    }
    planner = Planner.options(
        num_replicas=args.planner.num_replicas, ray_actor_options={"num_cpus": args.planner.num_cpus}
    ).bind(store, roles, data_dir, __version__)
    downloads = Downloads.options(ray_actor_options={"num_cpus": args.downloads.num_cpus}).bind(
        data_dir, args.max_download_bytes
    )
    return Ingress.options(
        num_replicas=args.ingress.num_replicas, ray_actor_options={"num_cpus": args.ingress.num_cpus}
    ).bind(store, planner, downloads, args, __version__)
