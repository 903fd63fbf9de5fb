"""Pose selection: the grasping split, pose vectors, farthest-pose and cross-distribution sampling."""

from pipeline.data.grasp_split import grasping_frames, relative_pose_errors

__all__ = ["grasping_frames", "relative_pose_errors"]
