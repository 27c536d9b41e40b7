"""Full-size Stable Diffusion on an NVIDIA GPU: through the API against raw diffusers.

SD1.5 (512x512, 50 steps) and SDXL (1024x1024, 30 steps) topologies with random fp16 weights,
built from the config folders the project ships (deployments/model_configs.py), so nothing is
downloaded. Each is saved as a diffusers folder into a fresh data folder; `enfugue-serve run`
serves it, and the same pipeline is called directly in this process with the options the Base
role uses on CUDA (fp16, SDPA, channels-last: deployments.acceleration.place). N interleaved runs;
medians, the ratio, and seconds per image through the API.

Targets (issue 6, on an H200): SD1.5 <= 1.0 s and SDXL <= 1.6 s per image through the API.

Run on a machine with a CUDA GPU: .venv/bin/python -m bench.gpu [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import httpx  # noqa: E402
import torch  # noqa: E402

from bench.common import running_server  # noqa: E402

# family -> (name, size, steps, target seconds per image through the API)
CASES = {"v1": ("sd15-random", 512, 50, 1.0), "xl_base": ("sdxl-random", 1024, 30, 1.6)}


def random_pipeline(family: str, configs: Path, device: str = "cuda"):  # noqa: ANN201 - diffusers types
    """A pipeline of the family's exact topology with random weights, built on ``device`` in fp16."""
    import diffusers
    import transformers

    from deployments.model_configs import ensure_config_folder

    folder = ensure_config_folder(family, configs)
    index = json.loads((folder / "model_index.json").read_text())
    components, options = {}, {}
    with torch.device(device):
        for name, spec in index.items():
            if name.startswith("_"):
                continue
            if not isinstance(spec, list):  # a pipeline option (requires_safety_checker, ...)
                options[name] = spec
                continue
            library, class_name = spec
            if library is None:  # an optional component this family has not (safety checker)
                components[name] = None
                continue
            cls = getattr(diffusers if library == "diffusers" else transformers, class_name)
            path = str(folder / name)
            if name.startswith("tokenizer") or name == "scheduler":
                components[name] = cls.from_pretrained(path)
            elif library == "diffusers":
                components[name] = cls.from_config(cls.load_config(path))
            else:
                components[name] = cls(transformers.AutoConfig.from_pretrained(path))
    pipeline = getattr(diffusers, index["_class_name"])(**components, **options)
    return pipeline.to(torch.float16)


def direct_seconds(pipe, size: int, steps: int) -> float:  # noqa: ANN001
    torch.cuda.synchronize()
    started = time.perf_counter()
    pipe("a photo of a cat", width=size, height=size, num_inference_steps=steps,
         generator=torch.Generator("cpu").manual_seed(1))  # fmt: skip
    torch.cuda.synchronize()
    return time.perf_counter() - started


def served_seconds(client: httpx.Client, model: str, size: int, steps: int) -> float:
    job = {"model": model, "prompt": "a photo of a cat", "width": size, "height": size,
           "num_inference_steps": steps, "seed": 1}  # fmt: skip
    started = time.perf_counter()
    uuid = client.post("/api/invoke", json=job).json()["data"]["uuid"]
    with client.stream("GET", f"/api/invocation/{uuid}/events") as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                status = json.loads(line.removeprefix("data: "))
    if status["status"] != "completed":
        raise RuntimeError(f"{model}: {status['status']} {status.get('message')}")
    elapsed = time.perf_counter() - started
    client.delete(f"/api/invocation/{uuid}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--families", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA GPU")
    from deployments.acceleration import place

    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; medians of {args.runs} after a warm-up")
    with tempfile.TemporaryDirectory() as data:
        pipes = {}
        for family in args.families:
            name, size, steps, _ = CASES[family]
            built = time.perf_counter()
            pipe = random_pipeline(family, Path(data) / "configs")
            pipe.save_pretrained(str(Path(data) / "checkpoint" / name), safe_serialization=True)
            pipes[family] = place(pipe, torch.device("cuda"))
            pipes[family].set_progress_bar_config(disable=True)
            print(f"  built and saved {name} in {time.perf_counter() - built:.0f} s")
        with running_server(Path(data)) as url, httpx.Client(base_url=url, timeout=600) as client:
            for family in args.families:
                name, size, steps, target = CASES[family]
                pipe = pipes[family]
                direct_seconds(pipe, size, steps)
                served_seconds(client, name, size, steps)
                direct, served = [], []
                for _ in range(args.runs):
                    direct.append(direct_seconds(pipe, size, steps))
                    served.append(served_seconds(client, name, size, steps))
                d, s = statistics.median(direct), statistics.median(served)
                verdict = "meets" if s <= target else "misses"
                print(
                    f"  {name} {size}x{size}/{steps}: direct {d:.3f} s, API {s:.3f} s, ratio {s / d:.3f}; "
                    f"target <= {target} s per image through the API: {verdict} it"
                )


if __name__ == "__main__":
    main()
