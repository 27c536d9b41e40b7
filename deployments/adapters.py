"""LoRA, LyCORIS and textual inversions, applied to a loaded pipeline for one step and removed after.

The pipeline stays loaded between requests (multiplexing), so whatever a request adds to it must
come off again: the next request sees the plain checkpoint. LoRA and LyCORIS files load through
diffusers' LoRA loader (PEFT), which reads diffusers, kohya and LyCORIS LoCon files; a file it
cannot read is the request's problem (400 naming it), not the server's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safetensors import safe_open

from deployments.steps import Denoise
from serve_app.errors import BadRequestError
from storage.shared import SharedStorage


@contextlib.contextmanager
def applied(pipeline: Any, step: Denoise, storage: SharedStorage) -> Iterator[None]:
    """``pipeline`` with the step's adapters at their weights and its inversions, for the block
    (their files as ``storage`` copies them to this node)."""
    names: list[str] = []
    encoders = _text_encoders(pipeline)
    before = [_added_tokens(tokenizer) for tokenizer, _ in encoders]
    try:
        for index, adapter in enumerate(step.adapters):
            name = f"{adapter.kind}-{index}"
            try:
                path = storage.local_copy(adapter.kind, adapter.name)
                pipeline.load_lora_weights(str(path), adapter_name=name)
            except (OSError, ValueError, KeyError, RuntimeError) as error:
                raise BadRequestError(f"{adapter.kind}: {adapter.name} could not be applied ({error})"[:500]) from error
            if name not in _loaded(pipeline):
                raise BadRequestError(f"{adapter.kind}: {adapter.name} holds no weights for this checkpoint's layers")
            names.append(name)
        if names:
            pipeline.set_adapters(names, [adapter.weight for adapter in step.adapters])
        for name in step.inversions:
            _load_inversion(pipeline, storage, name)
        yield
    finally:
        if names:
            pipeline.delete_adapters(names)
        for (tokenizer, text_encoder), had in zip(encoders, before, strict=True):
            added = _added_tokens(tokenizer) - had  # a multi-vector embedding adds token, token_1, ...
            if added:
                pipeline.unload_textual_inversion(tokens=sorted(added), tokenizer=tokenizer, text_encoder=text_encoder)


def _loaded(pipeline: Any) -> set[str]:
    return {name for names in pipeline.get_list_adapters().values() for name in names}


def _text_encoders(pipeline: Any) -> list[tuple[Any, Any]]:
    """(tokenizer, text encoder) of each text encoder the pipeline has (an SDXL refiner: only the second)."""
    pairs = [
        (getattr(pipeline, f"tokenizer{suffix}", None), getattr(pipeline, f"text_encoder{suffix}", None))
        for suffix in ("", "_2")
    ]
    return [(tokenizer, encoder) for tokenizer, encoder in pairs if tokenizer is not None and encoder is not None]


def _added_tokens(tokenizer: Any) -> set[str]:
    return {token.content for token in tokenizer.added_tokens_decoder.values() if not token.special}


def _load_inversion(pipeline: Any, storage: SharedStorage, name: str) -> None:
    """Load one textual inversion; its token is the file's stem (as A1111 and Enfugue name them).
    An SDXL embedding carries one vector set per text encoder (clip_l, clip_g)."""
    path = Path(name)
    token = path.stem
    try:
        path = storage.local_copy("inversion", name)
        state = _read(path)
        if "clip_l" in state and "clip_g" in state:
            encoders = _text_encoders(pipeline)
            if len(encoders) != 2:
                raise BadRequestError(f"inversion: {path.name} is for SDXL's two text encoders; this checkpoint is not")
            for key, (tokenizer, text_encoder) in zip(("clip_l", "clip_g"), encoders, strict=True):
                pipeline.load_textual_inversion(state[key], token=token, tokenizer=tokenizer, text_encoder=text_encoder)
        else:
            pipeline.load_textual_inversion(str(path), token=token)
    except BadRequestError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise BadRequestError(f"inversion: {path.name} could not be loaded ({error})"[:500]) from error


def _read(path: Path) -> dict[str, Any]:
    """The tensors of a .safetensors file by name ({} for other formats: diffusers reads those)."""
    if path.suffix.lower() != ".safetensors":
        return {}
    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
