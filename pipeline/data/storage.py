"""Local paths and pyarrow filesystem URIs (``file://``, ``s3://``, ``gs://``...) behind one API."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import pyarrow.fs as pafs


@dataclass(frozen=True)
class Location:
    """A folder on some filesystem; ``str(location)`` is what the user typed."""

    fs: pafs.FileSystem
    path: str
    text: str

    @classmethod
    def parse(cls, where: str | os.PathLike) -> "Location":
        text = str(where)
        if "://" in text:
            fs, path = pafs.FileSystem.from_uri(text)
        else:
            fs, path = pafs.LocalFileSystem(), os.path.abspath(text)
        return cls(fs, path.rstrip("/"), text)

    def __str__(self) -> str:
        return self.text

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
        """Write under a temporary name, then move into place: readers never see half a file."""
        self.fs.create_dir(self.path, recursive=True)
        tmp = self.join(f".{name}.tmp-{os.getpid()}")
        with self.fs.open_output_stream(tmp) as stream:
            stream.write(data)
        self.fs.move(tmp, self.join(name))

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
