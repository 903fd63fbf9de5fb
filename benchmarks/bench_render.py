"""Renderer benchmark: condition triplets per second, and photo-style frames per second.

Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_render.py [--scenes N]``.
Scenes: random builtin hand poses with the palm at a random builtin object, framed as an
import would crop them (hand and object fill a 256² crop of a 640×480, f = 600 camera).
Baseline measured in the same run: the public code's approach, re-implemented here with
pyrender's stock shaders: render the full 640×480 frame (normal map from per-vertex colours
rebuilt each call, PBR-lit texture with the objects' full visual meshes, segmentation), then
crop the box and resize it to 256².
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from PIL import Image

from pipeline.geometry import vertex_normals
from pipeline.hand import load_hand_model
from pipeline.objects import load_object_library
from renderers.conditions import LIGHT_DIRECTIONS, ConditionRenderer
from renderers.photo import PhotoRenderer
from renderers.platform import import_pyrender, platform_status
from renderers.random_scenes import random_scene
from renderers.scene import FLIP, FLIP4, closed_faces, light_pose, set_intrinsics

SIZE = 256


class FullFrameBaseline:
    """Official approach: stock pyrender at 640×480, then crop and resize."""

    def __init__(self):
        self.pr = pr = import_pyrender()
        self.renderer = pr.OffscreenRenderer(640, 480)
        self.camera = pr.IntrinsicsCamera(1, 1, 0, 0, znear=0.01, zfar=20)
        self.scene = pr.Scene(bg_color=[0, 0, 0, 1], ambient_light=[0.3] * 3)
        self.scene.add(self.camera)
        for direction in LIGHT_DIRECTIONS:
            self.scene.add(pr.DirectionalLight(color=np.ones(3), intensity=0.8), pose=light_pose(direction))
        self.visuals = {}

    def _normal_mesh(self, vertices, faces, normals):
        colours = np.concatenate([normals * 0.5 + 0.5, np.ones((len(normals), 1))], axis=1)
        return self.pr.Mesh([self.pr.Primitive(positions=vertices.astype(np.float32), normals=normals.astype(np.float32),
                                               indices=faces.astype(np.uint32), color_0=colours.astype(np.float32), mode=4)])

    def render(self, hand_vertices, hand_faces, objects, K_full, box):
        pr = self.pr
        set_intrinsics(self.camera, K_full)
        faces = closed_faces(hand_faces)
        hand_gl, hand_n = hand_vertices @ FLIP, vertex_normals(hand_vertices, faces) @ FLIP
        nodes = [self.scene.add(self._normal_mesh(hand_gl, faces, hand_n))]
        for asset, pose in objects:
            rotation = FLIP @ pose[:3, :3]
            vertices = np.asarray(asset.vertices) @ rotation.T + FLIP @ pose[:3, 3]
            nodes.append(self.scene.add(self._normal_mesh(vertices, np.asarray(asset.faces),
                                                          np.asarray(asset.trimesh.vertex_normals) @ rotation.T)))
        normal, _ = self.renderer.render(self.scene, flags=pr.RenderFlags.FLAT)
        seg_map = {nodes[0]: (1, 1, 1), **{n: (2, 2, 2) for n in nodes[1:]}}
        mask, _ = self.renderer.render(self.scene, flags=pr.RenderFlags.SEG, seg_node_map=seg_map)
        for node in nodes:
            self.scene.remove_node(node)
        material = pr.MetallicRoughnessMaterial(baseColorFactor=[1.0, 1.0, 0.9, 1.0], metallicFactor=0.0)
        nodes = [self.scene.add(pr.Mesh([pr.Primitive(positions=hand_gl.astype(np.float32),
                                                      normals=hand_n.astype(np.float32),
                                                      indices=faces.astype(np.uint32), material=material, mode=4)]))]
        for asset, pose in objects:
            if asset.name not in self.visuals:
                self.visuals[asset.name] = pr.Mesh.from_trimesh(asset.visual, smooth=True)
            nodes.append(self.scene.add(self.visuals[asset.name], pose=FLIP4 @ pose))
        texture, _ = self.renderer.render(self.scene)
        for node in nodes:
            self.scene.remove_node(node)
        crop = [Image.fromarray(m).crop(tuple(box)) for m in (normal, texture, mask[..., 0])]
        return [c.resize((SIZE, SIZE), Image.Resampling.NEAREST if i == 2 else Image.Resampling.BILINEAR)
                for i, c in enumerate(crop)]


_WORKER = {}


def _start_worker(count: int) -> None:
    os.environ["LP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    hand_model = load_hand_model("builtin", dtype=torch.float64)
    library = load_object_library("builtin")
    _WORKER.update(scenes=make_scenes(hand_model, library, count), faces=hand_model.faces,
                   renderer=ConditionRenderer(SIZE))
    for name in library.names:  # upload every object once, as a long run would have
        _WORKER["renderer"].meshes.solid_mesh(library[name], False)
        _WORKER["renderer"].meshes.visual(library[name], False)


def _render_one(index: int) -> int:
    scene = _WORKER["scenes"][index]
    _WORKER["renderer"].render(scene["vertices"], _WORKER["faces"], scene["objects"], scene["K"])
    return index


def make_scenes(hand_model, library, count: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [random_scene(hand_model, library, library.names, SIZE, rng) for _ in range(count)]


def parallel_rate(count: int, workers: int) -> float:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                             initargs=(count,)) as pool:
        list(pool.map(_render_one, range(min(count, 4 * workers))))  # start-up and warm-up
        return rate(count, lambda: list(pool.map(_render_one, range(count), chunksize=4)))


def rate(count, func):
    start = time.perf_counter()
    func()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    status = platform_status()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, GL platform {status['platform']}, "
          f"LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS', 'default')}")
    hand_model = load_hand_model("builtin", dtype=torch.float64)
    library = load_object_library("builtin")
    scenes = make_scenes(hand_model, library, args.scenes)
    faces = hand_model.faces
    workers_rate = parallel_rate(args.scenes, 2)  # before this process opens a GL context
    ours, photo, baseline = ConditionRenderer(SIZE), PhotoRenderer(SIZE), FullFrameBaseline()
    for scene in scenes:  # warm up: contexts, shaders, every object's meshes uploaded once
        ours.render(scene["vertices"], faces, scene["objects"], scene["K"])
        baseline.render(scene["vertices"], faces, scene["objects"], scene["full_K"], scene["box"])
        photo.render(scene["vertices"], faces, scene["objects"], scene["K"], seed=0)
    ours_rate = rate(len(scenes), lambda: [ours.render(s["vertices"], faces, s["objects"], s["K"]) for s in scenes])
    base_rate = rate(len(scenes), lambda: [baseline.render(s["vertices"], faces, s["objects"], s["full_K"], s["box"])
                                           for s in scenes])
    photo_rate = rate(len(scenes), lambda: [photo.render(s["vertices"], faces, s["objects"], s["K"], seed=i)
                                            for i, s in enumerate(scenes)])
    print(f"\n{len(scenes)} scenes, builtin hand + one builtin object, {SIZE}x{SIZE}")
    print("| renderer | per second | ms each | vs full frame + crop |")
    print("|---|---:|---:|---:|")
    for name, value in (("ConditionRenderer (normal, texture, mask, depth), 1 process", ours_rate),
                        ("ConditionRenderer, 2 processes (1 llvmpipe thread each)", workers_rate),
                        ("baseline: full 640x480 frame, stock shaders, crop + resize", base_rate),
                        ("PhotoRenderer (PBR, shadows, background, noise)", photo_rate)):
        print(f"| {name} | {value:.1f} | {1000 / value:.1f} | {value / base_rate:.2f} |")


if __name__ == "__main__":
    main()
