"""Objects from disk: YCB model folders (the DexYCB/HO3D layout) and folders of mesh files.

Every mesh goes through :func:`watertight_solid`: vertices split along UV seams are merged,
holes are filled and faces re-oriented; a mesh that still does not enclose a volume is
rejected with the reason. Meshes that look like the wrong unit get a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from pipeline.errors import InputError
from pipeline.objects.asset import ObjectAsset

MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf", ".stl", ".off")
DEFAULT_DENSITY = 400.0  # kg/m^3, for meshes without a mass of their own
DEFAULT_FRICTION = 0.5
YCB_MODEL_FILE = "textured_simple.obj"
YCB_TEXTURE_FILE = "texture_map.png"

_YCB_CATEGORIES = {
    "box": "box", "can": "can", "bottle": "bottle", "mug": "mug", "bowl": "bowl", "cup": "cup",
    "ball": "ball", "banana": "fruit", "apple": "fruit", "pear": "fruit", "orange": "fruit", "lemon": "fruit",
    "peach": "fruit", "plum": "fruit", "strawberry": "fruit", "marker": "marker", "scissors": "tool",
    "drill": "tool", "hammer": "tool", "screwdriver": "tool", "clamp": "tool", "spatula": "tool",
    "block": "block", "brick": "box", "pitcher": "pitcher", "plate": "plate", "skillet": "pan",
}


def ycb_category(name: str) -> str:
    words = name.lower().split("_")
    for word in reversed(words):
        if word in _YCB_CATEGORIES:
            return _YCB_CATEGORIES[word]
    return "ycb"


def watertight_solid(mesh, path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Merged, hole-filled, outward-facing (vertices, faces) of ``mesh``, or an InputError."""
    import trimesh

    if len(mesh.faces) == 0:
        raise InputError("mesh has no triangles", path)
    solid = trimesh.Trimesh(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces), process=True)
    solid.merge_vertices()
    solid.update_faces(solid.nondegenerate_faces())
    solid.remove_unreferenced_vertices()
    notes = []
    if not solid.is_watertight:
        trimesh.repair.fill_holes(solid)
        notes.append("holes filled")
    if not solid.is_watertight:
        edges = trimesh.grouping.group_rows(solid.edges_sorted, require_count=1)
        raise InputError(
            f"mesh is not watertight and could not be repaired ({len(edges)} open edges remain); "
            "expected a closed surface", path)
    if not solid.is_winding_consistent:
        trimesh.repair.fix_winding(solid)
        notes.append("winding fixed")
    if solid.volume < 0:
        solid.invert()
        notes.append("faces inverted")
    if solid.volume <= 1e-12:
        raise InputError("mesh encloses no volume; expected a solid object", path)
    return np.asarray(solid.vertices, dtype=np.float64), np.asarray(solid.faces, dtype=np.int64), notes


def _warn_units(extents: np.ndarray, path: Path) -> None:
    size = float(extents.max())
    if size > 1.0 or size < 0.01:
        warnings.warn(f"{path}: largest extent is {size:.4g} m; objects are expected in metres "
                      "(2-25 cm): is the mesh in millimetres or another unit?", stacklevel=3)


def _with_texture(mesh, texture: Path | None):
    """Give a UV-mapped mesh the ``texture`` image (YCB's texture_map.png, whatever the .mtl says)."""
    import trimesh
    from PIL import Image

    visual = mesh.visual
    if texture is None or getattr(visual, "uv", None) is None:
        return mesh
    try:
        with Image.open(texture) as image:
            mesh.visual = trimesh.visual.TextureVisuals(uv=visual.uv, image=image.convert("RGB"))
    except OSError as exc:
        raise InputError(f"could not read texture image ({exc})", texture) from None
    return mesh


def load_mesh_asset(path: Path, name: str, category: str, texture: Path | None = None,
                    density: float = DEFAULT_DENSITY, friction: float = DEFAULT_FRICTION) -> ObjectAsset:
    """One mesh file as an asset (textured if the file or ``texture`` provides one)."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise InputError("mesh file not found", path)
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise InputError(f"could not read mesh ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(mesh, trimesh.Trimesh):
        raise InputError("file holds no triangle mesh", path)
    vertices, faces, notes = watertight_solid(mesh, path)
    _warn_units(vertices.max(axis=0) - vertices.min(axis=0), path)
    visual = _with_texture(mesh, texture)
    if visual.visual.kind is None:
        visual = trimesh.Trimesh(vertices, faces, process=False,
                                 vertex_colors=np.tile([178, 178, 178, 255], (len(vertices), 1)))
    volume = float(trimesh.Trimesh(vertices, faces, process=False).volume)
    return ObjectAsset(name=name, category=category, vertices=vertices, faces=faces, visual=visual,
                       mass=density * volume, friction=friction, source=str(path), notes=notes)


def ycb_model_files(root: Path) -> dict[str, Path]:
    """``{<id>_<name>: folder}`` for a YCB root (holding ``models/``) or its ``models`` folder."""
    root = Path(root)
    models = root / "models" if (root / "models").is_dir() else root
    found = {}
    for folder in sorted(p for p in models.iterdir() if p.is_dir()):
        if (folder / YCB_MODEL_FILE).is_file():
            found[folder.name] = folder
    return found


def load_ycb_asset(folder: Path) -> ObjectAsset:
    texture = folder / YCB_TEXTURE_FILE
    return load_mesh_asset(folder / YCB_MODEL_FILE, folder.name, ycb_category(folder.name),
                           texture=texture if texture.is_file() else None)


def mesh_folder_files(root: Path) -> dict[str, Path]:
    """``{stem: file}`` for every mesh file directly inside ``root``."""
    files = {}
    for path in sorted(Path(root).iterdir()):
        if path.is_file() and path.suffix.lower() in MESH_SUFFIXES:
            if path.stem in files:
                raise InputError(f"two meshes are named '{path.stem}' ({files[path.stem].name}, {path.name})", root)
            files[path.stem] = path
    return files
