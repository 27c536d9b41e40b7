"""Storage every node can reach: images, intermediates and model folders, on a path or an fsspec URL.

``storage_url`` (serve_app/config.py) names it: a path (a shared mount) or a URL fsspec knows
(s3://bucket/enfugue needs s3fs installed, gs:// gcsfs; memory:// in tests); unset, the data
folder itself. The ingress lists models and streams images through it, the Planner writes images
into it, the Store's janitor sweeps it, downloads write model files into it. Model roles load
from ``local_copy``: the file itself on a local filesystem, else a copy under the node's data
folder (``cache/``), fetched again when the source changes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import posixpath
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from filelock import FileLock
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from storage import model_folders
from storage.files import DataPaths
from storage.model_folders import MODEL_KINDS, entries, inside, missing

IMAGES, INTERMEDIATES, SAFETY = "images", "intermediates", "safety"
# What an admitted invocation needs to run (again): its plan, and its input images, each stored
# once under the hash of its bytes (deployments/jobs.py).
JOBS, INPUTS = "jobs", "inputs"
FOLDERS = (IMAGES, INTERMEDIATES, SAFETY, JOBS, INPUTS, *MODEL_KINDS)
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Entry:
    """A file in a folder of the storage."""

    name: str
    size: int
    mtime: float  # seconds since the epoch; infinite when the filesystem does not say


def shared_storage(data_dir: str | Path, storage_url: str | None) -> SharedStorage:
    """The application's storage: ``storage_url``, else the data folder; model copies go to the data folder."""
    return SharedStorage.from_url(storage_url or data_dir, cache=DataPaths(Path(data_dir)).cache)


class SharedStorage:
    def __init__(self, fs: AbstractFileSystem, root: str, cache: Path | None = None) -> None:
        self.fs, self.root, self._cache = fs, root, cache

    @classmethod
    def from_url(cls, url: str | Path, cache: Path | None = None) -> SharedStorage:
        # No listing cache: fsspec's never expires and sees only this process's writes, while other
        # processes (the Planner, downloads, other nodes) write here all the time.
        fs, root = url_to_fs(str(url), use_listings_cache=False)
        if not root.strip("/"):
            raise ValueError(f"storage {url!s:.200} names no folder (give a path, or a URL with a bucket and folder)")
        return cls(fs, posixpath.normpath(root), cache)

    def __repr__(self) -> str:
        return f"SharedStorage({self.fs.unstrip_protocol(self.root)!r})"

    def folder(self, folder: str) -> str:
        if folder not in FOLDERS:
            raise ValueError(f"unknown storage folder {folder!r}; allowed: {', '.join(FOLDERS)}")
        return posixpath.join(self.root, folder)

    def path(self, folder: str, name: str) -> str:
        """The path of ``name`` in ``folder``; ``UnsafePathError`` when it would leave the folder."""
        return inside(self.folder(folder), name)

    def ensure(self) -> SharedStorage:
        for folder in (IMAGES, INTERMEDIATES, JOBS, INPUTS, *MODEL_KINDS):
            self.fs.makedirs(self.folder(folder), exist_ok=True)
        return self

    # files

    @contextlib.contextmanager
    def writer(self, folder: str, name: str) -> Iterator[IO[bytes]]:
        """A file that appears under ``name`` whole or not at all; an error or a cancel on the way
        leaves nothing. Locally it is written under a hidden partial name beside it and renamed into
        place; an object store's upload becomes the object only when committed (one put, or a
        completed multipart upload)."""
        path = self.path(folder, name)
        if not isinstance(self.fs, LocalFileSystem):
            handle = self.fs.open(path, "wb", autocommit=False)
            try:
                yield handle
                handle.close()
                handle.commit()
            except BaseException:
                handle.discard()
                raise
            return
        partial = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.{secrets.token_hex(4)}.partial")
        placed = False
        try:
            with self.fs.open(partial, "wb") as handle:
                yield handle
            self.fs.mv(partial, path)
            placed = True
        finally:
            if not placed:
                with contextlib.suppress(OSError):
                    self.fs.rm_file(partial)

    def write(self, folder: str, name: str, data: bytes) -> None:
        with self.writer(folder, name) as handle:
            handle.write(data)

    def read(self, folder: str, name: str) -> bytes:
        return self.fs.cat_file(self.path(folder, name))

    def opened(self, folder: str, name: str, size: int = CHUNK_BYTES) -> tuple[int, Iterator[bytes]] | None:
        """The file's length and its bytes, ``size`` at a time, from a handle opened now (for
        streaming it out: a file removed meanwhile still streams whole); None when there is none."""
        try:
            handle = self.fs.open(self.path(folder, name), "rb")
        except OSError as error:
            if missing(error) or isinstance(error, IsADirectoryError):
                return None
            raise
        length = handle.seek(0, os.SEEK_END)
        handle.seek(0)

        def chunks() -> Iterator[bytes]:
            with handle:
                while block := handle.read(size):
                    yield block

        return length, chunks()

    def size(self, folder: str, name: str) -> int | None:
        """The file's size; None when there is no such file."""
        try:
            info = self.fs.info(self.path(folder, name))
        except OSError as error:
            if missing(error):
                return None
            raise
        return int(info["size"]) if info["type"] == "file" else None

    def exists(self, folder: str, name: str) -> bool:
        return self.size(folder, name) is not None

    def remove(self, folder: str, name: str) -> None:
        """Remove the file, if it is there."""
        try:
            self.fs.rm_file(self.path(folder, name))
        except OSError as error:
            if not missing(error):
                raise

    def files(self, folder: str) -> list[Entry]:
        """The files directly in ``folder`` (hidden ones too), with sizes and modification times."""
        return [
            Entry(posixpath.basename(entry["name"].rstrip("/")), int(entry.get("size") or 0), modified(entry))
            for entry in entries(self.fs, self.folder(folder))
            if entry["type"] == "file"
        ]

    # models

    def list_models(self, kind: str) -> list[str]:
        return model_folders.list_models(self.fs, self.folder(_kind(kind)))

    def find_model(self, kind: str, name: str) -> str | None:
        """The model's name relative to its folder (normalised POSIX), or None when there is none."""
        folder = self.folder(_kind(kind))
        found = model_folders.find_model(self.fs, folder, name)
        return None if found is None or found == folder else found[len(folder) + 1 :]

    def checkpoint_size(self, name: str) -> int:
        """The checkpoint's native size, from its configuration or tensor headers (range reads)."""
        return model_folders.checkpoint_size(self.fs, self.path("checkpoint", name))

    def local_copy(self, kind: str, name: str) -> Path:
        """The model ``name`` of ``kind`` as a local path a loader opens: itself on a local
        filesystem, else a copy in the cache (a single-file checkpoint's ``.config`` sidecar
        folder comes along)."""
        return self._local(self.path(_kind(kind), name))

    def local_folder(self, folder: str) -> Path | None:
        """A whole folder (the safety checker's) as a local path, as ``local_copy``; None when absent."""
        path = self.folder(folder)
        return self._local(path) if self.fs.isdir(path) else None

    def _local(self, source: str) -> Path:
        if isinstance(self.fs, LocalFileSystem):
            return Path(source)
        if self._cache is None:
            raise RuntimeError(f"{self!r} is not local and has no cache folder for copies of its models")
        target = self._cache / source[len(self.root) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        stamp = target.parent / f".{target.name}.stamp"
        # Replicas on one node share the cache: one fetches, the others wait and find it there.
        with FileLock(target.parent / f".{target.name}.lock"):
            files = self._sources(source)
            version = json.dumps(sorted((path, _version(info)) for path, info in files.items()))
            if target.exists() and stamp.is_file() and stamp.read_text() == version:
                return target
            stamp.unlink(missing_ok=True)
            self._fetch(files, posixpath.dirname(source), target.parent)
            stamp.write_text(version)
        return target

    def _sources(self, source: str) -> dict[str, dict[str, Any]]:
        """The files a copy of ``source`` needs, with their info: it (or all a folder holds) and,
        for a single-file checkpoint, its sidecar configuration."""
        info = self.fs.info(source)
        if info["type"] == "directory":
            return dict(self.fs.find(source, detail=True))
        files = {source: info}
        if (sidecar := model_folders.sidecar_config(self.fs, source)) is not None:
            files.update(self.fs.find(sidecar, detail=True))
        return files

    def _fetch(self, files: dict[str, dict[str, Any]], parent: str, destination: Path) -> None:
        """Fetch ``files`` (under ``parent``) into a hidden folder beside ``destination``, then move each
        top-level item into place (a loader reading the old copy of a file keeps its handle)."""
        staging = destination / f".fetch-{secrets.token_hex(4)}"
        try:
            for path in files:
                # An object store's keys are not a file system's paths: one with ".." in it must
                # not write outside the staging folder.
                relative = posixpath.relpath(posixpath.normpath(path), posixpath.normpath(parent))
                if relative == ".." or relative.startswith("../"):
                    raise model_folders.UnsafePathError(f"{path!r} is outside the folder {parent}")
                local = staging / relative
                local.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(path, str(local))
            for item in staging.iterdir():
                placed = destination / item.name
                if placed.is_dir() and not placed.is_symlink():  # a folder is not replaced in one rename
                    shutil.rmtree(placed)
                elif item.is_dir() and placed.exists():
                    placed.unlink()
                item.replace(placed)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _kind(kind: str) -> str:
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; allowed: {', '.join(MODEL_KINDS)}")
    return kind


def modified(info: dict[str, Any]) -> float:
    """A file's modification time from its fsspec info, whatever the filesystem calls it."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        if isinstance(value, int | float):
            return float(value)
    return math.inf


def _version(info: dict[str, Any]) -> list[Any]:
    """What changes when a file is replaced: its size, and its etag or generation, else its time."""
    tag = next((info[key] for key in ("ETag", "etag", "md5Hash", "generation") if info.get(key)), None)
    return [info.get("size"), str(tag) if tag is not None else modified(info)]
