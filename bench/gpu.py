"""Full-size Stable Diffusion on an NVIDIA GPU: through the API against raw diffusers.

SD1.5 (512x512, 50 steps) and SDXL (1024x1024, 30 steps) topologies with random fp16 weights,
built from the config folders the project ships (deployments/model_configs.py), so nothing is
downloaded. Each is saved as a diffusers folder into a fresh data folder; `enfugue-serve run`
serves it, and the same pipeline is called directly in this process with the options the Base
role uses by default (fp16, SDPA, channels-last on CUDA: deployments.acceleration.place). N
interleaved runs; medians, the ratio, seconds per image through the API, and the peak GPU memory
(of this process's direct calls, and of the whole GPU while the server ran).

``--compare KEY=VALUE`` (an option of a role's ``acceleration`` that applies on top of the
defaults: compile=true, attention=xformers, channels_last=true) times the direct call again with it
applied, in the same process: its effect, and its one-off cost (compile's first call) apart.

Targets (issue 25, on an H100 or H200): SD1.5 <= 1.0 s and SDXL <= 1.6 s per image through the
API, ratio <= 1.03.

Run on a machine with a CUDA GPU: python -m bench.gpu [--runs 5] [--compare compile=true]
On the CPU, to prove the path before GPU time (SD1.5 only, 64x64, 2 steps, float32):
    python -m bench.gpu --device cpu --runs 1
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
# On the CPU: the same topologies at a size and step count a CPU runs in seconds (no target).
CPU_CASES = {"v1": ("sd15-random", 64, 2, None), "xl_base": ("sdxl-random", 64, 2, None)}
RATIO_TARGET = 1.03
# The acceleration options --compare can apply on top of a placed pipeline.
ADDED_TEXT = (("compile", "true"), ("attention", "xformers"), ("channels_last", "true"))
ADDED = [{"compile": True}, {"attention": "xformers"}, {"channels_last": True}]


def random_pipeline(family: str, configs: Path, device: str = "cuda"):  # noqa: ANN201 - diffusers types
    """A pipeline of the family's exact topology with random weights, built on ``device``: in fp16
    on CUDA, float32 on the CPU (as the roles load it there)."""
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
    return pipeline.to(torch.float16 if device == "cuda" else torch.float32)


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def direct_seconds(pipe, size: int, steps: int) -> float:  # noqa: ANN001
    synchronize()
    started = time.perf_counter()
    pipe("a photo of a cat", width=size, height=size, num_inference_steps=steps,
         generator=torch.Generator("cpu").manual_seed(1))  # fmt: skip
    synchronize()
    return time.perf_counter() - started


def acceleration_option(text: str) -> dict[str, object]:
    """``KEY=VALUE`` as an ``acceleration`` option, checked as a Serve config's would be."""
    from serve_app.acceleration_schemas import Acceleration

    key, separator, value = text.partition("=")
    if not separator:
        raise argparse.ArgumentTypeError(f"{text!r}: KEY=VALUE, e.g. compile=true")
    option = {key: {"true": True, "false": False}.get(value.lower(), value)}
    if option not in ADDED:  # the others change what a placed pipeline cannot undo
        raise argparse.ArgumentTypeError(f"{text!r}: one of {', '.join(f'{k}={v}' for k, v in ADDED_TEXT)}")
    try:
        Acceleration.model_validate(option)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return option


def compare(pipe, size: int, steps: int, runs: int, option: dict[str, object], device: torch.device) -> str:  # noqa: ANN001
    """The direct call's median with ``option`` applied on top of the default placement."""
    from deployments.acceleration import place
    from serve_app.acceleration_schemas import Acceleration

    before = statistics.median(direct_seconds(pipe, size, steps) for _ in range(runs))
    place(pipe, device, Acceleration.model_validate(option))
    first = direct_seconds(pipe, size, steps)  # compile's compilation happens here
    after = statistics.median(direct_seconds(pipe, size, steps) for _ in range(runs))
    return (
        f"direct {before:.3f} s -> {after:.3f} s with {option} (ratio {after / before:.3f}); "
        f"its first call {first:.1f} s"
    )


def gpu_memory_used_gib() -> float:
    """The GPU's memory in use by every process on it (the server's replicas and this one)."""
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**30


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
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--families", nargs="+", choices=list(CASES), help="default: both on CUDA, v1 on the CPU")
    parser.add_argument("--compare", type=acceleration_option, help="an acceleration option to time too, KEY=VALUE")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            f"bench/gpu.py: PyTorch {torch.__version__} finds no CUDA device here; "
            "--device cpu runs the same path on the CPU at a small size"
        )
    cases = CASES if args.device == "cuda" else CPU_CASES
    families = args.families or (list(CASES) if args.device == "cuda" else ["v1"])
    device = torch.device(args.device)
    from deployments.acceleration import place

    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}; medians of {args.runs} after a warm-up")
    with tempfile.TemporaryDirectory() as data:
        pipes = {}
        for family in families:
            model, size, steps, _ = cases[family]
            built = time.perf_counter()
            pipe = random_pipeline(family, Path(data) / "configs", args.device)
            pipe.save_pretrained(str(Path(data) / "checkpoint" / model), safe_serialization=True)
            pipes[family] = place(pipe, device)
            pipes[family].set_progress_bar_config(disable=True)
            print(f"  built and saved {model} in {time.perf_counter() - built:.0f} s")
        with running_server(Path(data)) as url, httpx.Client(base_url=url, timeout=600) as client:
            for family in families:
                model, size, steps, target = cases[family]
                pipe = pipes[family]
                if args.device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                direct_seconds(pipe, size, steps)
                served_seconds(client, model, size, steps)
                direct, served = [], []
                for _ in range(args.runs):
                    direct.append(direct_seconds(pipe, size, steps))
                    served.append(served_seconds(client, model, size, steps))
                d, s = statistics.median(direct), statistics.median(served)
                verdict = "" if target is None else f"; target <= {target} s: {'meets' if s <= target else 'misses'} it"
                print(
                    f"  {model} {size}x{size}/{steps}: direct {d:.3f} s, API {s:.3f} s per image, ratio {s / d:.3f} "
                    f"(target <= {RATIO_TARGET}){verdict}"
                )
                if args.device == "cuda":
                    peak = torch.cuda.max_memory_allocated() / 2**30
                    print(
                        f"    peak GPU memory: direct {peak:.1f} GiB (this process, its pipelines included); "
                        f"whole GPU after the runs {gpu_memory_used_gib():.1f} GiB"
                    )
                if args.compare:
                    print(f"    {compare(pipe, size, steps, args.runs, args.compare, device)}")


if __name__ == "__main__":
    main()
