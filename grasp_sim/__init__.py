"""Grasp simulation: resting poses, batched grasp optimisation, physics-checked validation."""
