"""What the ``handbooster objects`` subcommands do, as plain functions taking paths and configs."""

from __future__ import annotations

from pipeline.config import ObjectsConfig
from pipeline.errors import InputError
from pipeline.objects.library import load_object_library
from pipeline.parallel import parallel_map


def list_objects(config: ObjectsConfig, names: list[str] | None = None) -> dict:
    """Summaries of every object; objects that fail to load are reported together at the end."""
    library = load_object_library(config.library)
    summaries, problems = [], []
    for name in library.checked_names(names):
        try:
            summaries.append(library[name].summary())
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        raise InputError(f"{len(problems)} of {len(library)} objects rejected: " + "; ".join(problems), library.source)
    return {"library": library.source, "count": len(summaries), "objects": summaries}


def _prepare_job(job: tuple[str, str, int, dict]) -> dict:
    library_source, name, voxels, vhacd = job
    asset = load_object_library(library_source)[name]
    result = asset.prepare(voxels=voxels, vhacd=vhacd)
    result["pieces"] = len(asset.convex_pieces(vhacd))
    return result


def prepare_objects(config: ObjectsConfig, names: list[str] | None = None, progress: bool = True,
                    workers: int = 0) -> dict:
    """Compute and cache each object's SDF grid and convex decomposition; ``workers`` > 0
    prepares that many objects at once in separate processes (each is mostly one core)."""
    library = load_object_library(config.library)
    names = library.checked_names(names)
    jobs = [(library.source, name, config.sdf_voxels, config.vhacd.pybullet_params()) for name in names]
    results = parallel_map(_prepare_job, jobs, workers=workers, desc="preparing objects", unit="object",
                           progress=progress, chunksize=1)
    return {"library": library.source, "prepared": dict(zip(names, results))}
