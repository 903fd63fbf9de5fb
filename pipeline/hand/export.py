"""Export posed hands as meshes or pictures, and convert official MANO files to npz."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.errors import InputError
from pipeline.paths import atomic_write_bytes, atomic_write_png

MESH_SUFFIXES = (".obj", ".ply")
PICTURE_SUFFIXES = (".png",)


def posed_hand(model_spec: str, side: str, pose_name: str, seed: int):
    """(model, vertices [V, 3]) for a named or random pose."""
    from pipeline.hand import load_hand_model

    model = load_hand_model(model_spec, side=side)
    with torch.no_grad():
        vertices, _ = model(model.pose_from_name(pose_name, seed=seed))
    return model, vertices[0].double().numpy()


def check_export_path(out: Path) -> str:
    """The output's suffix, if the exporters know it."""
    suffix = out.suffix.lower()
    if suffix not in MESH_SUFFIXES + PICTURE_SUFFIXES:
        raise InputError(f"unknown output type '{suffix}', expected one of {', '.join(MESH_SUFFIXES + PICTURE_SUFFIXES)}", out)
    return suffix


def export_hand(model_spec: str, side: str, pose_name: str, seed: int, out: Path, picture=None) -> dict:
    """The posed hand as a mesh (.obj, .ply), or a picture (.png) drawn by ``picture(vertices,
    faces) -> RGB array`` (the renderers' ``hand_picture``; the core library draws nothing)."""
    import trimesh

    suffix = check_export_path(out)
    if suffix in PICTURE_SUFFIXES and picture is None:
        raise InputError("a .png export needs a picture renderer (handbooster hand export draws one)", out)
    model, vertices = posed_hand(model_spec, side, pose_name, seed)
    mesh = trimesh.Trimesh(vertices, model.closed_faces, process=False)
    if suffix in MESH_SUFFIXES:
        data = mesh.export(file_type=suffix[1:])
        atomic_write_bytes(out, data.encode() if isinstance(data, str) else data)
    else:
        atomic_write_png(out, picture(vertices, model.closed_faces))
    return {
        "out": str(out), "model": model.name, "side": side, "pose": pose_name, "seed": seed,
        "vertices": int(len(vertices)), "faces": int(len(model.closed_faces)),
        "watertight": bool(mesh.is_watertight),
    }


def convert_mano(path: Path, out_dir: Path) -> dict:
    """Official MANO ``.pkl`` (read through the allow-list) -> ``out_dir/MANO_<SIDE>.npz``."""
    from pipeline.hand.mano_file import load_model_arrays, save_npz

    arrays = load_model_arrays(path)
    side = "LEFT" if "LEFT" in path.name.upper() else "RIGHT"
    target = save_npz(arrays, out_dir / f"MANO_{side}.npz")
    return {"source": str(path), "out": str(target), "vertices": int(arrays["v_template"].shape[0]),
            "faces": int(arrays["f"].shape[0]), "shape_directions": int(arrays["shapedirs"].shape[2])}
