"""Starting hands and population moves: what the optimiser starts from and what it keeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import GraspConfig
from pipeline.hand.joints import PALM_JOINTS


@pytest.fixture(scope="module")
def geometry(hand_model):
    from grasp_sim.hand_geometry import build_hand_geometry

    return build_hand_geometry(hand_model)


def starts(name: str, hand_model, geometry, config: GraspConfig, batch: int = 24, seed: int = 3):
    """Starting hands on a builtin object, in its most frequent resting pose."""
    from grasp_sim.energy import hand_pose, split_params
    from grasp_sim.initialization import initial_params
    from grasp_sim.resting import find_resting_poses
    from pipeline.objects import load_object_library

    asset = load_object_library("builtin")[name]
    rest = max(find_resting_poses(asset, drops=4), key=lambda p: p.frequency).matrix
    rng = np.random.default_rng(seed)
    betas = torch.zeros(batch, hand_model.num_betas, dtype=hand_model.dtype)
    params = initial_params(asset, geometry, hand_model, betas, np.stack([rest] * batch), config, rng)
    with torch.no_grad():
        vertices, joints = hand_model(hand_pose(params, hand_model.anatomy), betas, split_params(params)[0])
    return asset, params, vertices, joints


@pytest.mark.parametrize("name", ["cracker_box", "tennis_ball"])
def test_object_aware_starts_face_the_object_from_outside(name, hand_model, geometry):
    from scipy.spatial.transform import Rotation

    from grasp_sim.energy import split_params

    asset, params, _, joints = starts(name, hand_model, geometry, GraspConfig())
    palm = joints[:, list(PALM_JOINTS)].mean(dim=1).double()
    assert (asset.sdf(palm) > 0).all(), "every palm starts outside the object"
    normal = torch.as_tensor(Rotation.from_rotvec(split_params(params)[1].double().numpy()).apply(geometry.palm_normal))
    assert (asset.sdf(palm + 0.01 * normal) < asset.sdf(palm)).all(), "the palm faces the object"


def test_the_thumb_starts_across_a_box_narrow_side(hand_model, geometry):
    from scipy.spatial.transform import Rotation

    from grasp_sim.energy import split_params
    from grasp_sim.initialization import WRAP_M

    asset, params, _, _ = starts("cracker_box", hand_model, geometry, GraspConfig())
    _, aware_rotation, _ = split_params(params)
    box = asset.trimesh.bounding_box_oriented
    axes, extents = box.primitive.transform[:3, :3].T, box.primitive.extents

    def palm_spans(rotvecs):
        across = Rotation.from_rotvec(rotvecs.double().numpy()).apply(geometry.palm_width_direction)
        return np.abs(across @ axes.T) @ extents  # the box's extent along the palm's width

    aware = palm_spans(aware_rotation)
    _, uniform_params, _, _ = starts("cracker_box", hand_model, geometry, GraspConfig(init_object_aware=False))
    uniform = palm_spans(split_params(uniform_params)[1])
    # the palm tilt (up to 20 degrees off the hull normal) can tip the fingers onto the long side a little
    assert np.median(aware) <= WRAP_M + 0.02, "the palm spans about the box's 6 cm side"
    assert np.median(uniform) > np.median(aware) + 0.03, "a uniform roll spans more of the box"


def test_rolls_span_a_narrow_side_or_wrap_round_an_object_wider_than_the_hand():
    from grasp_sim.initialization import narrow_rolls

    widths = np.array([[0.06, 0.12, 0.065, 0.2],  # a box: its 6 cm sides
                       [0.102, 0.12, 0.139, 0.135]])  # a 10 cm can: along its 14 cm axis, within 1 cm of it
    assert narrow_rolls(widths).tolist() == [[True, False, True, False], [False, False, True, True]]


def test_fingers_start_round_the_girth_of_a_can_wider_than_the_hand(hand_model, geometry):
    from scipy.spatial.transform import Rotation

    from grasp_sim.energy import split_params

    def along_axis(config):
        asset, params, _, _ = starts("coffee_can", hand_model, geometry, config)
        box = asset.trimesh.bounding_box_oriented
        axis = box.primitive.transform[:3, :3].T[np.argmax(box.primitive.extents)]  # the can's 14 cm axis
        across = Rotation.from_rotvec(split_params(params)[1].double().numpy()).apply(geometry.palm_width_direction)
        return np.abs(across @ axis)

    aware = along_axis(GraspConfig())
    # within 41 degrees of the axis (the palm tilts up to 20 degrees off the hull normal; a hand on
    # the lid has no axis to follow); a uniform roll would put 46% of the hands there
    assert (aware > 0.75).mean() >= 0.75, "the palm's width lies along the can, the fingers curl round it"


def lying_on(asset, up: np.ndarray) -> np.ndarray:
    """A resting pose ``[4, 4]`` with the object-frame direction ``up`` pointing up, on the table."""
    from scipy.spatial.transform import Rotation

    rotation = Rotation.align_vectors([[0.0, 0.0, 1.0]], [up])[0].as_matrix()
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[2, 3] = -(np.asarray(asset.vertices) @ rotation[2]).min()
    return pose


def test_a_box_lying_flat_leaves_no_side_to_span_and_standing_does():
    """The cracker box (16 x 6 x 21 cm) lying on a large face: across its 6 cm the fingers would
    go under the table, its other sides are too wide. On its side, the hand spans its 6 cm."""
    from grasp_sim.initialization import spannable_rests
    from pipeline.objects import load_object_library

    library = load_object_library("builtin")
    box = library["cracker_box"]
    assert np.argmin(box.trimesh.extents) == 1
    rests = np.stack([lying_on(box, np.asarray(up, dtype=float)) for up in ([0, 1, 0], [0, -1, 0], [1, 0, 0], [0, 0, 1])])
    assert spannable_rests(box, rests, seed=0).tolist() == [False, False, True, True]
    ball = library["tennis_ball"]
    assert spannable_rests(ball, lying_on(ball, np.array([0.0, 0.0, 1.0]))[None], seed=0).tolist() == [True]


def test_hands_find_the_object_only_in_poses_they_can_span(monkeypatch):
    """Object-aware starts draw resting poses by frequency among the spannable ones; an object
    with none keeps its frequencies, and the old starts ignore spans."""
    import grasp_sim.initialization as initialization
    from grasp_sim.stage import rest_weights

    class Rest:
        def __init__(self, frequency):
            self.frequency, self.matrix = frequency, np.eye(4)

    rests = [Rest(0.5), Rest(0.3), Rest(0.2)]
    monkeypatch.setattr(initialization, "spannable_rests", lambda *args: np.array([False, True, True]))
    assert rest_weights(None, rests, GraspConfig()).tolist() == [0.0, 0.3, 0.2]
    assert rest_weights(None, rests, GraspConfig(init_object_aware=False)).tolist() == [0.5, 0.3, 0.2]
    monkeypatch.setattr(initialization, "spannable_rests", lambda *args: np.array([False, False, False]))
    assert rest_weights(None, rests, GraspConfig()).tolist() == [0.5, 0.3, 0.2]


def test_a_population_move_replaces_the_worst_hands_with_copies_of_the_best():
    from grasp_sim.optimizer import population_move

    params = torch.arange(8, dtype=torch.float64)[:, None].repeat(1, 51)
    contacts = torch.arange(8)[:, None].repeat(1, 4)
    energy = torch.tensor([5.0, 1.0, 7.0, 3.0, 0.5, 6.0, 2.0, 4.0])
    noise = torch.full((51,), 1e-3, dtype=torch.float64)
    moved, moved_contacts = population_move(params, contacts, energy, 0.25, noise, torch.Generator().manual_seed(0))
    # worst two are hands 2 (7.0) and 5 (6.0); best two are 4 (0.5) and 1 (1.0)
    kept = [0, 1, 3, 4, 6, 7]
    assert torch.equal(moved[kept], params[kept]) and torch.equal(moved_contacts[kept], contacts[kept])
    assert torch.equal(moved_contacts[[5, 2]], contacts[[4, 1]])
    offset = moved[[5, 2]] - params[[4, 1]]
    assert 0 < offset.abs().max() < 0.01, "copies are near their source, not identical to it"
    unchanged, _ = population_move(params, contacts, energy, 0.1, noise, torch.Generator().manual_seed(0))
    assert torch.equal(unchanged, params), "a fraction below one hand moves nothing"


def test_population_moves_happen_early_in_the_run():
    from grasp_sim.optimizer import POPULATION_SPAN, move_steps

    steps = move_steps(GraspConfig(iterations=300, population_moves=2))
    assert len(steps) == 2 and max(steps) < 300 * POPULATION_SPAN
    assert move_steps(GraspConfig(iterations=300, population_moves=0)) == set()


@pytest.mark.parametrize("ranked", [True, False])
def test_a_population_move_copies_the_hands_the_rank_calls_best(geometry, ranked):
    from grasp_sim.optimizer import optimise

    config = GraspConfig(iterations=10, population_moves=1, population_fraction=0.25, population_noise_m=0.0,
                         population_noise_rad=0.0, step_size=1e-9)
    params = torch.randn(8, 51, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    calls = []

    def rank(current):  # hand 0 best, hand 7 worst: the reverse of their energy below
        calls.append(current.shape)
        return torch.arange(8, dtype=current.dtype)

    def energy(current, contacts):  # hand 7 lowest, hand 0 highest; no gradient at the start
        return (current - params).abs().sum(1) - torch.arange(8, dtype=current.dtype), {}

    result = optimise(energy, params.clone(), geometry, config, torch.Generator().manual_seed(1),
                      rank=rank if ranked else None)
    copies = {6: 0, 7: 1} if ranked else {0: 6, 1: 7}  # replaced: source
    assert calls == ([(8, 51)] if ranked else [])
    for replaced, source in copies.items():
        assert torch.allclose(result.params[replaced], params[source], atol=1e-6)
    kept = [i for i in range(8) if i not in copies]
    assert torch.allclose(result.params[kept], params[kept], atol=1e-6)
