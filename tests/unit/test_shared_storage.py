"""Shared storage, the same on a path, a file:// URL and memory:// (as on s3:// or gs://): files,
model listings, safe names, header reads, and local copies fetched once and again after a change."""

from __future__ import annotations

import importlib.util
import json
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.model_folders import UnsafePathError
from storage.shared import IMAGES, INTERMEDIATES, SAFETY, SharedStorage


@pytest.fixture(params=["path", "file", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedStorage]:
    url = {
        "path": str(tmp_path / "shared"),
        "file": f"file://{tmp_path / 'shared'}",
        "memory": f"memory://test-{uuid.uuid4().hex}",
    }[request.param]
    storage = SharedStorage.from_url(url, cache=tmp_path / "cache").ensure()
    yield storage
    if request.param == "memory":
        storage.fs.rm(storage.root, recursive=True)


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[SharedStorage]:
    storage = SharedStorage.from_url(f"memory://test-{uuid.uuid4().hex}", cache=tmp_path / "cache").ensure()
    yield storage
    storage.fs.rm(storage.root, recursive=True)


def put(storage: SharedStorage, relative: str, data: bytes) -> None:
    path = f"{storage.root}/{relative}"
    storage.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    storage.fs.pipe_file(path, data)


def header_only(shapes: dict[str, list[int]]) -> bytes:
    """A .safetensors file with a header and no weights (no weights are read by the code under test)."""
    header = {key: {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]} for key, shape in shapes.items()}
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded


def test_a_path_and_a_file_url_name_the_same_folder(tmp_path: Path) -> None:
    by_path = SharedStorage.from_url(tmp_path / "a" / ".." / "shared").ensure()
    by_path.write(IMAGES, "x.png", b"png")
    assert SharedStorage.from_url(f"file://{tmp_path}/shared").read(IMAGES, "x.png") == b"png"
    assert (tmp_path / "shared" / "images" / "x.png").read_bytes() == b"png"


def test_a_url_without_a_folder_is_refused() -> None:
    with pytest.raises(ValueError, match="names no folder"):
        SharedStorage.from_url("memory://")


def test_files_are_written_read_streamed_listed_and_removed(storage: SharedStorage) -> None:
    storage.write(IMAGES, "a.png", b"0123456789")
    storage.write(IMAGES, "a.png", b"abcdef")  # replaced whole
    assert storage.read(IMAGES, "a.png") == b"abcdef"
    length, chunks = storage.opened(IMAGES, "a.png", size=4)
    assert length == 6 and list(chunks) == [b"abcd", b"ef"]
    assert storage.opened(IMAGES, "missing.png") is None
    assert storage.size(IMAGES, "a.png") == 6 and storage.exists(IMAGES, "a.png")
    assert storage.size(IMAGES, "missing.png") is None and not storage.exists(IMAGES, "missing.png")
    (entry,) = storage.files(IMAGES)
    assert (entry.name, entry.size) == ("a.png", 6) and abs(entry.mtime - time.time()) < 60
    assert storage.files(INTERMEDIATES) == []
    storage.remove(IMAGES, "a.png")
    storage.remove(IMAGES, "a.png")  # gone already: nothing to do
    assert storage.files(IMAGES) == []


def test_a_file_written_with_an_error_never_appears(tmp_path: Path) -> None:
    storage = SharedStorage.from_url(tmp_path).ensure()
    with pytest.raises(RuntimeError), storage.writer("lora", "half.safetensors") as handle:
        handle.write(b"half")
        assert [entry.name for entry in storage.files("lora")] != ["half.safetensors"]  # not yet there
        raise RuntimeError("the transfer broke")
    assert storage.files("lora") == []


@pytest.mark.parametrize(
    "name", ["../x.safetensors", "/etc/passwd", "sub/../../x", "", "a\x00b", "..", "x/../../other/x.safetensors"]
)
def test_names_cannot_leave_their_folder(storage: SharedStorage, name: str) -> None:
    with pytest.raises(UnsafePathError):
        storage.find_model("checkpoint", name)
    with pytest.raises(UnsafePathError):
        storage.path(IMAGES, name)
    with pytest.raises(UnsafePathError):
        storage.local_copy("lora", name)


def test_an_absolute_name_outside_by_dots_is_refused(storage: SharedStorage) -> None:
    with pytest.raises(UnsafePathError):
        storage.find_model("checkpoint", f"{storage.root}/checkpoint/../lora/x.safetensors")


def test_model_listing_and_lookup(storage: SharedStorage) -> None:
    for relative in ("a.safetensors", "sub/b.ckpt", "notes.txt", "pipe/model_index.json", "a.config/model_index.json"):
        put(storage, f"checkpoint/{relative}", b"{}")
    put(storage, "checkpoint/.hidden.safetensors", b"")
    put(storage, "vae/ft/config.json", b"{}")
    put(storage, "vae/ft/diffusion_pytorch_model.safetensors", b"")
    assert storage.list_models("checkpoint") == ["a.safetensors", "pipe", "sub/b.ckpt"]
    assert storage.list_models("vae") == ["ft"]
    assert storage.list_models("lora") == []
    assert storage.find_model("checkpoint", "sub/../a.safetensors") == "a.safetensors"
    assert storage.find_model("checkpoint", f"{storage.root}/checkpoint/sub/b.ckpt") == "sub/b.ckpt"
    assert storage.find_model("checkpoint", "pipe") == "pipe"
    assert storage.find_model("vae", "ft") == "ft"
    for absent in ("notes.txt", "a.config", "missing.safetensors", "sub"):
        assert storage.find_model("checkpoint", absent) is None


def test_checkpoint_sizes_come_from_headers_and_configs(storage: SharedStorage) -> None:
    put(storage, "checkpoint/sd1.safetensors", header_only({"model.diffusion_model.input_blocks.0.0.weight": [1, 4]}))
    put(storage, "checkpoint/xl.safetensors", header_only({"conditioner.embedders.1.model.x": [77, 1280]}))
    put(storage, "checkpoint/my_xl.ckpt", b"not read")
    put(storage, "checkpoint/pipe/model_index.json", b"{}")
    put(storage, "checkpoint/pipe/unet/config.json", json.dumps({"sample_size": 96}).encode())
    put(storage, "checkpoint/pipe/vae/config.json", json.dumps({"block_out_channels": [1, 2, 3, 4]}).encode())
    sizes = [storage.checkpoint_size(name) for name in ("sd1.safetensors", "xl.safetensors", "my_xl.ckpt", "pipe")]
    assert sizes == [512, 1024, 1024, 768]


def test_a_local_storage_hands_out_its_own_files(tmp_path: Path) -> None:
    storage = SharedStorage.from_url(tmp_path / "shared", cache=tmp_path / "cache").ensure()
    put(storage, "lora/style.safetensors", b"weights")
    assert storage.local_copy("lora", "style.safetensors") == tmp_path / "shared" / "lora" / "style.safetensors"
    assert not (tmp_path / "cache").exists()


def test_a_remote_model_is_fetched_once_and_again_after_it_changes(
    remote: SharedStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[str] = []
    get_file = remote.fs.get_file
    monkeypatch.setattr(remote.fs, "get_file", lambda path, local: fetched.append(path) or get_file(path, local))
    put(remote, "lora/sub/style.safetensors", b"first")

    copy = remote.local_copy("lora", "sub/style.safetensors")
    assert copy == tmp_path / "cache" / "lora" / "sub" / "style.safetensors" and copy.read_bytes() == b"first"
    assert remote.local_copy("lora", "sub/style.safetensors") == copy and len(fetched) == 1

    put(remote, "lora/sub/style.safetensors", b"second, longer")
    assert remote.local_copy("lora", "sub/style.safetensors").read_bytes() == b"second, longer"
    assert len(fetched) == 2
    assert sorted(path.name for path in copy.parent.iterdir() if not path.name.startswith(".")) == ["style.safetensors"]


def test_a_remote_folder_and_a_checkpoints_sidecar_config_come_whole(remote: SharedStorage, tmp_path: Path) -> None:
    put(remote, "checkpoint/pipe/model_index.json", b"{}")
    put(remote, "checkpoint/pipe/unet/config.json", b"{}")
    put(remote, "checkpoint/single.safetensors", b"weights")
    put(remote, "checkpoint/single.config/model_index.json", b"{}")
    pipe = remote.local_copy("checkpoint", "pipe")
    assert sorted(path.relative_to(pipe).as_posix() for path in pipe.rglob("*.json")) == [
        "model_index.json",
        "unet/config.json",
    ]
    single = remote.local_copy("checkpoint", "single.safetensors")
    assert single.read_bytes() == b"weights" and (single.parent / "single.config" / "model_index.json").is_file()
    put(remote, "checkpoint/pipe/unet/config.json", b'{"changed": 1}')
    assert (remote.local_copy("checkpoint", "pipe") / "unet" / "config.json").read_bytes() == b'{"changed": 1}'


def test_the_safety_folder_is_copied_when_present(remote: SharedStorage) -> None:
    assert remote.local_folder(SAFETY) is None
    put(remote, "safety/safety_checker/config.json", b"{}")
    folder = remote.local_folder(SAFETY)
    assert folder is not None and (folder / "safety_checker" / "config.json").read_bytes() == b"{}"


def test_the_janitor_sweeps_a_remote_storage(remote: SharedStorage, tmp_path: Path) -> None:
    from storage.accounts import Caller
    from storage.images import FLAGGED
    from storage.invocations import Invocations
    from storage.janitor import GRACE_S, sweep
    from storage.metadata import Metadata

    db = Metadata.open(tmp_path / "db.duckdb")
    invocations = Invocations(db, remote)
    kept = invocations.admit(1, {}, limit=9)["uuid"]
    invocations.complete(kept, [f"{kept}_0.png", FLAGGED, f"{kept}_1.png"], 1)  # _1 was removed by hand
    remote.write(IMAGES, f"{kept}_0.png", b"png")
    remote.write(IMAGES, f"{'a' * 32}_0.png", b"png")  # no record names it
    remote.write(INTERMEDIATES, f"{'d' * 32}_5_0.png", b"png")

    swept = sweep(remote, db, intermediate_age_s=3600, now=time.time() + max(GRACE_S, 3600) + 1)

    assert (swept.intermediates, swept.orphans, swept.records) == (1, 1, 1)
    assert [entry.name for entry in remote.files(IMAGES)] == [f"{kept}_0.png"]
    assert db.invocation(kept)["images"] == [f"{kept}_0.png", FLAGGED]
    invocations.delete(kept, Caller(id=1, username="admin", admin=True))
    assert remote.files(IMAGES) == []
    db.close()


@pytest.mark.parametrize(("url", "message"), [("nope://bucket/x", "Protocol not known"), ("s3://bucket/x", "s3fs")])
def test_a_storage_url_fsspec_cannot_serve_is_refused_at_start(url: str, message: str) -> None:
    from pydantic import ValidationError

    from serve_app.config import AppArgs

    if message == "s3fs" and importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed here")
    with pytest.raises(ValidationError, match=message):
        AppArgs(storage_url=url)
    assert AppArgs(storage_url="memory://enfugue").storage_url == "memory://enfugue"


def test_a_model_folder_without_its_configs_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    from storage.model_folders import UnreadableModelError, checkpoint_size

    storage = SharedStorage.from_url(tmp_path)
    odd = tmp_path / "checkpoint" / "odd"
    odd.mkdir(parents=True)
    (odd / "model_index.json").write_text("{}")  # a pipeline folder with no unet/ or vae/
    with pytest.raises(UnreadableModelError, match="odd: its configuration cannot be read"):
        checkpoint_size(storage.fs, str(odd))
