"""The latency floors of this machine, served by Ray Serve: what any answer costs at the least.

- ``/one-route``: a FastAPI app with one route that answers at once;
- ``/one-call``: a FastAPI app whose one route makes one call to another deployment.

Run by bench/api_latency.py in its own process: ``python -m bench.floor_app --port P``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from ray import serve

ANSWER = {"meta": {"params": {}}, "data": []}
LIGHT = {"num_cpus": 0.1}
# As the app's own ingress and Store are configured: Serve's default (5) would queue most of the load.
CONCURRENT = 200

one_route_api = FastAPI()
one_call_api = FastAPI()


@serve.deployment(ray_actor_options=LIGHT, max_ongoing_requests=CONCURRENT)
@serve.ingress(one_route_api)
class OneRoute:
    @one_route_api.get("/")
    async def answer(self) -> JSONResponse:
        return JSONResponse(ANSWER)


@serve.deployment(ray_actor_options=LIGHT, max_ongoing_requests=CONCURRENT)
class Answerer:
    def answer(self) -> dict:
        return ANSWER


@serve.deployment(ray_actor_options=LIGHT, max_ongoing_requests=CONCURRENT)
@serve.ingress(one_call_api)
class OneCall:
    def __init__(self, answerer: object) -> None:
        self._answerer = answerer

    @one_call_api.get("/")
    async def answer(self) -> JSONResponse:
        return JSONResponse(await self._answerer.answer.remote())  # type: ignore[attr-defined]


def main() -> None:
    import ray

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(include_dashboard=False, logging_level="ERROR")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(OneRoute.bind(), name="one-route", route_prefix="/one-route")
    serve.run(OneCall.bind(Answerer.bind()), name="one-call", route_prefix="/one-call")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
