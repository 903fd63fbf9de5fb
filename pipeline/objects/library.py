"""``load_object_library``: the embedded objects, a YCB model folder or any folder of meshes.

A library knows its object names at once and builds each asset on first access, so a stage
that works on one object never pays for the others. Embedded meshes are generated once per
version of their recipe and cached on disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from pipeline.errors import BadData, InputError
from pipeline.objects.asset import ObjectAsset
from pipeline.paths import atomic_write_npz, cache_dir

TARGET_FACES = 6000
ANALYTIC_TOLERANCE = 1e-4  # metres: an exact primitive's formula serves as the SDF only if the mesh follows it this closely


def _recipe_digest() -> str:
    """Changes whenever the code that generates the embedded objects does."""
    from pipeline.objects import builtin, meshing, paint, primitives

    digest = hashlib.sha256()
    for module in (builtin, meshing, paint, primitives):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def build_builtin_mesh(name: str) -> dict[str, np.ndarray]:
    """Solid mesh, and a once-subdivided painted mesh for rendering, of an embedded object (uncached).

    The visual mesh has four times the faces of the solid (about 1.3 mm edges) so that the
    painted labels and stripes stay crisp in 128-256 px condition maps.
    """
    import trimesh

    from pipeline.geometry import sample_surface
    from pipeline.objects.builtin import BUILTIN_SPECS
    from pipeline.objects.meshing import evaluate, mesh_shape, project_onto_surface

    spec = BUILTIN_SPECS[name]
    half = np.asarray(spec.half_extents)
    pitch = float(np.clip(2 * half.max() / 150, 0.0008, 0.0015))
    vertices, faces = mesh_shape(spec.shape, -half - 4 * pitch, half + 4 * pitch, pitch, TARGET_FACES)
    visual_vertices, visual_faces = trimesh.remesh.subdivide(vertices, faces)
    visual_vertices = project_onto_surface(spec.shape, visual_vertices)
    normals = trimesh.Trimesh(visual_vertices, visual_faces, process=False).vertex_normals
    colors = np.clip(spec.paint(visual_vertices, normals), 0.0, 1.0)
    deviation = np.inf
    if spec.exact:
        normals = trimesh.Trimesh(vertices, faces, process=False).vertex_normals
        samples, _ = sample_surface(vertices, faces, normals, 20000, seed=0)
        deviation = float(np.abs(evaluate(spec.shape, samples)).max())
    return {"vertices": vertices, "faces": faces, "visual_vertices": visual_vertices,
            "visual_faces": np.asarray(visual_faces, dtype=np.int64),
            "colors": (colors * 255).round().astype(np.uint8), "analytic_deviation": np.array(deviation)}


def builtin_asset(name: str) -> ObjectAsset:
    import trimesh

    from pipeline.objects.builtin import BUILTIN_SPECS

    spec = BUILTIN_SPECS[name]
    path = cache_dir("objects", "builtin") / f"{name}_{_recipe_digest()}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    else:
        arrays = build_builtin_mesh(name)
        atomic_write_npz(path, arrays)
    vertices, faces = arrays["vertices"].astype(np.float64), arrays["faces"].astype(np.int64)
    alpha = np.full((len(arrays["colors"]), 1), 255, dtype=np.uint8)
    visual = trimesh.Trimesh(arrays["visual_vertices"], arrays["visual_faces"], process=False,
                             vertex_colors=np.hstack([arrays["colors"], alpha]))
    volume = float(trimesh.Trimesh(vertices, faces, process=False).volume)
    return ObjectAsset(name=name, category=spec.category, vertices=vertices, faces=faces, visual=visual,
                       mass=spec.density * volume, friction=spec.friction, source="builtin",
                       exact_sdf=spec.shape if float(arrays["analytic_deviation"]) <= ANALYTIC_TOLERANCE else None)


class ObjectLibrary:
    """Named objects, built lazily: ``library['mug']``, ``for asset in library``, ``library.names``."""

    def __init__(self, source: str, loaders: dict[str, Callable[[], ObjectAsset]]):
        self.source = source
        self._loaders = loaders
        self._assets: dict[str, ObjectAsset] = {}

    @property
    def names(self) -> list[str]:
        return list(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def __contains__(self, name: str) -> bool:
        return name in self._loaders

    def __getitem__(self, name: str) -> ObjectAsset:
        if name not in self._loaders:
            raise KeyError(f"no object '{name}' in library {self.source} (it has: {', '.join(self.names)})")
        if name not in self._assets:
            self._assets[name] = self._loaders[name]()
        return self._assets[name]

    def __iter__(self) -> Iterator[ObjectAsset]:
        return (self[name] for name in self.names)

    def checked_names(self, names: list[str] | None) -> list[str]:
        """``names`` (all when empty), or a clear error for unknown ones; builds nothing."""
        if not names:
            return self.names
        unknown = [n for n in names if n not in self]
        if unknown:
            raise InputError(f"unknown object(s) {', '.join(unknown)}; the library has: {', '.join(self.names)}",
                             self.source)
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InputError(f"object(s) {', '.join(repeated)} named more than once", self.source)
        return list(names)

    def require(self, names, dataset) -> None:
        """A clear error naming ``dataset`` when it holds objects this library lacks; builds nothing."""
        missing = sorted(set(names) - set(self.names))
        if missing:
            raise BadData(f"object(s) {', '.join(missing)} not in the object library '{self.source}' (set "
                          "objects.library to a library holding the dataset's objects, e.g. a YCB folder)", dataset)

    def select(self, names: list[str] | None) -> list[ObjectAsset]:
        """The named assets (all when ``names`` is empty)."""
        return [self[n] for n in self.checked_names(names)]


def load_object_library(spec: str | Path = "builtin") -> ObjectLibrary:
    """``'builtin'``, a YCB folder (``models/<id>_<name>/textured_simple.obj``) or a mesh folder."""
    from pipeline.objects import loaders

    if str(spec) == "builtin":
        from pipeline.objects.builtin import BUILTIN_SPECS

        return ObjectLibrary("builtin", {name: (lambda n=name: builtin_asset(n)) for name in BUILTIN_SPECS})
    root = Path(spec)
    if not root.is_dir():
        raise InputError("object library not found: expected 'builtin', a YCB folder or a folder of meshes", root)
    ycb = loaders.ycb_model_files(root)
    if ycb:
        return ObjectLibrary(str(root), {name: (lambda f=folder: loaders.load_ycb_asset(f)) for name, folder in ycb.items()})
    files = loaders.mesh_folder_files(root)
    if not files:
        raise InputError(f"no objects found: expected models/<id>_<name>/{loaders.YCB_MODEL_FILE} (YCB) "
                         f"or mesh files ({', '.join(loaders.MESH_SUFFIXES)})", root)
    return ObjectLibrary(str(root), {name: (lambda p=path, n=name: loaders.load_mesh_asset(p, n, "mesh"))
                                     for name, path in files.items()})
