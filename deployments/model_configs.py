"""Config-only diffusers folders for the real Stable Diffusion families, built offline.

`from_single_file` needs the diffusers JSON configs and the tokenizer of a checkpoint's
family; without `config=` it fetches them from the hub. These folders hold the same files
as the hub repos diffusers itself would fetch (see `DIFFUSERS_DEFAULT_PIPELINE_PATHS` in
`diffusers.loaders.single_file_utils`), written from the dicts in ``family_configs``, with no weights:

    pipe = StableDiffusionPipeline.from_single_file(
        path, config=str(ensure_config_folder("v1", root)), local_files_only=True)

Family names are those `infer_diffusers_model_type` returns for an LDM state dict.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from deployments.family_configs import FAMILY_FILES

FAMILIES: tuple[str, ...] = (
    "v1",  # stable-diffusion-v1-5/stable-diffusion-v1-5
    "inpainting",  # stable-diffusion-v1-5/stable-diffusion-inpainting
    "v2",  # stabilityai/stable-diffusion-2-1 (768, v-prediction)
    "inpainting_v2",  # stabilityai/stable-diffusion-2-inpainting
    "xl_base",  # stabilityai/stable-diffusion-xl-base-1.0
    "xl_refiner",  # stabilityai/stable-diffusion-xl-refiner-1.0
    "xl_inpaint",  # diffusers/stable-diffusion-xl-1.0-inpainting-0.1
)

# The OpenAI CLIP BPE merges, vendored from the open-clip-torch wheel (see configs/LICENSE).
_BPE_FILE = Path(__file__).with_name("configs") / "bpe_simple_vocab_16e6.txt.gz"
_BPE_MERGES = 49152 - 256 - 2  # CLIP's vocab is 49408: 512 byte symbols + merges + 2 specials


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")


def _bytes_to_unicode() -> list[str]:
    """CLIP's byte -> printable symbol table, in its vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return [chr(byte) for byte in printable] + [chr(256 + n) for n in range(len(others))]


@functools.cache
def _bpe_files() -> tuple[str, str]:
    """vocab.json and merges.txt text, in OpenAI SimpleTokenizer's (and the hub's) order."""
    lines = gzip.decompress(_BPE_FILE.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : 1 + _BPE_MERGES]  # line 0 is a header
    symbols = _bytes_to_unicode()
    tokens = symbols + [s + "</w>" for s in symbols] + [m.replace(" ", "") for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = json.dumps({token: i for i, token in enumerate(tokens)}, ensure_ascii=False)
    return vocab, "#version: 0.2\n" + "\n".join(merges) + "\n"


def _special(content: str, **extra: Any) -> dict:
    return {**extra, "content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def _tokenizer_files(pad: str, name_or_path: str | None) -> dict[str, str]:
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    config = {
        "add_prefix_space": False,
        "bos_token": _special(bos, __type="AddedToken"),
        "do_lower_case": True,
        "eos_token": _special(eos, __type="AddedToken"),
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": pad,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": _special(eos, __type="AddedToken"),
    }
    if name_or_path:  # the 2022 exports; SD2's config says <|endoftext|>, its map says "!"
        config |= {
            "name_or_path": name_or_path,
            "pad_token": eos,
            "special_tokens_map_file": "./special_tokens_map.json",
        }
    else:
        config["clean_up_tokenization_spaces"] = True
    special = {"bos_token": _special(bos), "eos_token": _special(eos), "pad_token": pad, "unk_token": _special(eos)}
    vocab, merges = _bpe_files()
    return {
        "vocab.json": vocab,
        "merges.txt": merges,
        "tokenizer_config.json": _dump(config),
        "special_tokens_map.json": _dump(special),
    }


def _dump(config: dict) -> str:
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def _family_files(family: str) -> dict[str, str]:
    """Relative path -> file text for one family's folder."""
    files = {}
    for folder, content in FAMILY_FILES[family].items():
        if isinstance(content, tuple):
            for name, text in _tokenizer_files(*content).items():
                files[f"{folder}/{name}"] = text
        elif folder == "":
            files["model_index.json"] = _dump(content)
        elif folder == "scheduler":
            files["scheduler/scheduler_config.json"] = _dump(content)
        else:
            files[f"{folder}/config.json"] = _dump(content)
    return files


def ensure_config_folder(family: str, root: Path) -> Path:
    """Write root/<family>/ once and return it; concurrent callers are safe."""
    _check_family(family)
    target = Path(root) / family
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename into place, so a folder that exists is complete.
    staging = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=target.parent))
    try:
        for relative, text in _family_files(family).items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        staging.chmod(0o755)  # mkdtemp makes it private to this user
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
            # Another process finished first; its folder is identical.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
