"""The embedded demo dataset's plan: sizes, splits, grasp pools, sequences and labels (no rendering)."""
