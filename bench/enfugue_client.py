"""Enfugue 0.3.3's own Python client against `enfugue-serve run`, with auth off and on.

The client lives in a light virtual environment of its own (no torch):
    python3 -m venv /tmp/enfugue-client
    /tmp/enfugue-client/bin/pip install --no-deps enfugue==0.3.3.post4
    /tmp/enfugue-client/bin/pip install pibble==0.7.6 pillow typing_extensions
Run: .venv/bin/python -m bench.enfugue_client --client-python /tmp/enfugue-client/bin/python
It prints what each call of the client returned, and exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import running_server
from storage.files import DataPaths


def write_files(paths: DataPaths) -> None:
    """Tiny LoRA, LyCORIS and VAE files the demo checkpoint takes (the tests' builders)."""
    from tests.tiny_models import write_tiny_lora, write_tiny_vae

    write_tiny_lora(paths.models("lora") / "style.safetensors", seed=1)
    write_tiny_lora(paths.models("lycoris") / "locon.safetensors", seed=2)
    write_tiny_vae(paths.models("vae") / "sd-vae-ft-mse.safetensors")


# Runs inside the client's environment: the calls a user of that client makes.
CLIENT_SESSION = r"""
import json, sys
from enfugue.client import EnfugueClient
port, auth = int(sys.argv[1]), sys.argv[2] == "on"
client = EnfugueClient()
credentials = {"enfugue": {"username": "enfugue", "password": "enfugue"}} if auth else {}
client.configure(client={"host": "127.0.0.1", "port": port, "secure": False, "path": "/api"}, **credentials)
status = client.status()
print("status:", status["status"], "| settings auth:", client.settings()["auth"])
checkpoints = client.checkpoints()
print("checkpoints:", checkpoints, "| lora:", client.lora(), "| lycoris:", client.lycoris(),
      "| inversion:", client.inversion(), "| models:", client.get("/models").json()["meta"]["count"])
invocation = client.invoke(model=checkpoints[0], prompt="a cat", width=64, height=64, num_inference_steps=4)
images = invocation.results(polling_interval=0.2)
print("invoke -> results:", [image.size for image in images], "| status:", invocation.get_status()["status"])
invocation.delete()
print("deleted")
# The rest of the seed's vocabulary this client sends (it drops `inversion` on its way out).
styled = client.invoke(
    model=checkpoints[0], prompt="a tinytoken cat", width=64, height=64, num_inference_steps=4, seed=3,
    refiner=checkpoints[0], refiner_strength=0.5, lora=[{"model": "style.safetensors", "weight": 0.5}],
    lycoris=[{"model": "locon.safetensors", "weight": 1.0}], vae="mse", scheduler="ddim", strength=0.8,
)
images = styled.results(polling_interval=0.2)
print("invoke with refiner, lora, lycoris, vae, scheduler -> results:", [image.size for image in images])
# A white 64x64 PNG: this client sends a mask without an image (0.3 puts images in layers).
MASK = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAAAAACPAi4CAAAALElEQVR4nO3MoQEAAAjDMOD/n+"
        "GIGUTqm97KmvAHAAAAAAAAAAAAAAAA8B44UC0Bf7Sd28IAAAAASUVORK5CYII=")
for refused in ({"mask": MASK}, {"layers": []}, {"tiling_size": 64}, {"prompts": []}):
    try:
        client.invoke(model=checkpoints[0], prompt="a cat", **refused)
        sys.exit(f"{refused} was accepted")
    except Exception as error:
        print("refused:", str(error)[:110])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--client-python", required=True, help="Python of the environment holding the client")
    args = parser.parse_args()
    for auth in ("off", "on"):
        with tempfile.TemporaryDirectory() as data:
            write_files(DataPaths(Path(data)).ensure())
            extra = ["--auth"] if auth == "on" else []
            with running_server(Path(data), extra_args=extra) as url:
                port = url.rsplit(":", 1)[1]
                print(f"auth {auth}:")
                session = subprocess.run(
                    [args.client_python, "-c", CLIENT_SESSION, port, auth],
                    capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""},
                )  # fmt: skip
                print("  " + session.stdout.strip().replace("\n", "\n  "))
                if session.returncode:
                    print(session.stderr[-3000:])
                    sys.exit(json.dumps({"auth": auth, "returncode": session.returncode}))


if __name__ == "__main__":
    main()
