"""Typed start-up settings, read once: the application builder's arguments.

Live knobs (queue limits, auth, default checkpoint, ...) are not here: they are settings rows
in DuckDB, changed through ``POST /api/settings`` and owned by the Store.
"""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_cache_dir
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


def default_data_dir() -> Path:
    return Path(user_cache_dir("enfugue-serve", appauthor=False))


class ReplicaOptions(BaseModel):
    """Deploy-time resources of one role; the defaults suit one machine."""

    model_config = ConfigDict(extra="forbid")

    num_replicas: int = Field(default=1, ge=1)
    num_cpus: float = Field(default=1.0, ge=0)
    # None: one GPU per replica when the Ray cluster has GPUs, none otherwise.
    num_gpus: float | None = Field(default=None, ge=0)


class AppArgs(BaseModel):
    """Arguments of ``build_app``; ``serve run serve_app.app:build_app data_dir=...`` fills them."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
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
    base: ReplicaOptions = Field(default_factory=ReplicaOptions)
    # Inpainting with a configured inpainter checkpoint (without one, the base inpaints), and
    # refining. Their replicas load a model only when such a job comes; a quarter CPU each keeps
    # the default app on two cores.
    inpainter: ReplicaOptions = Field(default_factory=lambda: ReplicaOptions(num_cpus=0.25))
    refiner: ReplicaOptions = Field(default_factory=lambda: ReplicaOptions(num_cpus=0.25))
    # Upscaling (Real-ESRGAN, Pillow) and background removal; with it the default app asks for
    # the two cores of a small machine, no more.
    upscaler: ReplicaOptions = Field(default_factory=lambda: ReplicaOptions(num_cpus=0.1))
    downloads: ReplicaOptions = Field(default_factory=lambda: ReplicaOptions(num_cpus=0.1))
    # The largest file a download may bring (None: no limit).
    max_download_bytes: int | None = Field(default=None, ge=1)
    # Authentication: None keeps the `auth` setting as stored; true or false sets it at start.
    auth: bool | None = None
    token_days: float = Field(default=30, gt=0)
    # Intermediate images a dead Planner left behind are removed once this old.
    intermediate_max_age_s: float = Field(default=3600, gt=0)
    # The default user's first password (else "enfugue"); applied only while it has none.
    initial_password: SecretStr | None = None

    @model_validator(mode="after")
    def _one_store(self) -> AppArgs:
        if self.store.num_replicas != 1:
            raise ValueError("store.num_replicas must be 1: only one process may open the DuckDB file")
        return self
