"""The embedded demo dataset's plan: hand-object capture sequences from validated grasps.

A stand-in for DexYCB with the same structure. Each subject (a hand shape and a skin tone)
grasps each object in ``sequences`` sequences: the object lies on the table in the resting
pose its grasp was made for; the hand approaches from 12 cm out along its own approach
direction with its fingers closing (non-grasping frames), closes into the grasp, then lifts
the object 12 cm while turning it up to 25° (grasping frames, found by the same RRE/RTE split
as real data). ``views`` cameras (640x480, f ≈ 600 px, 45-70 cm away, 20-60° above the
table) film each sequence. This module plans everything and computes every label; the
renderers paint the images (one background and lighting per sequence and camera) and the
maps, straight into the crop around the hand (``flows.stage.demo`` puts the two together).

Splits as DexYCB's: ``s0`` by sequence, ``s1`` by subject (the last subject is unseen in
training). Training and test grasps are disjoint in both: an object's accepted grasps form
three pools, one for sequences in both training splits, one for the s0 test sequences and
one for the unseen subject's other sequences; s0 test sequences never come from the unseen
subject, so no sequence is in both test splits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from pipeline.camera import crop_intrinsics
from pipeline.config import DataConfig, DemoConfig, SamplingConfig
from pipeline.data.labels import hand_box, labelled_crop
from pipeline.data.schema import pose12_matrix
from pipeline.hand.conversions import move_hand
from pipeline.hand.skin import random_skin_tone

SPLITS = ("s0_train", "s0_test", "s1_train", "s1_test")
POOLS = ("train", "s0_test", "s1_test")
FULL_SIZE = (640, 480)
STUDIOS = 3  # capture rooms
CAMERAS = 8  # fixed cameras per room, as DexYCB's rig
APPROACH_M = 0.12
LIFT_M = 0.12
LIFT_TURN_DEG = 25.0
OPEN_FRACTION = 0.35  # the approaching hand's joint angles start at this fraction of the grasp's
SUBJECT_BETAS_STD = 0.5  # as the grasp optimiser's hands, so grasps stay plausible on every subject
S0_TEST_EVERY = 5  # at most one in five of an object's sequences (of seen subjects) is an s0 test sequence


@dataclass(frozen=True)
class DemoSize:
    objects: tuple[str, ...]
    subjects: int
    sequences: int  # per object and subject
    approach_frames: int
    lift_frames: int
    views: int
    grasps_per_object: int  # optimised per round; the accepted ones feed the sequences
    grasp_iterations: int
    # The grasp rounds go on until each object has this many accepted (one per pool at least).
    # A test pool gets a quarter of them: with four per test sequence of an object, every test
    # sequence closes into its own grasp.
    accepted_per_object: int = len(POOLS)

    @property
    def frames_per_sequence(self) -> int:
        return self.approach_frames + 1 + self.lift_frames

    def frames(self) -> int:
        return len(self.objects) * self.subjects * self.sequences * self.views * self.frames_per_sequence


# Hand-sized objects of different shapes that the optimiser grasps well come first.
OBJECT_ORDER = ("tennis_ball", "mug", "banana", "tomato_soup_can", "apple", "screwdriver", "foam_brick", "hammer",
                "baseball", "mustard_bottle", "marker", "tuna_can", "water_bottle", "gelatin_box", "golf_ball",
                "bowl", "coffee_can", "sugar_box", "wood_block", "cracker_box")
SIZES = {
    "tiny": DemoSize(objects=("tennis_ball", "tomato_soup_can"), subjects=3, sequences=2, approach_frames=2,
                     lift_frames=3, views=1, grasps_per_object=12, grasp_iterations=100),
    "small": DemoSize(objects=OBJECT_ORDER[:8], subjects=4, sequences=1, approach_frames=3, lift_frames=4, views=2,
                      grasps_per_object=16, grasp_iterations=100),
    "bench": DemoSize(objects=OBJECT_ORDER[:8], subjects=6, sequences=4, approach_frames=3, lift_frames=4, views=1,
                      grasps_per_object=48, grasp_iterations=100, accepted_per_object=16),
    "medium": DemoSize(objects=OBJECT_ORDER, subjects=8, sequences=3, approach_frames=5, lift_frames=10, views=4,
                       grasps_per_object=128, grasp_iterations=1000),
    "large": DemoSize(objects=OBJECT_ORDER, subjects=10, sequences=5, approach_frames=10, lift_frames=20, views=8,
                      grasps_per_object=512, grasp_iterations=2000),
}


def demo_size(config: DemoConfig) -> DemoSize:
    """The ``config.size`` preset with every key the config sets explicitly."""
    explicit = {key: value for key, value in config.model_dump(exclude={"size"}).items() if value is not None}
    if "objects" in explicit:
        explicit["objects"] = tuple(explicit["objects"])
    return replace(SIZES[config.size], **explicit)


def look_at_extrinsics(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World -> OpenCV camera (x right, y down, z forward), world z up."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    extrinsics = np.eye(4)
    extrinsics[:3, :3], extrinsics[:3, 3] = rotation, -rotation @ eye
    return extrinsics


def random_camera(target: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Extrinsics and a realistic 640x480 K looking at ``target`` from above the table."""
    distance, elevation, azimuth = rng.uniform(0.45, 0.7), np.deg2rad(rng.uniform(20, 60)), rng.uniform(0, 2 * np.pi)
    eye = target + distance * np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                        np.sin(elevation)])
    focal = rng.uniform(590, 630)
    K = np.array([[focal, 0, FULL_SIZE[0] / 2 + rng.uniform(-6, 6)], [0, focal, FULL_SIZE[1] / 2 + rng.uniform(-6, 6)],
                  [0, 0, 1]])
    return look_at_extrinsics(eye, target + rng.uniform(-0.03, 0.03, 3)), K


def grasp_pools(object_ids: np.ndarray, accepted: np.ndarray, order: np.ndarray) -> dict[str, dict[str, list[int]]]:
    """Per object with at least three accepted grasps, their row indices in three disjoint
    pools (see :data:`POOLS`): in ``order``, half the grasps serve both training splits, a
    quarter the unseen subject, a quarter the s0 test sequences."""
    pools = {}
    for name in np.unique(object_ids):
        rows = [int(i) for i in order if object_ids[i] == name and accepted[i]]
        if len(rows) >= len(POOLS):
            cycle = ("train", "train", "s1_test", "s0_test") if len(rows) > len(POOLS) else POOLS
            pools[str(name)] = {pool: [r for i, r in enumerate(rows) if cycle[i % len(cycle)] == pool]
                                for pool in POOLS}
    return pools


def sequence_splits(object_index: int, subject: int, sequence: int, size: DemoSize) -> dict[str, str]:
    """The s0 and s1 split of a sequence. The unseen subject's sequences are s1 test and s0
    train; of the other subjects' sequences of an object, one in ``min(5, count)`` is s0 test,
    staggered by object so the test sequences spread over the subjects."""
    if subject == size.subjects - 1:
        return {"s0": "train", "s1": "test"}
    seen = (size.subjects - 1) * size.sequences
    every = min(S0_TEST_EVERY, seen)
    ordinal = subject * size.sequences + sequence
    return {"s0": "test" if (ordinal + object_index) % every == every - 1 else "train", "s1": "train"}


def grasp_pool(splits: dict[str, str]) -> str:
    return "s0_test" if splits["s0"] == "test" else "s1_test" if splits["s1"] == "test" else "train"


def sequence_frames(hand_model, plan: dict, subject_betas: np.ndarray, size: DemoSize) -> list[dict]:
    """One planned sequence (approach, grasp, lift): hand parameters in the object's frame (with
    the subject's rest wrist they turn about) and the object's pose in the world, per frame."""
    grasp, table_pose, centre = plan["grasp"], plan["table_pose"], plan["centre"]
    with torch.no_grad():
        wrists = hand_model.rest_wrist(torch.as_tensor(np.stack([grasp["hand_betas"], subject_betas]))).double().numpy()
        angles = hand_model.anatomy.from_axis_angle(torch.as_tensor(grasp["hand_pose"][None, 3:])).double()
    trans = grasp["hand_trans"] + wrists[0] - wrists[1]  # the subject's wrist where the grasp's was
    approach = wrists[1] + trans - centre
    approach /= np.linalg.norm(approach)
    centre_world = table_pose[:3, :3] @ centre + table_pose[:3, 3]
    frames = []
    for index in range(size.frames_per_sequence):
        progress = min(1.0, index / max(1, size.approach_frames))
        lift = max(0.0, (index - size.approach_frames) / max(1, size.lift_frames))
        closing = OPEN_FRACTION + (1 - OPEN_FRACTION) * progress
        with torch.no_grad():
            fingers = hand_model.anatomy.to_axis_angle(angles * closing)[0].double().numpy()
        turn = Rotation.from_rotvec(plan["turn_axis"] * np.deg2rad(LIFT_TURN_DEG) * lift).as_matrix()
        moved = np.eye(4)  # turned about the object's centre, then lifted
        moved[:3, :3] = turn
        moved[:3, 3] = centre_world - turn @ centre_world + np.array([0.0, 0.0, LIFT_M * lift])
        frames.append({"frame": index, "pose": np.concatenate([grasp["hand_pose"][:3], fingers]),
                       "trans": trans + (1 - progress) * APPROACH_M * approach, "wrist": wrists[1],
                       "object_world": moved @ table_pose})
    return frames


def frame_row(hand_model, frame: dict, extrinsics: np.ndarray, K_full: np.ndarray, betas: np.ndarray,
              data: DataConfig) -> dict:
    """Labels of one frame seen by one camera, in the crop around the hand (no images yet)."""
    object_camera = extrinsics @ frame["object_world"]
    pose, trans = move_hand(frame["pose"], frame["trans"], frame["wrist"], object_camera[:3, :3], object_camera[:3, 3])
    with torch.no_grad():
        vertices, joints = (t[0].double().numpy() for t in hand_model(
            torch.as_tensor(pose[None]), torch.as_tensor(betas[None]), torch.as_tensor(trans[None])))
    box = hand_box(vertices, K_full, data.crop_scale)
    row = labelled_crop(pose, betas, trans, joints, K_full, box, data.image_size)
    return {
        "vertices": vertices, "object_camera": object_camera,
        "K_crop": crop_intrinsics(K_full, box, data.image_size, mirrored=False),
        "row": {**row, "object_pose": np.concatenate([object_camera[:3, :3].ravel(),
                                                      object_camera[:3, 3]]).astype(np.float32)},
    }


def plan_demo(grasps: dict, library, num_betas: int, size: DemoSize, seed: int) -> dict:
    """Everything random about the demo, drawn from ``seed``: subjects, and per sequence its
    splits, grasp, table pose, lift axis and cameras (extrinsics, K, scene seed).

    ``grasps`` holds grasp-record columns (grasp_id, object_id, accepted, hand_pose,
    hand_betas, hand_trans, resting_pose); objects of ``size`` with fewer than three accepted
    grasps are left out and listed. A pool's grasps are dealt in a shuffled order, each once
    before any is dealt again, so the test sequences close into as many distinct grasps as
    their pools hold."""
    rng = np.random.default_rng(seed)
    subjects = [{"betas": rng.normal(0.0, SUBJECT_BETAS_STD, num_betas), "skin": random_skin_tone(rng)}
                for _ in range(size.subjects)]
    pools = grasp_pools(np.asarray(grasps["object_id"]), np.asarray(grasps["accepted"]),
                        np.argsort(grasps["grasp_id"], kind="stable"))
    names = [name for name in size.objects if name in pools]
    unused = defaultdict(list)
    sequences = []
    for object_index, name in enumerate(names):
        centre = np.asarray(library[name].trimesh.centroid, dtype=np.float64)
        for subject in range(size.subjects):
            for sequence in range(size.sequences):
                splits = sequence_splits(object_index, subject, sequence, size)
                pool = grasp_pool(splits)
                if not unused[name, pool]:  # a pool's grasps recur only once each has served
                    unused[name, pool] = [int(i) for i in rng.permutation(pools[name][pool])]
                chosen = unused[name, pool].pop()
                grasp = {k: np.asarray(grasps[k][chosen], dtype=np.float64)
                         for k in ("hand_pose", "hand_betas", "hand_trans", "resting_pose")}
                yaw = np.eye(4)  # the resting pose turned about the vertical and moved on the table
                yaw[:3, :3] = Rotation.from_euler("z", rng.uniform(0, 2 * np.pi)).as_matrix()
                yaw[:2, 3] = rng.uniform(-0.05, 0.05, 2)
                table_pose = yaw @ pose12_matrix(grasp["resting_pose"])
                axis = np.array([*rng.normal(size=2), 0.0])
                target = table_pose[:3, :3] @ centre + table_pose[:3, 3] + np.array([0.0, 0.0, LIFT_M / 2])
                cameras = [(*random_camera(target, rng), int(rng.integers(1 << 31))) for _ in range(size.views)]
                sequences.append({"object": name, "subject": subject, "sequence": sequence, "splits": splits,
                                  "grasp": grasp, "grasp_id": str(grasps["grasp_id"][chosen]), "centre": centre,
                                  "table_pose": table_pose, "turn_axis": axis / np.linalg.norm(axis),
                                  "cameras": cameras})
    return {"subjects": subjects, "sequences": sequences, "objects": names,
            "left_out": [name for name in size.objects if name not in pools]}


def grasps_by_split(plan: dict) -> dict[str, list[str]]:
    """The grasp ids each split's sequences close into (disjoint between train and test)."""
    used: dict[str, set[str]] = {split: set() for split in SPLITS}
    for sequence in plan["sequences"]:
        for protocol, part in sequence["splits"].items():
            used[f"{protocol}_{part}"].add(sequence["grasp_id"])
    return {split: sorted(ids) for split, ids in used.items()}


def demo_frames(plan: dict, library, hand_model, size: DemoSize, data: DataConfig, sampling: SamplingConfig,
                progress: bool = True):
    """Yield ``(splits, row, scene)`` for every frame and camera of a :func:`plan_demo`: the
    row's labels, and what rendering its pictures needs (hand vertices, objects and their
    poses, the crop's K and box, the studio camera, the photo's seed, the subject's skin
    tone), so that a resumed run
    renders only what it still needs."""
    from pipeline.data.grasp_split import grasping_frames

    total = len(plan["sequences"]) * size.views * size.frames_per_sequence
    bar = tqdm(total=total, desc="demo frames", unit="frame", disable=not progress)
    for sequence in plan["sequences"]:
        name, subject = sequence["object"], plan["subjects"][sequence["subject"]]
        frames = sequence_frames(hand_model, sequence, subject["betas"], size)
        for view, (extrinsics, K_full, scene_seed) in enumerate(sequence["cameras"]):
            sequence_id = f"demo/subject-{sequence['subject']:02d}/{name}/{sequence['sequence']:02d}/cam{view}"
            labelled = [frame_row(hand_model, f, extrinsics, K_full, subject["betas"], data) for f in frames]
            poses = np.stack([item["object_camera"] for item in labelled])
            flags = grasping_frames(poses[:, :3, :3], poses[:, :3, 3], [sequence_id] * len(frames),
                                    [f["frame"] for f in frames], sampling.grasp_rre_deg, sampling.grasp_rte_mm)
            for frame, item, flag in zip(frames, labelled, flags):
                row = {"sample_id": f"{sequence_id}/{frame['frame']:03d}", "source": "real", "dataset": "demo",
                       "sequence_id": sequence_id, "frame": frame["frame"], "object_id": name,
                       "is_grasping": bool(flag), "origin": "real", "sampler": "none", "mirrored": False,
                       **item["row"]}
                scene = {"vertices": item["vertices"], "objects": [(library[name], item["object_camera"])],
                         "K": item["K_crop"], "seed": scene_seed, "skin": subject["skin"],
                         "studio": (sequence["subject"] % STUDIOS, view % CAMERAS), "crop_box": row["crop_box"]}
                yield sequence["splits"], row, scene
                bar.update(1)
    bar.close()


GENERATOR_NAME = "handbooster demo"


def demo_generator_info(size_name: str, size: DemoSize, seed: int) -> dict:
    return {"name": GENERATOR_NAME, "size": size_name, **asdict(size), "seed": seed}


def made_by_demo(dataset) -> bool:
    """Whether a dataset folder was written by the demo generator (its photo renderer is its domain)."""
    from pipeline.data.manifest import read_manifest

    return (read_manifest(dataset)[1].get("config") or {}).get("name") == GENERATOR_NAME
