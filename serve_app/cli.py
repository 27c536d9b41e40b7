"""``enfugue-serve run``: start Ray (or join RAY_ADDRESS), deploy the app, serve until interrupted.
``enfugue-serve batch``: run a JSONL file of invoke payloads through a running app (serve_app/batch.py)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from pydantic import ValidationError

from serve_app.config import AppArgs, default_data_dir
from storage.files import DataPaths
from storage.shared import SharedStorage, shared_storage

logger = logging.getLogger(__name__)

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 45554
APP_NAME = "enfugue"
CHECKPOINT = "checkpoint"
# Read here, once: the default user's first password, kept out of the process list.
INITIAL_PASSWORD_VARIABLE = "ENFUGUE_SERVE_INITIAL_PASSWORD"
# Serve's controller restarts an HTTP proxy that misses three health checks of 10 s each. On a
# small machine under full load (64 clients and a fuzzer on 2 cores) a busy proxy missed them and
# was killed, dropping every connection, several times in 20 minutes: overload made worse. The
# local cluster this command starts gives a busy proxy longer (the variables reach the controller
# through the raylet it starts; set them on a cluster's nodes to the same effect there).
PROXY_PATIENCE = {"RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60", "RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S": "20"}


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def ensure_a_checkpoint(storage: SharedStorage) -> None:
    """A fresh storage gets a tiny random demo checkpoint, so the first invoke completes."""
    if storage.list_models(CHECKPOINT):
        return
    from deployments.demo import write_demo_checkpoint  # torch: only when a demo is needed

    folder = storage.fs.unstrip_protocol(storage.folder(CHECKPOINT))
    if isinstance(storage.fs, LocalFileSystem):
        demo = str(write_demo_checkpoint(Path(storage.folder(CHECKPOINT))))
    else:  # written here, then uploaded whole
        with tempfile.TemporaryDirectory() as scratch:
            written = write_demo_checkpoint(Path(scratch))
            storage.fs.put(str(written), storage.path(CHECKPOINT, written.name), recursive=True)
        demo = storage.fs.unstrip_protocol(storage.path(CHECKPOINT, written.name))
    _say(
        f"No checkpoint was found, so a tiny random-weight demo was written to {demo}.\n"
        "Its images are noise. To generate real images, put a Stable Diffusion checkpoint\n"
        f"(.safetensors or .ckpt, SD 1.x / 2.x / SDXL, or a diffusers folder) into {folder}\n"
        'and pass its file name as "model" to /api/invoke, or make it the default with\n'
        'POST /api/settings {"default_checkpoint": "<file name>"}.'
    )


def serve_forever(host: str, port: int, args: AppArgs) -> int:
    """Serve the app of ``args`` (its data folder, storage and auth; its roles as this machine has them)."""
    import ray
    from ray import serve

    from serve_app.app import build_app
    from serve_app.local_ray import start_local_ray

    started = time.monotonic()
    paths = DataPaths(args.data_dir).ensure()
    ensure_a_checkpoint(shared_storage(paths.root, args.storage_url).ensure())
    # Joins the cluster in RAY_ADDRESS when it is set, else starts a local one.
    joined = os.environ.get("RAY_ADDRESS")
    if joined:
        ray.init(address=joined, logging_level=logging.WARNING)
    else:
        for name, value in PROXY_PATIENCE.items():
            os.environ.setdefault(name, value)
        start_local_ray(logging_level=logging.WARNING)
    # Installed after ray.init (whose own SIGTERM handler would end the process at once) and
    # before the deploy: a Ctrl+C or SIGTERM during the start is not lost; it stops the server
    # as soon as the step under way returns. A second one stops at once.
    stop = _stop_on_signals()
    try:
        if not stop.is_set():
            serve.start(http_options={"host": host, "port": port})
        if not stop.is_set():
            args = with_local_gpus(args, 0 if joined else ray.cluster_resources().get("GPU", 0))
            serve.run(build_app(args), name=APP_NAME, route_prefix="/")
            _say(f"enfugue-serve is ready at http://{host}:{port}/api (started in {time.monotonic() - started:.1f} s)")
            _say(f"Data folder: {paths.root}{f'; storage: {args.storage_url}' if args.storage_url else ''}.")
            _say("Press Ctrl+C to stop.")
        stop.wait()
        _say("Shutting down...")
        _release_the_database()
        if joined:  # leave the cluster and its other applications running
            serve.delete(APP_NAME)
    finally:
        # A cluster this command started goes with it, replicas and all.
        ray.shutdown()
    return 0


def with_local_gpus(args: AppArgs, gpus: float) -> AppArgs:
    """The app on this machine's GPUs: the four model roles share them (a whole one each at most).

    GPU use is declared, never guessed at deploy time: this command declares the GPUs of the
    cluster it started itself; on a cluster, the Serve config declares them."""
    if not gpus:
        return args
    share = min(1.0, gpus / len(MODEL_ROLES))
    update = {role: getattr(args, role).model_copy(update={"num_gpus": share}) for role in MODEL_ROLES}
    return args.model_copy(update=update)


MODEL_ROLES = ("base", "inpainter", "refiner", "upscaler")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def on_signal(number: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop


def _release_the_database() -> None:
    """Have the Store close the DuckDB file now, so a start right after finds it free (replica
    processes can outlive the cluster's shutdown by many seconds)."""
    from ray import serve

    try:
        serve.get_deployment_handle("Store", app_name=APP_NAME).close.remote().result(timeout_s=10)
    except Exception:  # not deployed (stopped during the start), or already gone
        logger.info("the Store was not there to close the database", exc_info=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="enfugue-serve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start the server and serve until interrupted")
    run.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    run.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    run.add_argument(
        "--data-dir", type=Path, default=default_data_dir(),
        help=f"DuckDB file, images and model folders (default {default_data_dir()})",
    )  # fmt: skip
    run.add_argument(
        "--auth", action=argparse.BooleanOptionalAction, default=None,
        help="require login (--no-auth: don't); default: as the `auth` setting says (off on a fresh start). "
        f"The default user is enfugue/enfugue unless {INITIAL_PASSWORD_VARIABLE} sets its first password.",
    )  # fmt: skip
    run.add_argument(
        "--storage-url",
        help="images and model folders in this shared path or fsspec URL (e.g. s3://bucket/enfugue), "
        "as a cluster's Serve config names them; default: the data folder",
    )
    batch = commands.add_parser("batch", help="run a JSONL file of invoke payloads through a running app")
    batch.add_argument("prompts", type=Path, help="one /api/invoke payload (a JSON object) per line")
    batch.add_argument(
        "--out", required=True,
        help="folder for the images and results.jsonl: a path, or an fsspec URL (e.g. s3://bucket/results); "
        "as a Ray job, a path every node shares or a URL, where the submitter can read it",
    )  # fmt: skip
    batch.add_argument(
        "--url", default=os.environ.get("ENFUGUE_SERVE_URL", f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"),
        help=f"the app's address (default: $ENFUGUE_SERVE_URL, else http://{DEFAULT_HOST}:{DEFAULT_PORT})",
    )  # fmt: skip
    batch.add_argument("--concurrency", type=int, default=2, help="invocations in flight at once (default 2)")
    batch.add_argument("--token", help="a bearer token, when the app requires login")
    batch.add_argument("--username", help="log in as this user (with --password) instead of --token")
    batch.add_argument("--password", help="the password of --username")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "batch":
        return run_batch_command(parser, args)
    try:
        app_args = AppArgs(
            data_dir=args.data_dir, storage_url=args.storage_url, auth=args.auth,
            initial_password=os.environ.get(INITIAL_PASSWORD_VARIABLE),
        )  # fmt: skip
    except ValidationError as error:
        parser.error("; ".join(item["msg"] for item in error.errors()))
    return serve_forever(args.host, args.port, app_args)


def run_batch_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from serve_app.batch import LineError, login, make_client, run_batch  # no Ray to run a batch

    if args.concurrency < 1:
        parser.error(f"--concurrency must be at least 1, got {args.concurrency}")
    if (args.username is None) != (args.password is None):
        parser.error("--username and --password go together")
    if not args.prompts.is_file():
        parser.error(f"{args.prompts}: no such file")
    try:
        url_to_fs(args.out)
    except (ImportError, ValueError) as error:
        parser.error(f"--out {args.out!r:.200}: {error}")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would bury the bar
    with make_client(args.url, args.token) as client:
        if args.username is not None:
            try:
                client.headers["Authorization"] = "Bearer " + login(client, args.username, args.password)
            except LineError as error:
                _say(f"login failed: {error}")
                return 1
        return run_batch(args.prompts, args.out, client, args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
