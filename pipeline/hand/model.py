"""The hand model every stage uses: smplx's MANO layer plus what the pipeline needs around it.

``HandModel.forward(pose[B,48], betas[B,10], trans[B,3])`` returns vertices and the 21 joints
in the canonical order (tips taken from vertices). The arrays behind it come from the
builtin generator or from a user's MANO file, read without chumpy (see ``mano_file``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import InputError, require_shape
from pipeline.geometry import close_boundary_loops
from pipeline.hand.joints import JOINT_PART, MANO_TIP_VERTEX_IDS, PART_NAMES, permutation

SIDES = ("right", "left")
_MANO21_TO_CANONICAL = permutation("mano21", "canonical21")


def mirror_model_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The other hand: every array mirrored through x = 0, faces re-wound."""
    m = np.array([-1.0, 1.0, 1.0])
    out = dict(arrays)
    out["v_template"] = arrays["v_template"] * m
    out["shapedirs"] = arrays["shapedirs"] * m[None, :, None]
    # Pose features are entries (a, b) of R - I per joint; mirroring scales them by m_a m_b.
    feature_sign = np.tile(np.outer(m, m).ravel(), 15)
    out["posedirs"] = arrays["posedirs"] * m[None, :, None] * feature_sign[None, None, :]
    out["f"] = arrays["f"][:, [0, 2, 1]]
    axis_angle_sign = np.tile([1.0, -1.0, -1.0], 15)
    out["hands_components"] = arrays["hands_components"] * axis_angle_sign
    out["hands_mean"] = arrays["hands_mean"] * axis_angle_sign
    return out


@functools.lru_cache(maxsize=8)
def _cached_arrays(spec: str, side: str) -> tuple[str, dict[str, np.ndarray]]:
    from pipeline.hand import mano_file

    if spec == "builtin":
        from pipeline.hand.builtin import builtin_arrays

        arrays = builtin_arrays()
        return "builtin", mirror_model_arrays(arrays) if side == "left" else arrays
    path = Path(spec).expanduser()
    if path.is_dir():
        stem = f"MANO_{side.upper()}"
        candidates = [path / f"{stem}.npz", path / f"{stem}.pkl"]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise InputError(f"no {stem}.npz or {stem}.pkl in this folder", path)
        path = found[0]
    elif not path.exists():
        raise InputError(
            "hand model not found: expected 'builtin', a MANO .pkl/.npz file or a folder holding "
            f"MANO_{side.upper()}.pkl",
            path,
        )
    other = "LEFT" if side == "right" else "RIGHT"
    if other in path.name.upper():
        raise InputError(f"file name says {other.lower()} hand, but side '{side}' was asked for", path)
    return str(path), mano_file.load_model_arrays(path)



def _drop_print(*args, **kwargs) -> None:
    """smplx's notes (see HandModel.__init__)."""

class HandModel(torch.nn.Module):
    """MANO-layout hand model, batched, on CPU or CUDA."""

    def __init__(self, arrays: dict[str, np.ndarray], side: str = "right", name: str = "builtin",
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        import smplx
        import smplx.body_models
        from smplx.utils import Struct

        if side not in SIDES:
            raise InputError(f"side must be 'right' or 'left', got {side!r}")
        self.side = side
        self.name = name
        # smplx prints a note about 10 betas. Swapping sys.stdout to hide it is not thread-safe (two
        # threads loading hands at once could leave the process's stdout on a StringIO), so the
        # note's module gets a print of its own that drops it.
        smplx.body_models.print = _drop_print
        self.mano = smplx.MANO(
            model_path="", data_struct=Struct(**arrays), is_rhand=side == "right", use_pca=False,
            flat_hand_mean=True, create_global_orient=False, create_hand_pose=False,
            create_betas=False, create_transl=False, dtype=dtype,
        )
        self.faces = np.asarray(arrays["f"], dtype=np.int64)
        self.closed_faces = close_boundary_loops(self.faces)
        self.num_vertices = int(arrays["v_template"].shape[0])
        self.num_betas = int(self.mano.num_betas)
        if "tip_vertex_ids" in arrays:
            tips = tuple(int(i) for i in arrays["tip_vertex_ids"])
        elif self.num_vertices == 778:
            tips = MANO_TIP_VERTEX_IDS
        else:
            raise InputError(f"a {self.num_vertices}-vertex model needs 'tip_vertex_ids' to find fingertips", name)
        self.fingertip_vertex_ids = tips
        self.register_buffer("_tip_ids", torch.tensor(tips, dtype=torch.long), persistent=False)
        self.part_names = PART_NAMES
        self.vertex_joints = np.asarray(arrays["weights"]).argmax(axis=1)  # the MANO16 joint whose bone moves it most
        self.vertex_parts = np.asarray(JOINT_PART)[self.vertex_joints]
        self.hands_components = np.asarray(arrays["hands_components"])
        self.hands_mean = np.asarray(arrays["hands_mean"])

    @property
    def device(self) -> torch.device:
        return self.mano.v_template.device

    @property
    def dtype(self) -> torch.dtype:
        return self.mano.v_template.dtype

    def forward(self, pose: torch.Tensor, betas: torch.Tensor | None = None,
                trans: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Vertices ``[B, V, 3]`` and canonical joints ``[B, 21, 3]`` in metres."""
        require_shape("pose", pose, (None, 48))
        batch = pose.shape[0]
        if betas is None:
            betas = pose.new_zeros(batch, self.num_betas)
        if trans is None:
            trans = pose.new_zeros(batch, 3)
        require_shape("betas", betas, (batch, self.num_betas))
        require_shape("trans", trans, (batch, 3))
        out = self.mano(betas=betas, global_orient=pose[:, :3], hand_pose=pose[:, 3:], transl=trans)
        return out.vertices, self.canonical_joints(out.joints, out.vertices)

    def canonical_joints(self, joints16: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
        """The 16 model joints plus the fingertip vertices, in the canonical 21-joint order."""
        return torch.cat([joints16, vertices[:, self._tip_ids]], dim=1)[:, _MANO21_TO_CANONICAL]

    def regress_joints(self, vertices: torch.Tensor) -> torch.Tensor:
        """Joints ``[B, 21, 3]`` of any vertices ``[B, V, 3]`` through the model's joint regressor
        and fingertips (how vertex-based reconstructors read joints off a predicted mesh)."""
        joints16 = torch.einsum("jv,bvc->bjc", self.mano.J_regressor.to(vertices.dtype), vertices)
        return self.canonical_joints(joints16, vertices)

    def forward_rotations(self, rotations: torch.Tensor, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Vertices and canonical joints of per-joint rotation matrices ``[B, 16, 3, 3]`` (global
        first, relative to the flat hand) with no translation: the differentiable path of
        regressors that predict rotations (6D) rather than axis-angle."""
        from smplx.lbs import lbs

        mano = self.mano
        require_shape("rotations", rotations, (None, 16, 3, 3))
        vertices, joints16 = lbs(betas.to(self.dtype), rotations.to(self.dtype), mano.v_template, mano.shapedirs,
                                 mano.posedirs, mano.J_regressor, mano.parents, mano.lbs_weights, pose2rot=False)
        return vertices, self.canonical_joints(joints16, vertices)

    def rest_wrist(self, betas: torch.Tensor) -> torch.Tensor:
        """Wrist joint ``[B, 3]`` of the unposed, untranslated hand with these betas."""
        shaped = self.mano.v_template + torch.einsum("bk,vck->bvc", betas.to(self.dtype), self.mano.shapedirs)
        return torch.einsum("v,bvc->bc", self.mano.J_regressor[0], shaped)

    @functools.cached_property
    def anatomy(self):
        """The :class:`~pipeline.hand.anatomy.AnatomicalSpace` of this model's rest pose."""
        from pipeline.hand.anatomy import AnatomicalSpace

        with torch.no_grad():
            template = self.mano.v_template.double().cpu().numpy()
            joints16 = self.mano.J_regressor.double().cpu().numpy() @ template
        return AnatomicalSpace.from_rest_joints(joints16, template[list(self.fingertip_vertex_ids)], self.side)

    @functools.cached_property
    def palm_normal(self) -> np.ndarray:
        """Unit normal out of the palm of the rest hand (model frame), for either side."""
        from pipeline.hand.anatomy import palm_side_normal

        with torch.no_grad():
            joints16 = (self.mano.J_regressor.double() @ self.mano.v_template.double()).cpu().numpy()
        normal = palm_side_normal(joints16)
        return -normal if self.side == "left" else normal

    def pose_from_name(self, name: str, seed: int = 0) -> torch.Tensor:
        """A full pose (1, 48), zero global rotation: 'flat', 'relaxed', 'fist' or 'random'."""
        hand = self.anatomy.sample(1, seed)[0] if name == "random" else self.anatomy.named_pose(name)
        return torch.cat([hand.new_zeros(3), hand]).to(self.dtype)[None]


def load_hand_model(spec: str | Path = "builtin", side: str = "right", device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> HandModel:
    """``"builtin"``, a MANO ``.pkl``/``.npz`` file, or a folder holding ``MANO_RIGHT.*``."""
    if side not in SIDES:
        raise InputError(f"side must be 'right' or 'left', got {side!r}")
    name, arrays = _cached_arrays(str(spec), side)
    return HandModel(arrays, side=side, name=name, dtype=dtype).to(device)
