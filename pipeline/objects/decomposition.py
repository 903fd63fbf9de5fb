"""Convex decomposition for pybullet (its built-in VHACD), cached on disk by mesh hash.

VHACD takes from a fraction of a second to several seconds per mesh, so each result is
kept under ``cache_dir('objects', 'vhacd')`` keyed by the mesh's hash and the VHACD
parameters; a cache hit never runs VHACD again. The result is an OBJ holding one object
per convex piece, which ``pybullet.createCollisionShape(GEOM_MESH, fileName=...)`` loads
as a compound shape.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from pipeline.paths import cache_dir
from pipeline.quiet import import_pybullet, silenced_native_output


def default_vhacd_params() -> dict:
    from pipeline.config import VhacdConfig

    return VhacdConfig().pybullet_params()


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    lines = [f"v {x:.7f} {y:.7f} {z:.7f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    Path(path).write_text("\n".join(lines) + "\n")


def decomposition_path(mesh_hash: str, params: dict) -> Path:
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    return cache_dir("objects", "vhacd") / f"{mesh_hash}_{key}.obj"


def run_vhacd(vertices: np.ndarray, faces: np.ndarray, out_path: Path, params: dict) -> None:
    """VHACD on a mesh, its chatter silenced; the OBJ appears at ``out_path`` only when complete."""
    pybullet = import_pybullet()
    with tempfile.TemporaryDirectory(prefix="handbooster-vhacd-") as tmp:
        source, result, log = Path(tmp, "in.obj"), Path(tmp, "out.obj"), Path(tmp, "log.txt")
        write_obj(source, vertices, faces)
        with silenced_native_output():
            pybullet.vhacd(str(source), str(result), str(log), **params)
        if not result.is_file() or result.stat().st_size == 0:
            raise RuntimeError(f"VHACD produced no output (log: {log.read_text()[-500:] if log.exists() else 'none'})")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(result, out_path)


def convex_decomposition(vertices: np.ndarray, faces: np.ndarray, mesh_hash: str, params: dict | None = None) -> Path:
    """Path of the cached decomposition OBJ, running VHACD only on a cache miss."""
    params = {**default_vhacd_params(), **(params or {})}
    path = decomposition_path(mesh_hash, params)
    if not path.is_file():
        run_vhacd(vertices, faces, path, params)
    return path


def read_pieces(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The convex pieces of a decomposition OBJ as (vertices, faces) pairs."""
    pieces, vertices, faces = [], [], []
    offset = 0

    def close_piece():
        nonlocal vertices, faces, offset
        if faces:
            v = np.array(vertices, dtype=np.float64)
            f = np.array(faces, dtype=np.int64) - offset
            used = np.unique(f)
            remap = np.full(len(v), -1)
            remap[used] = np.arange(len(used))
            pieces.append((v[used], remap[f]))
        offset += len(vertices)
        vertices, faces = [], []

    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] in ("o", "g") and faces:
            close_piece()
        elif parts[0] == "v":
            vertices.append([float(x) for x in parts[1:4]])
        elif parts[0] == "f":
            faces.append([int(token.split("/")[0]) - 1 for token in parts[1:4]])
    close_piece()
    return pieces
