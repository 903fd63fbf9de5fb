"""Object library: embedded objects, SDF accuracy and gradients, surface samples, VHACD cache, loaders."""

import json
import warnings

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from flows.cli import main
from pipeline.errors import InputError
from pipeline.objects import decomposition, load_object_library


@pytest.fixture(scope="module")
def library():
    return load_object_library("builtin")


def exact_signed_distance(asset, points: np.ndarray) -> np.ndarray:
    """trimesh's exact distance, with our sign convention (negative inside)."""
    return -trimesh.proximity.signed_distance(asset.trimesh, points)


def near_surface_points(asset, n: int, seed: int, band: float = 0.02) -> torch.Tensor:
    """Points within ``band`` of the surface, inside and outside."""
    points, normals = asset.sample_surface(n, seed=seed, dtype=torch.float64)
    offsets = torch.from_numpy(np.random.default_rng(seed).uniform(-band, band, (n, 1)))
    return points + offsets * normals


@pytest.mark.slow
def test_builtin_library_has_graspable_watertight_textured_objects(library):
    assert len(library) >= 15
    categories = set()
    mean_colors = []
    for asset in library:
        summary = asset.summary()
        assert summary["watertight"], asset.name
        assert 0.02 <= asset.extents.max() <= 0.25, (asset.name, asset.extents)
        assert 0.005 < asset.mass < 2.0 and 0 < asset.friction <= 1.5
        colors = np.asarray(asset.visual.visual.vertex_colors)[:, :3].astype(float)
        assert colors.std(axis=0).max() > 10, f"{asset.name} has no pattern"
        categories.add(asset.category)
        mean_colors.append(colors.mean(axis=0))
    assert {"box", "can", "bottle", "mug", "bowl", "ball", "fruit", "marker", "tool"} <= categories
    mean_colors = np.array(mean_colors)
    gaps = np.linalg.norm(mean_colors[:, None] - mean_colors[None], axis=-1) + np.eye(len(mean_colors)) * 1e3
    assert gaps.min() > 3, "two objects look the same"


@pytest.mark.parametrize("name", ["mug", "tomato_soup_can", "tennis_ball"])
def test_sdf_matches_exact_distance_near_the_surface(library, name):
    asset = library[name]
    points = near_surface_points(asset, 3000, seed=1)
    exact = exact_signed_distance(asset, points.numpy())
    ours = asset.sdf(points).numpy()
    near = np.abs(exact) < 0.02
    assert near.mean() > 0.9
    assert np.abs(ours - exact)[near].max() < 1e-3
    clear = np.abs(exact) > 1e-3
    assert (np.sign(ours[clear]) == np.sign(exact[clear])).all()


def test_sdf_is_differentiable_and_its_gradient_is_the_normal(library):
    asset = library["coffee_can"]
    points, normals = asset.sample_surface(2000, seed=2, dtype=torch.float64)
    for offset in (-0.001, 0.001, 0.01):
        query = (points + offset * normals).requires_grad_(True)
        (grad,) = torch.autograd.grad(asset.sdf(query).sum(), query)
        cosine = torch.nn.functional.cosine_similarity(grad, normals, dim=1)
        assert torch.quantile(cosine, 0.05) > 0.9, offset
        assert torch.allclose(grad.norm(dim=1).median(), torch.tensor(1.0, dtype=torch.float64), atol=0.05)


def test_sdf_is_batched_follows_dtype_and_bounds_far_points(library):
    asset = library["banana"]
    points = torch.randn(4, 5, 3, dtype=torch.float32) * 0.05
    distances = asset.sdf(points)
    assert distances.shape == (4, 5) and distances.dtype == torch.float32
    far = torch.tensor([[0.5, 0.0, 0.0], [0.0, -0.4, 0.3]], dtype=torch.float64)
    exact = exact_signed_distance(asset, far.numpy())
    ours = asset.sdf(far).numpy()
    assert (ours >= exact - 1e-4).all() and (ours < exact * 1.1).all()
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        asset.sdf(torch.zeros(4, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sdf_on_cuda_matches_cpu(library):
    for name in ("mug", "golf_ball"):
        points = near_surface_points(library[name], 1000, seed=5).float()
        cpu = library[name].sdf(points)
        gpu = library[name].sdf(points.cuda()).cpu()
        assert torch.allclose(cpu, gpu, atol=1e-5)


def test_surface_samples_are_on_the_surface_and_reproducible(library):
    asset = library["hammer"]
    points, normals = asset.sample_surface(500, seed=7)
    again, _ = asset.sample_surface(500, seed=7)
    other, _ = asset.sample_surface(500, seed=8)
    assert torch.equal(points, again) and not torch.equal(points, other)
    assert points.dtype == torch.float32 and points.shape == normals.shape == (500, 3)
    assert torch.allclose(normals.norm(dim=1), torch.ones(500), atol=1e-5)
    assert asset.sdf(points.double()).abs().max() < 5e-4


def test_decomposition_is_cached_and_quiet(library, monkeypatch, capfd, tmp_path):
    monkeypatch.setenv("HANDBOOSTER_CACHE", str(tmp_path))  # other tests may have decomposed this ball already
    asset = library["golf_ball"]
    params = {"resolution": 20_000}
    runs = []
    real_run = decomposition.run_vhacd
    monkeypatch.setattr(decomposition, "run_vhacd", lambda *a: runs.append(1) or real_run(*a))
    path = asset.convex_decomposition(params)
    assert runs == [1] and path.is_file()
    assert asset.convex_decomposition(params) == path and runs == [1]
    pieces = asset.convex_pieces(params)
    assert len(pieces) >= 1 and all(len(f) >= 4 for _, f in pieces)
    hull = trimesh.Trimesh(*pieces[0]).convex_hull
    assert 0.9 < hull.volume / asset.trimesh.volume < 1.3
    assert capfd.readouterr().out == ""


# --------------------------------------------------------------------------- loaders


def write_ycb_model(folder, mesh: trimesh.Trimesh, with_mtl: bool = True):
    """A YCB-style textured_simple.obj: every face corner its own vertex (UV seams everywhere)."""
    folder.mkdir(parents=True)
    corners = mesh.vertices[mesh.faces].reshape(-1, 3)
    direction = corners / np.linalg.norm(corners, axis=1, keepdims=True)
    uv = np.stack([0.5 + np.arctan2(direction[:, 1], direction[:, 0]) / (2 * np.pi),
                   0.5 + np.arcsin(np.clip(direction[:, 2], -1, 1)) / np.pi], axis=1)
    lines = ["mtllib textured_simple.obj.mtl"] if with_mtl else []
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in corners]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv]
    lines += ["usemtl material_0"] if with_mtl else []
    lines += [f"f {i}/{i} {i + 1}/{i + 1} {i + 2}/{i + 2}" for i in range(1, len(corners) + 1, 3)]
    (folder / "textured_simple.obj").write_text("\n".join(lines) + "\n")
    if with_mtl:
        (folder / "textured_simple.obj.mtl").write_text("newmtl material_0\nKd 1 1 1\nmap_Kd texture_map.png\n")
    stripes = np.zeros((64, 64, 3), dtype=np.uint8)
    stripes[:, ::8] = (200, 30, 30)
    Image.fromarray(stripes).save(folder / "texture_map.png")


@pytest.mark.parametrize("with_mtl", [True, False])
def test_ycb_folder_loads_with_texture(tmp_path, with_mtl):
    can = trimesh.creation.cylinder(radius=0.05, height=0.14, sections=24)
    write_ycb_model(tmp_path / "models" / "002_master_chef_can", can, with_mtl)
    write_ycb_model(tmp_path / "models" / "011_banana", trimesh.creation.icosphere(2, radius=0.04), with_mtl)
    library = load_object_library(tmp_path)
    assert library.names == ["002_master_chef_can", "011_banana"]
    asset = library["002_master_chef_can"]
    assert asset.category == "can" and library["011_banana"].category == "fruit"
    summary = asset.summary()
    assert summary["watertight"] and summary["texture"] == "uv image"
    assert len(asset.vertices) == len(can.vertices)
    assert asset.trimesh.volume == pytest.approx(can.volume, rel=1e-4)
    image = asset.visual.visual.material.image
    assert image.size == (64, 64)
    assert load_object_library(tmp_path / "models").names == library.names


def test_mesh_folder_repairs_small_holes_and_rejects_open_meshes(tmp_path):
    trimesh.creation.box((0.05, 0.06, 0.07)).export(tmp_path / "box.ply")
    trimesh.creation.icosphere(2, radius=0.03).export(tmp_path / "ball.glb")
    holed = trimesh.creation.icosphere(2, radius=0.03)
    holed.update_faces(np.arange(1, len(holed.faces)))
    holed.export(tmp_path / "holed.obj")
    library = load_object_library(tmp_path)
    assert library.names == ["ball", "box", "holed"]
    assert library["box"].extents == pytest.approx([0.05, 0.06, 0.07])
    assert library["holed"].summary()["watertight"] and "holes filled" in library["holed"].notes

    open_cup = trimesh.creation.icosphere(2, radius=0.03)
    open_cup.update_faces(open_cup.triangles_center[:, 2] < 0.015)
    open_cup.export(tmp_path / "cup.obj")
    with pytest.raises(InputError, match=r"cup\.obj: mesh is not watertight .* open edges"):
        load_object_library(tmp_path)["cup"]


def test_mesh_units_warning_and_unreadable_files(tmp_path):
    trimesh.creation.box((50.0, 60.0, 70.0)).export(tmp_path / "millimetres.ply")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_object_library(tmp_path)["millimetres"]
    assert any("millimetres" in str(w.message) and "metres" in str(w.message) for w in caught)
    (tmp_path / "broken.ply").write_bytes(b"ply\nformat nonsense\n")
    with pytest.raises(InputError, match=r"broken\.ply: could not read mesh"):
        load_object_library(tmp_path)["broken"]
    with pytest.raises(InputError, match="object library not found"):
        load_object_library(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no objects found"):
        load_object_library(empty)


# --------------------------------------------------------------------------- CLI


def test_objects_cli_list_prepare_sheet(tmp_path, capsys, library):
    assert main(["objects", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["count"] == len(library) >= 15
    assert {"name", "category", "extents_m", "watertight", "faces"} <= set(listed["objects"][0])

    config = tmp_path / "cfg.yaml"
    config.write_text("objects:\n  vhacd:\n    resolution: 20000\n")
    assert main(["objects", "prepare", "--objects", "golf_ball,tuna_can", "--config", str(config), "--workers", "2",
                 "--out", str(tmp_path / "prepared"), "--json"]) == 0
    prepared = json.loads(capsys.readouterr().out)["details"]["prepared"]
    assert prepared["golf_ball"]["sdf"] == "analytic" and prepared["tuna_can"]["sdf"].endswith(".npz")
    assert prepared["tuna_can"]["pieces"] >= 1
    # The worker processes honoured the config: this process finds the same cached files.
    assert main(["objects", "prepare", "--objects", "golf_ball,tuna_can", "--config", str(config), "--json",
                 "--out", str(tmp_path / "again")]) == 0
    assert json.loads(capsys.readouterr().out)["details"]["prepared"] == prepared

    assert main(["objects", "sheet", "--objects", "mug,banana,cracker_box", "--columns", "3", "--out",
                 str(tmp_path / "sheet")]) == 0
    sheet = np.asarray(Image.open(tmp_path / "sheet" / "sheet.png"))
    assert sheet.shape[1] == 3 * 224 and sheet.std() > 20

    assert main(["objects", "list", "--objects", "mug,teapot"]) == 2
    assert "unknown object(s) teapot" in capsys.readouterr().err
    assert main(["objects", "sheet", "--columns", "0", "--out", str(tmp_path / "bad-sheet")]) == 2
    config.write_text("objects:\n  vhacd:\n    resolution: 5\n")
    assert main(["objects", "list", "--config", str(config)]) == 2
    assert "'objects.vhacd.resolution'" in capsys.readouterr().err


def test_objects_cli_reports_every_rejected_mesh(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / f"{name}.ply").write_bytes(b"not a mesh")
    trimesh.creation.box((0.05, 0.05, 0.05)).export(tmp_path / "good.ply")
    assert main(["objects", "list", "--library", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "2 of 3 objects rejected" in err and "a.ply" in err and "b.ply" in err
