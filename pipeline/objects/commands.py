"""What the ``handbooster objects`` subcommands do, as plain functions taking paths and configs."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import ObjectsConfig
from pipeline.errors import InputError
from pipeline.objects.library import load_object_library


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


def _prepare_one(library_source: str, name: str, voxels: int, vhacd: dict) -> dict:
    asset = load_object_library(library_source)[name]
    result = asset.prepare(voxels=voxels, vhacd=vhacd)
    result["pieces"] = len(asset.convex_pieces(vhacd))
    return result


def prepare_objects(config: ObjectsConfig, names: list[str] | None = None, progress: bool = True,
                    workers: int = 0) -> dict:
    """Compute and cache each object's SDF grid and convex decomposition; ``workers`` > 0
    prepares that many objects at once in separate processes (each is mostly one core)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    library = load_object_library(config.library)
    names = library.checked_names(names)
    jobs = [(library.source, name, config.sdf_voxels, config.vhacd.pybullet_params()) for name in names]
    bar = tqdm(total=len(names), desc="preparing objects", unit="object", disable=not progress)
    prepared = {}
    if workers > 0 and len(names) > 1:
        with ProcessPoolExecutor(min(workers, len(names)), mp_context=multiprocessing.get_context("spawn")) as pool:
            for name, result in zip(names, pool.map(_prepare_one, *zip(*jobs))):
                prepared[name] = result
                bar.update()
    else:
        for name, job in zip(names, jobs):
            bar.set_postfix_str(name)
            prepared[name] = _prepare_one(*job)
            bar.update()
    bar.close()
    return {"library": library.source, "prepared": prepared}


def object_sheet(config: ObjectsConfig, out: Path, names: list[str] | None = None, columns: int = 5) -> dict:
    """Render a labelled contact sheet of the library to ``out`` (PNG)."""
    from pipeline.paths import atomic_write_png
    from renderers.sheet import contact_sheet

    if out.suffix.lower() != ".png":
        raise InputError("expected a .png output path", out)
    library = load_object_library(config.library)
    assets = library.select(names)
    atomic_write_png(out, contact_sheet(assets, columns=columns))
    return {"library": library.source, "objects": len(assets), "out": str(out)}
