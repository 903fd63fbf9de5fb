"""Headless rendering: condition maps, demo photos and previews (pyrender)."""
