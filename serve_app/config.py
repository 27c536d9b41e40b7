"""Typed start-up settings, read once: the application builder's arguments.

Live knobs (queue limits, auth, default checkpoint, ...) are not here: they are settings rows
in DuckDB, changed through ``POST /api/settings`` and owned by the Store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from platformdirs import user_cache_dir
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from serve_app.acceleration_schemas import Acceleration


def default_data_dir() -> Path:
    return Path(user_cache_dir("enfugue-serve", appauthor=False))


_ACTOR_KEYS = {"num_cpus", "num_gpus", "memory", "resources", "accelerator_type"}
# Options of a model role that are its constructor's, not Serve's.
_ROLE_KEYS = {"acceleration"}


class ReplicaOptions(BaseModel):
    """Serve deployment options of one role. Unset ones (None) keep the deployment's own
    defaults: one replica, and its decorator's request limit, health checks and shutdown."""

    model_config = ConfigDict(extra="forbid")

    # A fixed count, or "auto" / an autoscaling_config (Serve's own keys and validation).
    num_replicas: PositiveInt | Literal["auto"] | None = None
    autoscaling_config: dict[str, Any] | None = None
    max_ongoing_requests: PositiveInt | None = None
    graceful_shutdown_timeout_s: NonNegativeFloat | None = None
    health_check_period_s: PositiveFloat | None = None
    health_check_timeout_s: PositiveFloat | None = None
    # How jobs wait for a busy replica (Serve's RequestRouterConfig: backoff_multiplier, max_backoff_s, ...).
    request_router_config: dict[str, Any] | None = None
    # Placement. GPUs are declared, never guessed: 0 runs a model role on the CPU even on a
    # GPU node; a fraction shares one GPU between replicas.
    num_cpus: NonNegativeFloat = 1.0
    num_gpus: NonNegativeFloat = 0.0
    memory: PositiveInt | None = None  # bytes
    resources: dict[str, NonNegativeFloat] | None = None  # custom node resources
    accelerator_type: str | None = None  # e.g. "A10G": only nodes with that accelerator
    max_replicas_per_node: PositiveInt | None = None
    placement_group_bundles: list[dict[str, NonNegativeFloat]] | None = None
    placement_group_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] | None = None

    @field_validator("autoscaling_config", "request_router_config")
    @classmethod
    def _serve_schema(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        """Checked with Serve's own model of the option, unknown keys refused."""
        if value is not None:
            from ray.serve import config  # here: ray takes seconds to import

            schemas = {
                "autoscaling_config": config.AutoscalingConfig,
                "request_router_config": config.RequestRouterConfig,
            }
            schema = schemas[info.field_name]
            unknown = sorted(set(value) - set(schema.model_fields))
            if unknown:
                raise ValueError(f"unknown {info.field_name} keys {unknown}; see ray.serve.config.{schema.__name__}")
            schema(**value)
        return value

    @model_validator(mode="after")
    def _count_or_autoscaling(self) -> ReplicaOptions:
        if self.autoscaling_config is not None and isinstance(self.num_replicas, int):
            raise ValueError(f"num_replicas={self.num_replicas} with autoscaling_config: leave it unset or 'auto'")
        return self

    def deployment_options(self, runtime_env: dict[str, Any] | None = None) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options``: only the options that are set."""
        actor = self.model_dump(include=_ACTOR_KEYS, exclude_none=True)
        if runtime_env:
            actor["runtime_env"] = runtime_env
        serve = self.model_dump(exclude=_ACTOR_KEYS | _ROLE_KEYS, exclude_none=True)
        return {**serve, "ray_actor_options": actor}


class RoleOptions(ReplicaOptions):
    """A model role's deployment options, and how it runs its models."""

    acceleration: Acceleration = Field(default_factory=Acceleration)


class AppArgs(BaseModel):
    """Arguments of ``build_app``; ``serve run serve_app.app:build_app data_dir=...`` fills them."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
    # Where images, intermediates and model folders live, reachable from every node: a local path
    # (a shared mount) or an fsspec URL (s3://bucket/enfugue needs s3fs installed, gs:// gcsfs).
    # None: the data folder itself. data_dir stays node-local: the DuckDB file, generated configs,
    # and copies of the models a role loads from a storage that is not a local path (cache/).
    storage_url: str | None = None
    # Request bodies carry images as data URIs; anything larger is refused with 413.
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])
    # Pages of these origins may change state with the cookie (or with auth off); this server's
    # own pages always may (see serve_app/csrf.py). "*" in cors_origins lets pages read, not write.
    trusted_origins: list[str] = Field(default_factory=list)
    # The ingress, Store and Planner wait on I/O; a small CPU share lets a 2-core machine hold
    # them beside a base replica. Size them up in the Serve config of a cluster.
    ingress: ReplicaOptions = Field(default_factory=lambda: ReplicaOptions(num_cpus=0.1))
    store: ReplicaOptions = Field(default_factory=lambda: ReplicaOptions(num_cpus=0.1))
    planner: ReplicaOptions = Field(default_factory=lambda: ReplicaOptions(num_cpus=0.1))
    # Model roles run on the CPU unless their num_gpus is declared (the Serve config of a GPU
    # cluster, or `enfugue-serve run` on a machine with a GPU).
    base: RoleOptions = Field(default_factory=RoleOptions)
    # Inpainting with a configured inpainter checkpoint (without one, the base inpaints), and
    # refining. Their replicas load a model only when such a job comes; a quarter CPU each keeps
    # the default app on two cores.
    inpainter: RoleOptions = Field(default_factory=lambda: RoleOptions(num_cpus=0.25))
    refiner: RoleOptions = Field(default_factory=lambda: RoleOptions(num_cpus=0.25))
    # Upscaling (Real-ESRGAN, Pillow) and background removal; with it the default app asks for
    # the two cores of a small machine, no more.
    upscaler: RoleOptions = Field(default_factory=lambda: RoleOptions(num_cpus=0.1))
    downloads: ReplicaOptions = Field(default_factory=lambda: ReplicaOptions(num_cpus=0.1))
    # Model affinity: a job goes to a replica of its role that already holds its model (while one
    # is free within about a second); off, to any free replica. Off only to measure it (bench/affinity.py).
    model_affinity: bool = True
    # The largest file a download may bring (None: no limit).
    max_download_bytes: int | None = Field(default=None, ge=1)
    # Authentication: None keeps the `auth` setting as stored; true or false sets it at start.
    auth: bool | None = None
    token_days: float = Field(default=30, gt=0)
    # Intermediate images a dead Planner left behind are removed once this old.
    intermediate_max_age_s: float = Field(default=3600, gt=0)
    # The default user's first password (else "enfugue"); applied only while it has none.
    initial_password: SecretStr | None = None

    @field_validator("storage_url")
    @classmethod
    def _known_storage(cls, value: str | None) -> str | None:
        if value is not None:
            from fsspec import get_filesystem_class  # here: only to check that the scheme is served
            from fsspec.core import split_protocol

            protocol = split_protocol(value)[0] or "file"
            try:
                get_filesystem_class(protocol)
            except (ImportError, ValueError) as error:
                raise ValueError(f"storage_url {value!r:.200}: {error}") from error
        return value

    @model_validator(mode="after")
    def _one_store(self) -> AppArgs:
        if self.store.num_replicas not in (None, 1) or self.store.autoscaling_config is not None:
            raise ValueError(
                f"store.num_replicas must be 1 (got {self.store.num_replicas!r}) and store.autoscaling_config "
                "unset: only one process may open the DuckDB file"
            )
        return self
