"""Generated requests for every operation of /openapi.json, over real HTTP: no 5xx, ever, and
every status answered is one the description lists.

Bounded here (FUZZ_EXAMPLES per operation, 10 by default); ``make fuzz`` runs the long one.
The server is the real ingress and Store with the fake model role, in this process.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from serve_app.config import AppArgs
from serve_app.dependencies import Services
from serve_app.ingress import create_api
from tests.conftest import serve_over_http

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
# Another server to fuzz instead of the one this module starts (bench/fuzz_under_load.py).
TARGET = os.environ.get("FUZZ_URL")
STATUSES: Counter[int] = Counter()

# The description does not depend on the services behind it.
_DESCRIBED = Services(store=None, planner=None, args=AppArgs(data_dir=Path("/nonexistent")), version="fuzz")
schema = schemathesis.openapi.from_dict(create_api(_DESCRIBED).openapi())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[tuple[str, object]]:
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if TARGET is not None:
        yield TARGET, None
    else:
        yield from _in_process(tmp_path_factory)
    if reporter is not None:
        counts = ", ".join(f"{status}: {count}" for status, count in sorted(STATUSES.items()))
        reporter.write_line(f"\nfuzzing: {sum(STATUSES.values())} cases; statuses {counts}")


def _in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    from storage.files import DataPaths
    from tests.fake_role import DEMO_NAME, FakeRole, write_fake_checkpoint

    paths = DataPaths(tmp_path_factory.mktemp("fuzz")).ensure()
    write_fake_checkpoint(paths.models("checkpoint") / DEMO_NAME)
    with serve_over_http(paths.root, FakeRole(step_seconds=0, checkpoints=paths.models("checkpoint"))) as (url, local):
        yield url, local.store


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_is_a_server_error(case: schemathesis.Case, server: tuple[str, object]) -> None:
    url, store = server
    # A server elsewhere cannot be reset from here: it keeps its settings (auth stays off).
    assume(store is not None or not (case.method == "POST" and case.path.startswith("/api/settings")))
    response = case.call_and_validate(base_url=url, checks=[not_a_server_error, status_code_conformance])
    STATUSES[response.status_code] += 1
    if store is not None and case.path.startswith("/api/settings"):
        # Generated settings may turn auth on, which would leave every later request at 401.
        store._change_settings({"auth": False})  # type: ignore[attr-defined]
