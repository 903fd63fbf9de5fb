"""Local paths and pyarrow filesystem URIs (``file://``, ``s3://``, ``gs://``...) behind one API,
and the one-writer-per-folder lock.

A dataset folder is laid out so that every Arrow tool opens it as it is: Parquet shards, and
handbooster's own files hidden from dataset discovery (pyarrow, pandas and DuckDB skip names
starting with ``.`` or ``_``; Hugging Face ``datasets`` skips names starting with ``.`` and
folders starting with ``__``): ``.manifest.json``, ``.progress.json``, ``.summary.json``,
``.lock`` and a ``__report__/`` folder for pictures and reports.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import json
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass

import pyarrow.fs as pafs

from pipeline.errors import DatasetConflict, InputError, MissingResource

REPORT_DIR = "__report__"
LOCK = ".lock"
MANIFEST = ".manifest.json"  # a dataset folder's manifest (``pipeline.data.shards`` writes it)
JOURNAL = ".progress.json"  # a dataset being written: its finished shards
LEGACY_MANIFEST = "manifest.json"  # written by handbooster 0.1 before the Arrow-friendly layout


@dataclass(frozen=True)
class Location:
    """A folder on some filesystem; ``str(location)`` is what the user typed."""

    fs: pafs.FileSystem
    path: str
    text: str

    @classmethod
    def parse(cls, where: str | os.PathLike) -> Location:
        if isinstance(where, Location):
            return where
        text = str(where)
        if is_uri(text):
            try:
                fs, path = pafs.FileSystem.from_uri(text)
            except (OSError, ValueError) as exc:  # an unknown scheme, a store that does not answer (ArrowInvalid: ValueError)
                raise MissingResource(f"cannot open the filesystem of this URI: {exc}", text) from None
        else:
            fs, path = pafs.LocalFileSystem(), os.path.abspath(text)
        return cls(fs, path.rstrip("/") or "/", text)

    def __str__(self) -> str:
        return self.text

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def child(self, name: str) -> Location:
        """The folder ``name`` inside this one."""
        return Location(self.fs, self.join(name), self.address(name) if not self.is_local
                        else f"{self.text.rstrip('/')}/{name}")

    def address(self, name: str) -> str:
        """Where ``name`` inside this folder is, as a user types it: an absolute path, or the URI
        with ``name`` in its path, before any query (``?endpoint_override=...``) the URI carries."""
        if self.is_local:
            return self.join(name)
        parts = urllib.parse.urlsplit(self.text)
        return urllib.parse.urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}"))

    def join(self, name: str) -> str:
        return f"{self.path}/{name}"

    def exists(self, name: str = "") -> bool:
        info = self.fs.get_file_info(self.join(name) if name else self.path)
        return info.type != pafs.FileType.NotFound

    def list_files(self) -> list[str]:
        """Names of the files directly inside the folder (none if it does not exist)."""
        if not self.exists():
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=False))
        return sorted(info.base_name for info in infos if info.type == pafs.FileType.File)

    def read_bytes(self, name: str) -> bytes:
        with self.fs.open_input_stream(self.join(name)) as stream:
            return stream.read()

    def write_atomic(self, name: str, data: bytes) -> None:
        """Write under a temporary name, then move into place: readers never see half a file,
        and a failed write (a full disk) leaves no temporary file behind."""
        folder = os.path.dirname(self.join(name))
        self.fs.create_dir(folder, recursive=True)
        base = os.path.basename(name)
        tmp = f"{folder}/.{base}.tmp-{os.getpid()}-{threading.get_ident()}"
        try:
            with self.fs.open_output_stream(tmp) as stream:
                stream.write(data)
            self.fs.move(tmp, self.join(name))
        except BaseException as exc:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise MissingResource(f"no space left on the device while writing {name}; free some space and run "
                                      "the command again: it resumes where it stopped", self) from None
            raise

    def write_json(self, name: str, payload) -> None:
        self.write_atomic(name, (json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n").encode())

    def delete(self, name: str) -> None:
        if self.exists(name):
            self.fs.delete_file(self.join(name))

    def remove_if_empty(self) -> None:
        if self.exists() and not self.fs.get_file_info(pafs.FileSelector(self.path, recursive=False)):
            self.fs.delete_dir(self.path)

    def sha256(self, name: str) -> tuple[str, int]:
        digest, size = hashlib.sha256(), 0
        with self.fs.open_input_stream(self.join(name)) as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size


def is_uri(where) -> bool:
    """Whether ``where`` names a filesystem by URI (``s3://``, ``file://``...) rather than a path."""
    return "://" in str(where)


def refuse_uri(where, what: str, hint: str = "") -> None:
    """``what`` (a stage writing its output, a stage reading a checkpoint) works with local file
    APIs: a filesystem URI for ``where`` is refused before any work, rather than read as the
    local path ``s3:/bucket/...``."""
    if is_uri(where):
        raise InputError(f"{what} with local file APIs: expected a local path, not a filesystem URI{hint}", where)


def is_temporary(name: str) -> bool:
    """Names that :meth:`Location.write_atomic` uses before the final move."""
    return name.startswith(".") and ".tmp-" in name


class _Held:
    def __init__(self, fd: int, created: bool):
        self.fd, self.created, self.count = fd, created, 0


_HELD: dict[str, _Held] = {}
_HELD_GUARD = threading.Lock()


def _acquire(key: str, location: Location) -> int:
    """An fd holding ``KEY/.lock`` exclusively, the file naming this process; the file is the
    one at the path (a holder that just finished unlinks its file: try again on the new one)."""
    import fcntl

    path = os.path.join(key, LOCK)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DatasetConflict(f"is being written by {holder}; wait for it to finish or choose "
                                      "another folder", location) from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})".encode(), 0)
            return fd
        os.close(fd)


@contextlib.contextmanager
def folder_lock(where):
    """Hold ``WHERE/.lock`` exclusively for the block: a second process writing the same folder
    is refused at once (``DatasetConflict`` naming the folder and the process holding it). The
    OS drops the lock when its process dies, so a crash never leaves the folder locked; a clean
    exit removes the file. Nested uses in one process share the lock. A folder this call
    created and that is empty afterwards is removed again. Remote filesystems are not locked."""
    location = Location.parse(where)
    if not location.is_local:
        yield
        return
    key = os.path.realpath(location.path)
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is None:
            created = not os.path.isdir(key)
            os.makedirs(key, exist_ok=True)
            try:
                held = _HELD[key] = _Held(_acquire(key, location), created)
            except BaseException:
                if created and not os.listdir(key):
                    os.rmdir(key)
                raise
        held.count += 1
    try:
        yield
    finally:
        with _HELD_GUARD:
            held.count -= 1
            if held.count == 0:
                del _HELD[key]
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(key, LOCK))
                os.close(held.fd)
                if held.created and not os.listdir(key):
                    os.rmdir(key)


def code_version() -> str:
    """The installed handbooster version: part of every output's identity."""
    from importlib import metadata

    try:
        return metadata.version("handbooster")
    except metadata.PackageNotFoundError:
        return "unknown"


def differing_keys(before, now, prefix: str = "") -> list[str]:
    """The dotted keys at which two nested records differ (``config.grasp.iterations``), sorted."""
    if isinstance(before, dict) and isinstance(now, dict):
        return [key for name in sorted(set(before) | set(now), key=str)
                for key in differing_keys(before.get(name), now.get(name), f"{prefix}.{name}" if prefix else str(name))]
    return [prefix] if before != now else []


_WRITING_FOR: contextvars.ContextVar[dict | None] = contextvars.ContextVar("writing_for", default=None)


@contextlib.contextmanager
def writing_for(inputs: dict):
    """Datasets written in the block record ``inputs`` (the running stage's input fingerprints)
    in their identity, so a folder holding a dataset made from other inputs is never resumed as
    this run's (``ShardWriter``): a merge of ``s1_train`` into a folder holding the merge of
    ``s0_train`` kept the old rows and reported them as new."""
    token = _WRITING_FOR.set(inputs)
    try:
        yield
    finally:
        _WRITING_FOR.reset(token)


def written_for() -> dict | None:
    """The input fingerprints of the stage running in this context (:func:`writing_for`), if any."""
    return _WRITING_FOR.get()


def manifest_fingerprint(manifest: dict) -> str:
    """A digest of what a dataset holds (its name, kind and every shard's sha256), from its
    manifest: stays the same wherever the folder is moved, changes with any row."""
    payload = json.dumps([manifest["name"], manifest["kind"], [s["sha256"] for s in manifest["shards"]]])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
