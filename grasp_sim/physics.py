"""pybullet in DIRECT mode: resting poses by dropping objects, and the grasp stability test.

One :class:`PhysicsWorld` per process owns one physics client. Objects are compounds of
their cached convex pieces (pybullet loads a VHACD OBJ as one convex hull per piece); the
hand is a static concave triangle mesh, the setup ObMan, GraspTTA and OakInk use for the
"simulation displacement" metric (shared/REFERENCE.md).
"""

from __future__ import annotations

import numpy as np

from pipeline.quiet import import_pybullet, silenced_native_output

TIME_STEP = 1.0 / 240.0
SOLVER_ITERATIONS = 150
REST_LINEAR_SPEED = 0.005  # m/s
REST_ANGULAR_SPEED = 0.05  # rad/s
REST_CHECKS = 5  # consecutive calm checks (every 10 steps) that count as at rest
DROP_STEPS = 2400  # 10 s of simulated time at most per drop
GRAVITY = 9.81
STOP_CHECK_STEPS = 5  # an early-stopping stability test looks at the object this often


def _quaternion_xyzw(rotation: np.ndarray) -> list[float]:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(rotation).as_quat().tolist()


def _matrix(quaternion_xyzw) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_quat(quaternion_xyzw).as_matrix()


class PhysicsWorld:
    """A pybullet DIRECT client with helpers; use as a context manager or call :meth:`close`."""

    def __init__(self):
        self.pb = import_pybullet()
        with silenced_native_output():
            self.client = self.pb.connect(self.pb.DIRECT)
        self.reset()

    def reset(self) -> None:
        """Remove every body and shape (pybullet cannot remove a shape a removed body used)."""
        self.pb.resetSimulation(physicsClientId=self.client)
        self.pb.setPhysicsEngineParameter(fixedTimeStep=TIME_STEP, numSolverIterations=SOLVER_ITERATIONS,
                                          physicsClientId=self.client)
        self._shapes: dict[str, int] = {}

    def __enter__(self) -> PhysicsWorld:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None:
            self.pb.disconnect(physicsClientId=self.client)
            self.client = None

    # ------------------------------------------------------------------ bodies

    def object_shape(self, asset, vhacd: dict | None = None) -> int:
        """Collision shape of ``asset``'s convex pieces, created once per client."""
        if asset.mesh_hash not in self._shapes:
            path = asset.convex_decomposition(vhacd)
            with silenced_native_output():
                shape = self.pb.createCollisionShape(self.pb.GEOM_MESH, fileName=str(path),
                                                     physicsClientId=self.client)
            if shape < 0:
                raise RuntimeError(f"pybullet could not load the convex pieces of {asset.name} from {path}")
            self._shapes[asset.mesh_hash] = shape
        return self._shapes[asset.mesh_hash]

    def add_object(self, asset, mass: float, friction: float, vhacd: dict | None = None) -> int:
        centre = np.asarray(asset.trimesh.center_mass if asset.trimesh.is_volume else asset.trimesh.centroid)
        body = self.pb.createMultiBody(baseMass=mass, baseCollisionShapeIndex=self.object_shape(asset, vhacd),
                                       baseInertialFramePosition=centre.tolist(), physicsClientId=self.client)
        self.pb.changeDynamics(body, -1, lateralFriction=friction, rollingFriction=0.0005,
                               spinningFriction=0.0005, physicsClientId=self.client)
        return body

    def add_plane(self) -> int:
        shape = self.pb.createCollisionShape(self.pb.GEOM_PLANE, physicsClientId=self.client)
        return self.pb.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=shape, physicsClientId=self.client)

    def add_static_mesh(self, vertices: np.ndarray, faces: np.ndarray) -> int:
        """A static concave triangle mesh (its shape stays until :meth:`reset`)."""
        shape = self.pb.createCollisionShape(
            self.pb.GEOM_MESH, vertices=np.asarray(vertices, dtype=np.float64).tolist(),
            indices=np.asarray(faces, dtype=np.int64).ravel().tolist(),
            flags=self.pb.GEOM_FORCE_CONCAVE_TRIMESH, physicsClientId=self.client)
        return self.pb.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=shape, physicsClientId=self.client)

    def remove(self, body: int) -> None:
        self.pb.removeBody(body, physicsClientId=self.client)

    def pose(self, body: int) -> np.ndarray:
        """4x4 pose of ``body``'s link frame (the object frame, not its centre of mass)."""
        position, orientation = self.pb.getBasePositionAndOrientation(body, physicsClientId=self.client)
        rotation = _matrix(orientation)
        inertial = self.pb.getDynamicsInfo(body, -1, physicsClientId=self.client)[3]
        matrix = np.eye(4)
        matrix[:3, :3] = rotation
        matrix[:3, 3] = np.asarray(position) - rotation @ np.asarray(inertial)
        return matrix

    def set_pose(self, body: int, pose: np.ndarray) -> None:
        """Place ``body``'s link frame at ``pose`` and stop it."""
        inertial = np.asarray(self.pb.getDynamicsInfo(body, -1, physicsClientId=self.client)[3])
        position = pose[:3, 3] + pose[:3, :3] @ inertial
        self.pb.resetBasePositionAndOrientation(body, position.tolist(), _quaternion_xyzw(pose[:3, :3]),
                                                physicsClientId=self.client)
        self.pb.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=self.client)

    def _calm(self, body: int) -> bool:
        linear, angular = self.pb.getBaseVelocity(body, physicsClientId=self.client)
        return np.linalg.norm(linear) < REST_LINEAR_SPEED and np.linalg.norm(angular) < REST_ANGULAR_SPEED

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.pb.stepSimulation(physicsClientId=self.client)

    # ------------------------------------------------------------------ experiments

    def drop(self, body: int, start: np.ndarray) -> tuple[np.ndarray, bool]:
        """Release ``body`` at pose ``start`` above the plane; its pose once at rest, and whether it
        came to rest within :data:`DROP_STEPS`."""
        self.pb.setGravity(0, 0, -GRAVITY, physicsClientId=self.client)
        self.set_pose(body, start)
        calm = 0
        for _ in range(0, DROP_STEPS, 10):
            self.step(10)
            calm = calm + 1 if self._calm(body) else 0
            if calm >= REST_CHECKS:
                return self.pose(body), True
        return self.pose(body), False

    def displacement(self, asset, mass: float, friction: float, gravity_directions: np.ndarray, steps: int,
                     vhacd: dict | None = None, stop_beyond: float | None = None) -> np.ndarray:
        """Distance (metres) the object's centre moves in ``steps`` under gravity along each unit
        direction (object frame), starting at rest at the identity pose each time.

        With ``stop_beyond`` (metres), the test ends as soon as the object is farther than that
        from its start: the grasp has lost it, the remaining steps and directions cannot undo a
        rejection, and the result holds the directions run so far (its maximum passes the limit).

        A fresh body per direction: bullet keeps contact points between steps, so a reused body
        would make each result depend on what was simulated before it."""
        moved = []
        chunk = steps if stop_beyond is None else STOP_CHECK_STEPS
        for direction in gravity_directions:
            body = self.add_object(asset, mass, friction, vhacd)
            start = np.asarray(self.pb.getBasePositionAndOrientation(body, physicsClientId=self.client)[0])
            self.pb.setGravity(*(GRAVITY * np.asarray(direction)).tolist(), physicsClientId=self.client)
            done, distance = 0, 0.0
            while done < steps:
                now = min(chunk, steps - done)
                self.step(now)
                done += now
                position = self.pb.getBasePositionAndOrientation(body, physicsClientId=self.client)[0]
                distance = float(np.linalg.norm(np.asarray(position) - start))
                if stop_beyond is not None and distance > stop_beyond:
                    break
            moved.append(distance)
            self.remove(body)
            if stop_beyond is not None and distance > stop_beyond:
                break
        return np.asarray(moved)
