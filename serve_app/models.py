"""What an invoke body means: its checkpoint, its preconfigured model, and the domain request.

Plain file lookups (no torch); they block, so routes run them in a thread.
"""

from __future__ import annotations

from typing import Any

from deployments.control import ANNOTATOR_FILES, DEFAULT_FILES
from deployments.request import Adapter, Checkpoint, ControlNet, GenerationRequest, InputImage, Node
from serve_app.datauri import has_transparency
from serve_app.errors import BadRequestError
from serve_app.image_models import check_background, upscaling
from serve_app.model_schemas import DEFAULT_CONFIG_KEYS, ModelCreate
from serve_app.schemas import InvokeRequest, weighted
from storage.model_folders import UnreadableModelError, UnsafePathError
from storage.shared import SharedStorage


def _model_file(storage: SharedStorage, kind: str, name: str, field: str) -> str:
    """``name`` as found in the ``kind`` folder (relative POSIX name), or 400 naming ``field``."""
    try:
        found = storage.find_model(kind, name)
    except UnsafePathError as error:
        raise BadRequestError(f"{field}: {name!r:.200} is not a file in the {kind} folder") from error
    if found is None:
        raise BadRequestError(f"{field}: no {kind} file named {name!r:.200}; see GET /api/{_LISTING[kind]}")
    return found


_LISTING = {"checkpoint": "checkpoints", "vae": "vae", "lora": "lora", "lycoris": "lycoris", "inversion": "inversions"}


def resolve_checkpoint(name: str, storage: SharedStorage, field: str = "model") -> Checkpoint:
    relative = _model_file(storage, "checkpoint", name, field)
    try:
        return Checkpoint(name=relative, size=storage.checkpoint_size(relative))
    except UnreadableModelError as error:
        raise BadRequestError(f"{field}: {error}") from error


def default_checkpoint(configured: str | None, storage: SharedStorage) -> Checkpoint:
    """The configured default, or the only checkpoint there is (a fresh start has just the demo)."""
    if configured is not None:
        return resolve_checkpoint(configured, storage)
    available = storage.list_models("checkpoint")
    if len(available) != 1:
        raise BadRequestError(
            f"model: not given, and with {len(available)} checkpoints there is no default; pass `model` "
            "(see GET /api/checkpoints) or set `default_checkpoint` with POST /api/settings"
        )
    return resolve_checkpoint(available[0], storage)


# invocations


def generation_request(body: InvokeRequest, context: dict[str, Any], storage: SharedStorage) -> GenerationRequest:
    """The domain request for a validated body; ``context`` says the default checkpoint and the
    preconfigured model the body names (None when there is none)."""
    spec = context["model"]
    if body.model is None:
        request, checkpoint, model = body, default_checkpoint(context["default_checkpoint"], storage), None
    elif spec is not None:
        (request, checkpoint), model = apply_model(body, spec, storage), model_record(spec)
    elif body.model_type == "model":
        raise BadRequestError(f"model: no preconfigured model named {body.model!r:.100}; see GET /api/models")
    else:
        request, checkpoint, model = body, resolve_checkpoint(body.model, storage), None
    check_background(request, storage)
    configured = context.get("controlnets") or {}
    return GenerationRequest(
        checkpoint=checkpoint,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        width=request.width,
        height=request.height,
        seed=request.seed,
        samples=request.samples,
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        scheduler=request.scheduler,
        size=request.size,
        chunking_size=request.chunking_size,
        chunking_blur=request.chunking_blur,
        multi_scheduler=request.multi_scheduler,
        image=_input_image(request, "image"),
        strength=request.strength,
        mask=_input_image(request, "mask"),
        invert_mask=request.invert_mask,
        inpainter=_part("inpainter", request, spec, storage),
        fit=request.fit,
        anchor=request.anchor,
        scale_to_model_size=request.scale_to_model_size,
        remove_background=request.remove_background,
        fill_background=request.fill_background,
        upscale=upscaling(request, storage, _pass_controlnets(request, checkpoint, configured, storage)),
        nodes=_nodes(request, checkpoint),
        vae=_vae(request, spec, storage),
        adapters=_adapters(request, spec, storage),
        inversions=_inversions(request, spec, storage),
        controlnet=_controlnet(request, checkpoint, configured, storage),
        refiner=_part("refiner", request, spec, storage),
        **{name: getattr(request, name) for name in REFINER_VALUES if getattr(request, name) is not None},
        intermediate_steps=context.get("intermediate_steps"),
        precision=context.get("precision"),
        safe=bool(context.get("safe")),
        model=model,
    )


def _nodes(request: InvokeRequest, checkpoint: Checkpoint) -> tuple[Node, ...]:
    """The request's canvas nodes, each inside the canvas (400 naming the one that is not)."""
    if request.nodes is None:
        return ()
    width, height = request.width or checkpoint.size, request.height or checkpoint.size
    nodes = []
    for index, node in enumerate(request.nodes):
        if node.x + node.w > width or node.y + node.h > height:
            raise BadRequestError(
                f"nodes.{index}: the {node.w}x{node.h} box at ({node.x}, {node.y}) leaves the {width}x{height} canvas"
            )
        images = {name: node.image_file(name) for name in ("image", "mask")}
        nodes.append(
            Node(
                x=node.x, y=node.y, width=node.w, height=node.h, prompt=node.prompt,
                negative_prompt=node.negative_prompt, num_inference_steps=node.num_inference_steps,
                guidance_scale=node.guidance_scale, strength=node.strength,
                image=_encoded(*data) if (data := images["image"]) else None,
                mask=_encoded(*data) if (data := images["mask"]) else None,
                invert_mask=node.invert_mask, fit=node.fit, anchor=node.anchor,
                remove_background=node.remove_background, fill_background=node.fill_background,
            )
        )  # fmt: skip
    return tuple(nodes)


def _input_image(request: InvokeRequest, field: str) -> InputImage | None:
    decoded = request.image_file(field)
    if decoded is None:
        return None
    return _encoded(*decoded)


def _encoded(payload: bytes, size: tuple[int, int]) -> InputImage:
    return InputImage(payload, *size, transparent=has_transparency(payload))


def _part(part: str, request: InvokeRequest, spec: dict[str, Any] | None, storage: SharedStorage) -> Checkpoint | None:
    """The checkpoint that inpaints or refines: the request's, else the preconfigured model's, else
    none (the base checkpoint inpaints; nothing refines)."""
    name, size = getattr(request, part), getattr(request, f"{part}_size")
    if name is not None:
        found = resolve_checkpoint(name, storage, part)
        return Checkpoint(found.name, size or found.size)
    if spec is not None and spec[part] is not None:
        return Checkpoint(spec[part]["model"], spec[part]["size"])
    return None


def _controlnet(
    request: InvokeRequest, checkpoint: Checkpoint, configured: dict[str, str | None], storage: SharedStorage
) -> ControlNet | None:
    """The ControlNet a request asks for, its file found in the controlnet folder: the one the
    kind's setting names (`<kind>_xl` for an SDXL-sized checkpoint, where Enfugue had one), else
    the file Enfugue downloaded for the kind."""
    kind = request.controlnet
    if kind is None:
        return None
    found = controlnet_file(kind, checkpoint, configured, storage, "controlnet")
    if request.process_control_image:
        _check_annotator(kind, storage, "controlnet")
    return ControlNet(
        kind=kind,
        model=found,
        image=_input_image(request, "control_image"),
        scale=request.conditioning_scale,
        process=request.process_control_image,
        invert=request.invert_control_image,
    )


def controlnet_file(
    kind: str, checkpoint: Checkpoint, configured: dict[str, str | None], storage: SharedStorage, field: str
) -> str:
    """The file of a ControlNet kind in the controlnet folder: the one the kind's setting names
    (`<kind>_xl` for an SDXL-sized checkpoint, where Enfugue had one), else the file Enfugue
    downloaded for the kind; 400 naming ``field`` when it is not there."""
    key = f"{kind}_xl" if checkpoint.size >= 1024 and f"{kind}_xl" in DEFAULT_FILES else kind
    name = configured.get(key) or DEFAULT_FILES[key]
    try:
        found = storage.find_model("controlnet", name)
    except UnsafePathError as error:
        raise BadRequestError(
            f"{field}: the {key} setting {name!r:.200} is not a file in the controlnet folder"
        ) from error
    if found is None:
        raise BadRequestError(
            f"{field}: {kind} needs the ControlNet file {name} in the controlnet folder; install it there "
            f"(POST /api/download), or name another file with the {key!r} setting"
        )
    return found


def _pass_controlnets(
    request: InvokeRequest, checkpoint: Checkpoint, configured: dict[str, str | None], storage: SharedStorage
) -> tuple[tuple[str, str], ...]:
    """Each upscaling pass's ControlNet as (kind, file), its files present (one given: every pass's)."""
    field = "upscale_diffusion_controlnet"
    given = request.upscale_diffusion_controlnet
    kinds = given if isinstance(given, list) else [given] if given is not None else []
    for kind in kinds:
        _check_annotator(kind, storage, field)
    return tuple((kind, controlnet_file(kind, checkpoint, configured, storage, field)) for kind in kinds)


def _check_annotator(kind: str, storage: SharedStorage, field: str) -> None:
    """400 naming the files a kind's annotator needs that the annotators folder lacks."""
    lacking = [name for name in ANNOTATOR_FILES.get(kind, ()) if storage.find_model("annotators", name) is None]
    if lacking:
        raise BadRequestError(
            f"{field}: making a {kind} control image needs the annotator file(s) {', '.join(lacking)} in the "
            "annotators folder (lllyasviel/Annotators' files); install them there (POST /api/download with type "
            f"annotators), or send a ready {kind} image as control_image with process_control_image false"
        )


# The refiner's values a request (or a model's default configuration) may set; else Enfugue's defaults.
REFINER_VALUES = (
    "refiner_strength", "refiner_guidance_scale", "refiner_aesthetic_score", "refiner_negative_aesthetic_score",
)  # fmt: skip


# Enfugue's VAE names, and the files it downloaded for them (put them into the vae folder).
VAE_FILES = {
    "ema": "sd-vae-ft-ema.safetensors",
    "mse": "sd-vae-ft-mse.safetensors",
    "xl": "sdxl_vae.safetensors",
    "xl16": "sdxl-vae-fp16-fix.safetensors",
}


def _vae(request: InvokeRequest, spec: dict[str, Any] | None, storage: SharedStorage) -> str | None:
    """The VAE file (relative to the vae folder): the request's, else the preconfigured model's."""
    if request.vae is None:
        return spec["vae"]["name"] if spec is not None and spec["vae"] else None
    return vae_file(request.vae, storage)


def vae_file(given: str, storage: SharedStorage) -> str:
    """The file a `vae` value names: one of Enfugue's names (ema, mse, xl, xl16) or a file."""
    name = VAE_FILES.get(given, given)
    if given in VAE_FILES and storage.find_model("vae", name) is None:
        raise BadRequestError(f"vae: {given!r} needs the file {name} in the vae folder; it is not there")
    return _model_file(storage, "vae", name, "vae")


def _adapters(request: InvokeRequest, spec: dict[str, Any] | None, storage: SharedStorage) -> tuple[Adapter, ...]:
    """LoRA, then LyCORIS: the request's of each kind, else the preconfigured model's."""
    adapters = []
    for kind in ("lora", "lycoris"):
        if getattr(request, kind) is not None:
            items = [
                {**item, "model": _model_file(storage, kind, item["model"], kind)}
                for item in weighted(getattr(request, kind))
            ]
        else:
            items = spec[kind] if spec is not None else []
        adapters += [Adapter(kind, item["model"], item["weight"]) for item in items]
    return tuple(adapters)


def _inversions(request: InvokeRequest, spec: dict[str, Any] | None, storage: SharedStorage) -> tuple[str, ...]:
    if request.inversion is not None:
        return tuple(
            _model_file(storage, "inversion", item["model"], "inversion") for item in weighted(request.inversion)
        )
    return tuple(item["model"] for item in spec["inversion"]) if spec is not None else ()


def _joined(*prompts: str) -> str:
    return ", ".join(prompt for prompt in prompts if prompt)


def apply_model(
    request: InvokeRequest, spec: dict[str, Any], storage: SharedStorage
) -> tuple[InvokeRequest, Checkpoint]:
    """The request with the model's defaults under it: what the request gives wins, prompts merge."""
    given = request.model_fields_set
    # An input image fixes the size; the model's default width and height do not apply to it.
    ignored = {"width", "height"} if request.image is not None else set()
    defaults = {
        key: value for key, value in spec["config"].items() if key in InvokeRequest.model_fields and key not in ignored
    }
    if spec["scheduler"]:
        defaults["scheduler"] = spec["scheduler"]["name"]
    merged = {
        **{key: value for key, value in defaults.items() if key not in given},
        **request.model_dump(exclude_unset=True),
        "prompt": _joined(request.prompt, spec["prompt"]),
        "negative_prompt": _joined(request.negative_prompt, spec["negative_prompt"]),
    }
    checkpoint = resolve_checkpoint(spec["model"], storage, "model")
    effective = InvokeRequest.model_validate(merged, context=request.decoded_images())
    return effective, Checkpoint(name=checkpoint.name, size=spec["size"])


def model_record(spec: dict[str, Any]) -> dict[str, Any]:
    """What the plan records of a model whose parts run in later features (refiner, LoRA, ...)."""
    recorded = {key: spec[key] for key in ("name", "refiner", "inpainter", "vae", "lora", "lycoris", "inversion")}
    recorded["config"] = {key: spec["config"][key] for key in DEFAULT_CONFIG_KEYS if key in spec["config"]}
    return recorded


# preconfigured models


def model_spec(fields: ModelCreate, storage: SharedStorage) -> dict[str, Any]:
    """A validated body as the Store keeps it, every file checked to exist in its folder."""
    checkpoint = resolve_checkpoint(fields.checkpoint or "", storage, "checkpoint")
    parts: dict[str, Any] = {}
    for part in ("refiner", "inpainter"):
        name = getattr(fields, part)
        if name is not None:
            found = resolve_checkpoint(name, storage, part)
            parts[part] = {"model": found.name, "size": getattr(fields, f"{part}_size") or found.size}
        else:
            parts[part] = None
    return {
        "name": fields.name,
        "model": checkpoint.name,
        "size": fields.size or checkpoint.size,
        "prompt": fields.prompt or "",
        "negative_prompt": fields.negative_prompt or "",
        **parts,
        "vae": {"name": vae_file(fields.vae, storage)} if fields.vae else None,
        "scheduler": {"name": fields.scheduler} if fields.scheduler else None,
        "lora": [
            {**item, "model": _model_file(storage, "lora", item["model"], "lora")} for item in weighted(fields.lora)
        ],
        "lycoris": [
            {**item, "model": _model_file(storage, "lycoris", item["model"], "lycoris")}
            for item in weighted(fields.lycoris)
        ],
        "inversion": [
            {"model": _model_file(storage, "inversion", item["model"], "inversion")}
            for item in weighted(fields.inversion)
        ],
        "config": fields.config(),
    }


def spec_fields(spec: dict[str, Any]) -> dict[str, Any]:
    """A stored model as the body that would create it (PATCH overlays the given fields on this)."""
    fields: dict[str, Any] = {
        "name": spec["name"],
        "checkpoint": spec["model"],
        "size": spec["size"],
        "prompt": spec["prompt"],
        "negative_prompt": spec["negative_prompt"],
        "scheduler": spec["scheduler"]["name"] if spec["scheduler"] else None,
        "vae": spec["vae"]["name"] if spec["vae"] else None,
        "lora": spec["lora"],
        "lycoris": spec["lycoris"],
        "inversion": spec["inversion"],
        **spec["config"],
    }
    for part in ("refiner", "inpainter"):
        if spec[part]:
            fields[part], fields[f"{part}_size"] = spec[part]["model"], spec[part]["size"]
    return fields
