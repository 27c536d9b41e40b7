"""The application's Prometheus metrics, recorded through Ray's metrics.

Each process records into its node's Ray metrics agent, which Prometheus scrapes (the port is
in ``ray start --metrics-export-port`` or the head's ``/tmp/ray/prom_metrics_service_discovery.json``);
Ray prefixes every name with ``ray_``. ``serve_app/grafana_dashboard.json`` plots them. Outside a Ray
worker (the API tier's tests) recording is a no-op. A leaf module: Store, Planner and roles share it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ray.util import metrics

# Seconds: a model load on a GPU takes 1-30 s, a cold one from network storage minutes; a job
# may wait in the queue from milliseconds to many minutes.
LOAD_BOUNDARIES = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
QUEUE_BOUNDARIES = (0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)


@cache
def _metric(
    kind: type[Any], name: str, description: str, tag_keys: tuple[str, ...] = (), boundaries: tuple[float, ...] = ()
) -> Any:
    """One metric object per process, made on first use (Ray registers it then)."""
    extra = {"boundaries": list(boundaries)} if boundaries else {}
    return kind(name, description=description, tag_keys=tag_keys, **extra)


def queue_depth(queued: int) -> None:
    _metric(metrics.Gauge, "enfugue_queue_depth", "Invocations admitted and not started yet.").set(queued)


def invocation_ended(status: str) -> None:
    """``status``: completed, error or cancelled."""
    counter = _metric(metrics.Counter, "enfugue_invocations_total", "Invocations by final status.", ("status",))
    counter.inc(1, tags={"status": status})


def queue_seconds(seconds: float) -> None:
    histogram = _metric(
        metrics.Histogram, "enfugue_queue_seconds", "Time in the queue: admission to start (or to an end before it).",
        boundaries=QUEUE_BOUNDARIES,
    )  # fmt: skip
    histogram.observe(max(seconds, 0.0))


def denoising_steps(role: str, steps: int, seconds: float) -> None:
    """``steps`` denoising steps a ``role`` replica ran in ``seconds`` (one plan step)."""
    if steps <= 0:
        return
    tags = {"role": role}
    _metric(metrics.Counter, "enfugue_denoising_steps_total", "Denoising steps run.", ("role",)).inc(steps, tags=tags)
    if seconds > 0:
        rate = _metric(
            metrics.Gauge, "enfugue_denoising_steps_per_second", "Steps per second of a replica's latest job.",
            ("role",),
        )  # fmt: skip
        rate.set(steps / seconds, tags=tags)


def model_loaded(role: str, seconds: float) -> None:
    tags = {"role": role}
    _metric(metrics.Counter, "enfugue_model_loads_total", "Models loaded by role replicas.", ("role",)).inc(
        1, tags=tags
    )
    histogram = _metric(
        metrics.Histogram, "enfugue_model_load_seconds", "Seconds a model load took.", ("role",),
        boundaries=LOAD_BOUNDARIES,
    )  # fmt: skip
    histogram.observe(seconds, tags=tags)


def downloaded(size: int) -> None:
    _metric(metrics.Counter, "enfugue_download_bytes_total", "Bytes written by model downloads.").inc(size)
