"""The ``render`` commands: fill a dataset's condition maps; preview random hand-object scenes."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from pipeline.config import ObjectsConfig
from pipeline.camera import crop_intrinsics, project, square_box
from pipeline.data.schema import pose12_matrix
from pipeline.errors import InputError
from pipeline.hand.joints import PALM_JOINTS
from pipeline.imaging import png_bytes

PALM_NORMAL = np.array([0.0, -1.0, 0.0])  # MANO layout: the palm faces -y


def random_scene(hand_model, library, names: list[str], size: int, rng: np.random.Generator) -> dict:
    """A hand with a natural random pose, its palm 2 cm from a random point of a random object."""
    asset = library[names[int(rng.integers(len(names)))]]
    rotation = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
    centre = np.array([rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), rng.uniform(0.45, 0.55)])
    points, normals = (t.double().numpy() for t in asset.sample_surface(64, seed=int(rng.integers(1 << 31))))
    points, normals = points @ rotation.T + centre, normals @ rotation.T
    facing = np.flatnonzero(normals[:, 2] < -0.2)
    pick = int(rng.choice(facing)) if len(facing) else 0
    align = Rotation.align_vectors([-normals[pick]], [PALM_NORMAL])[0]
    twist = Rotation.from_rotvec(normals[pick] * rng.uniform(0, 2 * np.pi))
    articulation = hand_model.anatomy.sample(1, int(rng.integers(1 << 31)))[0].double()
    pose = torch.cat([torch.as_tensor((twist * align).as_rotvec()), articulation])[None].to(hand_model.dtype)
    with torch.no_grad():
        _, joints = hand_model(pose)
        trans = torch.as_tensor(points[pick] + 0.02 * normals[pick]) - joints[0, list(PALM_JOINTS)].mean(0).double()
        vertices, joints = hand_model(pose, trans=trans[None].to(hand_model.dtype))
    vertices, joints = vertices[0].double().numpy(), joints[0].double().numpy()
    K0 = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    object_points = np.asarray(asset.vertices) @ rotation.T + centre
    box = square_box(project(np.concatenate([vertices, object_points]), K0), 1.15)
    K = crop_intrinsics(K0, box, size, mirrored=False)
    pose4 = np.eye(4)
    pose4[:3, :3], pose4[:3, 3] = rotation, centre
    return {"name": asset.name, "vertices": vertices, "joints": joints, "objects": [(asset, pose4)], "K": K,
            "full_K": K0, "box": box}


def render_preview(out: Path, scenes: int = 4, seed: int = 0, size: int = 256,
                   objects: ObjectsConfig | None = None, hand: str = "builtin") -> dict:
    """A PNG grid: photo | normal | texture | mask for random hand-object scenes, joints drawn."""
    from pipeline.data.overview import sample_grid
    from pipeline.hand import load_hand_model
    from pipeline.objects import load_object_library
    from pipeline.paths import atomic_write_png
    from renderers.conditions import ConditionRenderer
    from renderers.photo import PhotoRenderer

    objects = objects or ObjectsConfig()
    library = load_object_library(objects.library)
    hand_model = load_hand_model(hand)
    rng = np.random.default_rng(seed)
    rows = []
    conditions, photos = ConditionRenderer(size), PhotoRenderer(size)
    for index in tqdm(range(scenes), desc="render preview", unit="scene"):
        scene = random_scene(hand_model, library, library.names, size, rng)
        maps = conditions.render(scene["vertices"], hand_model.faces, scene["objects"], scene["K"])
        photo = photos.render(scene["vertices"], hand_model.faces, scene["objects"], scene["K"],
                              seed=int(rng.integers(1 << 31)))
        rows.append({"sample_id": f"scene {index}: {scene['name']}", "image": png_bytes(photo),
                     "normal": png_bytes(maps["normal"]), "texture": png_bytes(maps["texture"]),
                     "mask": png_bytes(maps["mask"]), "joints_2d": project(scene["joints"], scene["K"])})
    atomic_write_png(out, sample_grid(rows, size, side=size))
    return {"preview": str(out), "scenes": scenes, "objects": [r["sample_id"] for r in rows]}


LABEL_COLUMNS = ["hand_pose", "hand_betas", "hand_trans", "K", "object_id", "object_pose", "mirrored"]


class ConditionJob:
    """What rendering a dataset's maps needs in each process: library, hand model, renderer."""

    def __init__(self, library_spec: str, hand_spec: str, size: int):
        from pipeline.hand import load_hand_model
        from pipeline.objects import load_object_library
        from renderers.conditions import ConditionRenderer

        self.library = load_object_library(library_spec)
        self.hand_model = load_hand_model(hand_spec, dtype=torch.float64)
        self.renderer = ConditionRenderer(size)

    def maps(self, labels: dict) -> dict[str, bytes]:
        """normal, texture and mask (PNG bytes) of one row's labels (``LABEL_COLUMNS``)."""
        with torch.no_grad():
            vertices, _ = self.hand_model(*(torch.as_tensor(np.asarray(labels[k], np.float64))[None]
                                            for k in ("hand_pose", "hand_betas", "hand_trans")))
        scene_objects = []
        if labels.get("object_id") is not None and labels.get("object_pose") is not None:
            scene_objects.append((self.library[labels["object_id"]], pose12_matrix(labels["object_pose"]),
                                  bool(labels.get("mirrored"))))
        maps = self.renderer.render(vertices[0].numpy(), self.hand_model.faces, scene_objects,
                                    np.asarray(labels["K"]))
        return {name: png_bytes(maps[name]) for name in ("normal", "texture", "mask")}


_WORKER_JOB: ConditionJob | None = None


def _start_worker(*args) -> None:
    global _WORKER_JOB
    os.environ["LP_NUM_THREADS"] = "1"  # one llvmpipe thread per worker: the workers use the cores
    _WORKER_JOB = ConditionJob(*args)


def _worker_maps(labels: dict) -> dict[str, bytes]:
    return _WORKER_JOB.maps(labels)


def render_dataset_conditions(dataset, out, *, objects: ObjectsConfig | None = None, hand: str | None = None,
                              default_hand: str = "builtin", workers: int = 0, overwrite: bool = False,
                              progress: bool = True) -> dict:
    """Copy a dataset (imported samples or condition specs) to ``out`` with normal, texture and
    mask rendered from each row's labels; shards are written anew, never edited in place.
    The hand model is ``hand``, else the dataset's, else ``default_hand``. ``workers`` > 0
    renders in that many processes, each with its own GL context."""
    from pipeline.data.manifest import read_columns
    from pipeline.data.reader import ShardDataset
    from pipeline.data.shards import ShardWriter
    from pipeline.objects import load_object_library

    objects = objects or ObjectsConfig()
    rows = ShardDataset(dataset, decode=False)
    manifest = rows.manifest
    if manifest["kind"] != "sample":
        raise InputError(f"expected a dataset of samples, this one holds {manifest['kind']} records", dataset)
    size = manifest.get("image_size")
    if not size:
        raise InputError("manifest.json: 'image_size' is missing; the crops' size is needed to render", dataset)
    library = load_object_library(objects.library)
    _, table = read_columns(dataset, LABEL_COLUMNS)
    labels = table.to_pylist()
    wanted = {row["object_id"] for row in labels if row["object_id"] is not None and row["object_pose"] is not None}
    missing = sorted(wanted - set(library.names))
    if missing:
        raise InputError(f"object(s) {', '.join(missing)} not in the object library '{objects.library}' "
                         "(pass --library with the dataset's objects, e.g. a YCB folder)", dataset)
    hand_spec = hand or manifest.get("hand_model") or default_hand
    job_args = (objects.library, hand_spec, size)
    config = {"source": str(dataset), "source_name": manifest["name"], "library": objects.library,
              "hand_model": hand_spec}
    rows_per_shard = manifest["shards"][0]["rows"] if manifest["shards"] else 4096
    with ShardWriter(out, name=f"{manifest['name']}_conditions", rows_per_shard=rows_per_shard, image_size=size,
                     config=config, overwrite=overwrite, info={"hand_model": hand_spec}) as writer:
        todo = range(writer.resume_rows, len(rows))
        bar = tqdm(total=len(todo), desc="render conditions", unit="row", disable=not progress)
        todo_labels = labels[writer.resume_rows:]
        if workers > 0:
            # spawn, not fork: a forked child inherits this process's GL state and can hang in it
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_start_worker, initargs=job_args) as pool:
                for index, maps in zip(todo, pool.map(_worker_maps, todo_labels, chunksize=8)):
                    writer.write({**rows.raw(index), **maps})
                    bar.update()
        else:
            job = ConditionJob(*job_args)
            for index, row_labels in zip(todo, todo_labels):
                writer.write({**rows.raw(index), **job.maps(row_labels)})
                bar.update()
        bar.close()
    return {"dataset": str(dataset), "out": str(out), "rows": writer.manifest["rows"],
            "shards": len(writer.manifest["shards"])}
